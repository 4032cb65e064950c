//! What only the embedded backend promises: durability across reopen, the directory lock,
//! the format check, and recovery from a torn tail.

use std::io::Write;

use counterpoint::store::{
    AppendCondition, EmbeddedOptions, EmbeddedStore, Event, EventStore, Position, Query, QueryItem, ReadOptions,
    StoreError, Tenant,
};

fn tenant() -> Tenant {
    Tenant::new("acme").unwrap()
}

async fn all(store: &EmbeddedStore) -> Vec<(u64, String, Vec<u8>)> {
    let (events, _) = store.read(&tenant(), Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    events.into_iter().map(|e| (e.position.dense(), e.event.event_type, e.event.data)).collect()
}

fn log_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("0000000000.log")
}

#[tokio::test]
async fn appends_survive_reopen_and_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.append(&tenant(), vec![Event::new("A").tag("k:1").data(b"one".to_vec())], vec![]).await.unwrap();
        store.append(&tenant(), vec![Event::new("B").tag("k:2"), Event::new("A").tag("k:2")], vec![]).await.unwrap();
        store.append(&Tenant::new("other").unwrap(), vec![Event::new("A")], vec![]).await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(all(&store).await.len(), 3);
    assert_eq!(all(&store).await[0], (1, "A".into(), b"one".to_vec()));
    let by_tag = Query::item(QueryItem::tags(["k:2"]).with_type("A"));
    let (events, _) = store.read(&tenant(), by_tag.clone(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    assert_eq!(events.iter().map(|e| e.position.dense()).collect::<Vec<_>>(), vec![3]);
    // Conditions see recovered events.
    let err = store.append(&tenant(), vec![Event::new("C")], vec![AppendCondition::new(by_tag, None)]).await.unwrap_err();
    assert!(err.is_condition_failed());
    assert_eq!(store.append(&tenant(), vec![Event::new("C")], vec![]).await.unwrap(), vec![Position::new(4)]);
}

#[tokio::test]
async fn a_second_opener_is_told_who_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).err().expect("second open must fail");
    let message = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(message.contains("is locked (pid ") && message.contains(&std::process::id().to_string()), "{message}");
}

#[tokio::test]
async fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("FORMAT"), "counterpoint-store 99\n").unwrap();
    let err = EmbeddedStore::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::UnsupportedFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("format version 99"), "{err}");
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.append(&tenant(), vec![Event::new("A").data(vec![1; 100])], vec![]).await.unwrap();
        store.append(&tenant(), vec![Event::new("B").data(vec![2; 100]), Event::new("B")], vec![]).await.unwrap();
    }
    // Simulate a crash in the middle of writing the second append: cut it short, add garbage.
    let path = log_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 50).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(all(&store).await.len(), 1, "the partial append is not visible");
    assert_eq!(store.append(&tenant(), vec![Event::new("C")], vec![]).await.unwrap(), vec![Position::new(2)]);
    drop(store);
    // Garbage after a valid frame (a header promising more than is there) is cut too.
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0xff; 11]).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(all(&store).await.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), vec!["A", "C"]);
}

#[tokio::test]
async fn damage_before_the_tail_is_reported_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 200, ..Default::default() };
    {
        let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
        for _ in 0..3 {
            store.append(&tenant(), vec![Event::new("A").data(vec![1; 150])], vec![]).await.unwrap();
        }
    }
    assert!(dir.path().join("0000000002.log").exists(), "small segments roll over");
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(all(&store).await.len(), 3, "reads span segments");
    drop(store);
    // Flip a byte inside the first (sealed) segment: in an event's data, then in a frame's
    // header. Opening reads the sealed segments' index files, not the segments; the event's own
    // checksum refuses it when it is read, naming the segment.
    let path = log_file(dir.path());
    let good = std::fs::read(&path).unwrap();
    let mut bytes = good.clone();
    bytes[40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    let err = store.read(&tenant(), Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("0000000000.log")), "{err:?}");
    drop(store);
    // Without its index file, the segment is scanned again, and the damage stops the store.
    std::fs::remove_file(dir.path().join("0000000000.idx")).unwrap();
    let err = EmbeddedStore::open_with(dir.path(), options).err().expect("must refuse");
    assert!(matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("0000000000.log")), "{err:?}");
}

/// A read of events whose bytes are out of memory (a log bigger than the page cache) asks the
/// disk for all of them at once, and once reads have waited for the disk, a search asks for its
/// index files' key buckets at once too; while everything is in memory it asks for nothing.
/// Either way it reads the events as written.
#[tokio::test]
async fn events_out_of_memory_are_asked_of_the_disk_at_once_and_read_as_written() {
    use counterpoint::store::sim_disk::{Faults, SimDisk};
    let disk = SimDisk::new(11, Faults::default());
    // Segments of 4 KiB: the tag's events, between bigger ones, lie in many segments.
    let options = EmbeddedOptions { segment_bytes: 4096, ..EmbeddedOptions::default() };
    let store = EmbeddedStore::open_on(std::sync::Arc::new(disk.clone()), "/data", options.clone()).unwrap();
    let mut written = Vec::new();
    for i in 0..24u8 {
        store.append(&tenant(), vec![Event::new("Filler").data(vec![i; 1500])], vec![]).await.unwrap();
        let event = Event::new("Wanted").tag("k:1").data(vec![i; 40]);
        written.push(("Wanted".to_string(), event.data.clone()));
        store.append(&tenant(), vec![event], vec![]).await.unwrap();
    }
    let wanted = Query::item(QueryItem::tags(["k:1"]));
    let read = |store: &EmbeddedStore| {
        let (store, wanted) = (store.clone(), wanted.clone());
        async move {
            let (events, _) = store.read(&tenant(), wanted, ReadOptions::default()).await.unwrap().collect().await.unwrap();
            events.into_iter().map(|e| (e.event.event_type, e.event.data)).collect::<Vec<_>>()
        }
    };

    assert_eq!(read(&store).await, written);
    assert_eq!(disk.prefetches(), 0, "nothing is asked ahead while every byte is in memory");

    disk.set_faults(Faults { uncached_reads: 1.0, ..Faults::default() });
    assert_eq!(read(&store).await, written, "read as written when out of memory");
    let asked = disk.prefetches();
    assert!(asked > 1, "the reads left are asked for at the first miss: {asked}");
    assert!(asked <= written.len() as u64, "each read once, not once per miss: {asked}");

    // Opened again, with no index block cache (as for a key read for the first time): the first
    // reads find that reads wait for the disk; once they have waited often, a search also asks
    // ahead for the key buckets of the index files it goes through.
    drop(store);
    disk.set_faults(Faults::default());
    let options = EmbeddedOptions { index_cache_bytes: 1, ..options };
    let store = EmbeddedStore::open_on(std::sync::Arc::new(disk.clone()), "/data", options).unwrap();
    disk.set_faults(Faults { uncached_reads: 1.0, ..Faults::default() });
    // Key buckets asked ahead in `reads` reads.
    let asked = |reads: usize| {
        let store = store.clone();
        let (disk, written, read) = (disk.clone(), written.clone(), read);
        async move {
            let before = disk.index_prefetches();
            for _ in 0..reads {
                assert_eq!(read(&store).await, written);
            }
            disk.index_prefetches() - before
        }
    };
    let first = asked(1).await;
    asked(8).await;
    let later = asked(1).await;
    assert!(later > first, "key buckets asked ahead, once reads wait often: {later} against {first}");

    // Back in memory, with the odd read that waits: searches stop asking ahead for key buckets
    // (a read that waited still asks for the events left after it).
    disk.set_faults(Faults::default());
    asked(40).await;
    disk.set_faults(Faults { uncached_reads: 0.01, ..Faults::default() });
    let before = disk.prefetches();
    assert_eq!(asked(20).await, 0, "no key bucket asked ahead while reads seldom wait");
    assert!(disk.prefetches() > before, "the events after a read that waited are asked ahead");
}

/// While appends come in together (the last flush carried more than one), the writer waits for
/// the group commit window before it flushes, and what came in meanwhile shares that flush.
#[tokio::test]
async fn appends_that_come_in_together_share_a_flush_gathered_for_the_window() {
    use counterpoint::store::sim_disk::{Faults, SimDisk};
    use std::time::Duration;
    let disk = SimDisk::new(5, Faults::default());
    let options = EmbeddedOptions { group_commit_window: Duration::from_millis(100), ..Default::default() };
    let store = EmbeddedStore::open_on(std::sync::Arc::new(disk.clone()), "/data", options).unwrap();
    let tenant = tenant();
    let append = |event: &'static str| store.append_accepted(&tenant, vec![Event::new(event)], &[]);

    // Two appends queued while a flush runs go in the next flush together.
    disk.hold_syncs();
    let first = append("First").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (a, b) = (append("A").await.unwrap(), append("B").await.unwrap());
    disk.release_syncs();
    for accepted in [first, a, b] {
        accepted.durable().await.unwrap();
    }

    // So the writer takes the next append for one of many: it waits for the window, and an
    // append that comes 20 ms later shares its flush.
    let flushes = store.flushes();
    let c = append("C").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let d = append("D").await.unwrap();
    c.durable().await.unwrap();
    d.durable().await.unwrap();
    assert_eq!(store.flushes() - flushes, 1, "C and D in one flush");
    assert_eq!(all(&store).await.len(), 5);
}

/// The store says its flushes are late once accepted appends have waited more than 0.4 ms
/// without the writer answering any (a hot boundary beside other commands then
/// waits for the flush), and not while nothing waits or once they are answered.
#[tokio::test]
async fn flushes_are_late_while_accepted_appends_wait_for_the_writer() {
    use counterpoint::store::sim_disk::{Faults, SimDisk};
    use std::time::Duration;
    let disk = SimDisk::new(9, Faults::default());
    let store = EmbeddedStore::open_on(std::sync::Arc::new(disk.clone()), "/data", EmbeddedOptions::default()).unwrap();
    let tenant = tenant();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!store.flushes_late(), "nothing waits");

    disk.hold_syncs();
    let before = std::time::Instant::now();
    let held = store.append_accepted(&tenant, vec![Event::new("Held")], &[]).await.unwrap();
    let late = store.flushes_late();
    // (Unless this thread was kept from its processor past the threshold meanwhile.)
    if before.elapsed() < Duration::from_micros(300) {
        assert!(!late, "just accepted: not late yet");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store.flushes_late(), "accepted 5 ms ago, its flush held");

    disk.release_syncs();
    held.durable().await.unwrap();
    assert!(!store.flushes_late(), "answered: nothing waits");
    store.append(&tenant, vec![Event::new("Next")], vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!store.flushes_late(), "an append answered long ago leaves nothing waiting");
}

/// An append that comes alone (the last flush carried one) is flushed at once, whatever the
/// window: ten appends one after another take far less than ten windows.
#[tokio::test]
async fn an_append_that_comes_alone_does_not_wait_for_the_window() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let window = counterpoint::store::MAX_GROUP_COMMIT_WINDOW;
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions { group_commit_window: window, ..Default::default() }).unwrap();
    let start = Instant::now();
    for i in 0..10 {
        store.append(&tenant(), vec![Event::new("Alone").data(vec![i])], vec![]).await.unwrap();
    }
    assert!(start.elapsed() < window * 5, "ten appends alone took {:?}", start.elapsed());
    assert_eq!(store.flushes(), 10, "one flush each");

    let too_long = EmbeddedOptions { group_commit_window: window + Duration::from_millis(1), ..Default::default() };
    let other = tempfile::tempdir().unwrap();
    match EmbeddedStore::open_with(other.path(), too_long) {
        Err(StoreError::InvalidInput(m)) => assert!(m.contains("group commit window is at most 100 ms"), "{m}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a window past the longest is refused"),
    }
}

/// What the store's reads rely on from the operating system: a read that must not wait tells
/// bytes out of memory from bytes in it. Where the file system cannot read without waiting
/// (`RWF_NOWAIT`; overlayfs, as in many containers, answers `EOPNOTSUPP`) or the kernel keeps
/// the pages it was asked to drop, the read waits and answers the bytes: slower, never wrong.
/// (The test asks the OS itself which it is, not the code it tests.)
#[cfg(target_os = "linux")]
#[test]
fn a_file_tells_whether_its_bytes_are_in_memory() {
    use counterpoint::store::embedded_disk::{Disk, OpenMode, RealDisk};
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    // Not a tmpfs: its pages are the file, and cannot leave memory.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("0000000000.log");
    let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let file = RealDisk.open(&path, OpenMode::CreateNew).unwrap();
    file.write_all_at(&bytes, 0).unwrap();
    file.sync_data().unwrap();
    let raw = std::fs::File::open(&path).unwrap();
    let mut probe = [0u8; 16];
    let nowait = !matches!(
        preadv2(&raw, &mut [std::io::IoSliceMut::new(&mut probe)], 0, ReadWriteFlags::NOWAIT),
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL)
    );
    // The kernel drops a synced file's pages when asked, but may keep some (in use at that
    // moment): asked again, and whether it dropped the page, `mincore` says.
    let at = 600 << 10;
    let mut in_memory = true;
    for _ in 0..10 {
        rustix::fs::fadvise(&raw, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        in_memory = page_in_memory(&raw, at);
        if !in_memory {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let mut buf = vec![0; 4096];
    let cached = file.read_cached_at(&mut buf, at).unwrap();
    if nowait && !in_memory {
        assert!(!cached, "bytes out of memory are not read without waiting");
    } else {
        eprintln!("this file system reads without waiting: {nowait}; the page stayed in memory: {in_memory}");
        assert!(cached, "a read that cannot tell waits and answers the bytes");
        assert_eq!(buf, bytes[at as usize..][..4096]);
    }
    file.prefetch(at, 4096);
    file.read_exact_at(&mut buf, at).unwrap();
    let mut again = vec![0; 4096];
    assert!(file.read_cached_at(&mut again, at).unwrap(), "bytes just read are in memory");
    assert_eq!(again, bytes[at as usize..][..4096]);
    assert_eq!(buf, again);
    let tail = (1 << 20) - 100;
    file.read_exact_at(&mut buf[..100], tail).unwrap();
    let err = file.read_cached_at(&mut buf, tail).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "a read past the end is an error: {err}");
}

/// Whether the page of `file` at `offset` is in the page cache (`mincore` of a mapping).
#[cfg(target_os = "linux")]
fn page_in_memory(file: &std::fs::File, offset: u64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `sysconf` reads a constant; then a read-only mapping of the one page (of this
    // system's size) that holds `offset`, of a file that outlives it, unmapped before return;
    // `mincore` writes one byte for the one page into `vec`.
    unsafe {
        let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).expect("the page size");
        let start = offset - offset % page as u64;
        let map = libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), start as libc::off_t);
        assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        let mut vec = 0u8;
        let rc = libc::mincore(map, page, &mut vec);
        let err = std::io::Error::last_os_error();
        libc::munmap(map, page);
        assert_eq!(rc, 0, "mincore: {err}");
        vec & 1 == 1
    }
}

/// The store's own threads run below the threads that decide commands, so that the writer's
/// thousands of wake-ups a second do not preempt a worker in the middle of a command.
#[cfg(target_os = "linux")]
#[test]
fn the_stores_threads_run_below_the_threads_that_open_it() {
    /// A thread's nice value: field 19 of its `stat`, the 17th after the name's closing parenthesis.
    fn nice(stat: &std::path::Path) -> Option<i32> {
        let stat = std::fs::read_to_string(stat).ok()?;
        stat[stat.rfind(')')? + 1..].split_whitespace().nth(16)?.parse().ok()
    }
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path()).unwrap();
    let own = nice("/proc/thread-self/stat".as_ref()).expect("this thread's nice value");
    // A thread just started may not have named itself or lowered itself yet (other tests open
    // stores too): each is given a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for name in ["cp-store-writer", "cp-store-sealer", "cp-store-merger"] {
        loop {
            let tasks: Vec<_> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| task.ok().map(|task| task.path()))
                .filter(|task| std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim() == name))
                .collect();
            let nices: Vec<_> = tasks.iter().filter_map(|task| nice(&task.join("stat"))).collect();
            if !nices.is_empty() && nices.iter().all(|&n| n > own || n == 19) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name} threads run at nice {nices:?} (none: no such thread), this thread at {own}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
