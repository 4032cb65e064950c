//! A damaged log is not a torn tail: the embedded store cuts only a torn final write when it
//! opens, refuses to open on damage with valid appends after it, and `store check` / `store
//! repair` (the library functions behind the CLI) say what is lost and cut only when asked.

use std::path::{Path, PathBuf};

use counterpoint::store::embedded_check::{self, aside_path};
use counterpoint::store::{EmbeddedOptions, EmbeddedStore, Event, EventStore, Position, Query, ReadOptions, StoreError, Tenant};

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

fn other() -> Tenant {
    Tenant::new("other").unwrap()
}

fn segment(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}.log"))
}

/// The offset of every frame in a segment file (walking the length fields of an intact file).
fn frame_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        offsets.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(at, bytes.len(), "an intact segment is whole frames");
    offsets
}

/// Flips one bit in the payload of the frame at `offset`.
fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset + 8 + 5] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

async fn types(store: &EmbeddedStore, tenant: &Tenant) -> Vec<(u64, String)> {
    let (events, _) = store.read(tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    events.into_iter().map(|e| (e.position.dense(), e.event.event_type)).collect()
}

/// Six appends in one segment: acme A1, other O1, acme A2 (two events), acme A3, other O2, acme A4.
/// A3 is bigger than one flush can write over (`OVERWRITE_WINDOW`, 64 KiB), so that the frames
/// after it are not what a power cut in the flush of A2 could have left.
async fn six_appends(dir: &Path) {
    let store = EmbeddedStore::open(dir).unwrap();
    for (tenant, events) in [
        (acme(), vec![Event::new("A1")]),
        (other(), vec![Event::new("O1")]),
        (acme(), vec![Event::new("A2").data(vec![7; 300]), Event::new("A2")]),
        (acme(), vec![Event::new("A3").data(vec![3; 70_000])]),
        (other(), vec![Event::new("O2")]),
        (acme(), vec![Event::new("A4")]),
    ] {
        store.append(&tenant, events, vec![]).await.unwrap();
    }
}

/// A store of [`six_appends`] with a bit flipped in its third frame (A2): its directory, the
/// segment, every frame's offset and the segment's bytes after the flip.
async fn damaged_in_the_middle() -> (tempfile::TempDir, PathBuf, Vec<usize>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    six_appends(dir.path()).await;
    let path = segment(dir.path(), 0);
    let offsets = frame_offsets(&path);
    flip_bit(&path, offsets[2]);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, offsets, bytes)
}

#[tokio::test]
async fn a_bit_flip_mid_segment_stops_the_store_with_the_segment_and_offset() {
    let (dir, path, offsets, before) = damaged_in_the_middle().await;
    let damaged = offsets[2];

    let err = EmbeddedStore::open(dir.path()).err().expect("damage with valid appends after it must stop the store");
    let message = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(message.contains("0000000000.log") && message.contains(&format!("at byte {damaged}")), "{message}");
    assert!(message.contains("counterpoint store check") && message.contains("counterpoint store repair"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "a refused open cuts nothing");
}

#[tokio::test]
async fn check_reports_the_damage_and_what_a_repair_would_lose_without_changing_anything() {
    let (dir, path, offsets, before) = damaged_in_the_middle().await;

    let report = embedded_check::check(dir.path()).unwrap();
    assert!(!report.opens());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let cut = report.cut.as_ref().expect("the damage");
    assert_eq!((cut.segment, cut.offset, cut.torn), (0, offsets[2] as u64, false));
    assert_eq!(cut.damaged_bytes, (offsets[3] - offsets[2]) as u64, "the damaged frame, up to the next valid one");
    // After the damaged frame (A2, positions 2-3): A3, O2, A4 are valid and would be lost.
    assert_eq!((cut.frames_lost, cut.events_lost), (3, 3));
    let lost: Vec<(String, u64, u64, u64)> =
        cut.tenants_lost.iter().map(|(t, l)| (t.clone(), l.events, l.first, l.last)).collect();
    assert_eq!(lost, vec![("acme".into(), 2, 4, 5), ("other".into(), 1, 2, 2)]);
    assert_eq!(report.heads.get("acme"), Some(&1));
    assert_eq!(report.heads.get("other"), Some(&1));
    let segment_report = &report.segments[0];
    assert_eq!((segment_report.frames, segment_report.events), (2, 2));
    assert_eq!(segment_report.damage, vec![(offsets[2] as u64, (offsets[3] - offsets[2]) as u64)]);
    assert_eq!(std::fs::read(&path).unwrap(), before, "check changes nothing");
}

#[tokio::test]
async fn repair_cuts_at_the_damage_keeps_the_cut_bytes_and_the_store_opens_with_what_came_before() {
    let (dir, path, offsets, before) = damaged_in_the_middle().await;
    let damaged = offsets[2];

    // What an earlier repair kept under the same name is not overwritten.
    let earlier = aside_path(&path.canonicalize().unwrap(), damaged as u64);
    std::fs::write(&earlier, b"kept by an earlier repair").unwrap();
    let aside = aside_path(&path.canonicalize().unwrap(), damaged as u64);
    assert_ne!(aside, earlier);

    let repair = embedded_check::repair(dir.path(), true).unwrap();
    assert_eq!(repair.set_aside, vec![aside.clone()]);
    assert_eq!(std::fs::read(&earlier).unwrap(), b"kept by an earlier repair");
    assert_eq!(std::fs::read(&aside).unwrap(), before[damaged..], "the cut bytes are kept");
    assert_eq!(std::fs::read(&path).unwrap(), before[..damaged]);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(types(&store, &acme()).await, vec![(1, "A1".to_string())]);
    assert_eq!(types(&store, &other()).await, vec![(1, "O1".to_string())]);
    assert_eq!(store.append(&acme(), vec![Event::new("A5")], vec![]).await.unwrap(), vec![Position::new(2)]);
    // An open store is neither checked nor repaired behind its back.
    assert!(matches!(embedded_check::check(dir.path()), Err(StoreError::Locked { .. })));
    assert!(matches!(embedded_check::repair(dir.path(), true), Err(StoreError::Locked { .. })));
    drop(store);
    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens() && report.cut.is_none(), "{report:?}");
}

#[tokio::test]
async fn a_torn_final_frame_is_still_cut_at_open() {
    let dir = tempfile::tempdir().unwrap();
    six_appends(dir.path()).await;
    let path = segment(dir.path(), 0);
    let last = *frame_offsets(&path).last().unwrap();
    // The last append's bytes reached the disk only in part: its checksum fails, nothing follows.
    flip_bit(&path, last);
    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens(), "{report:?}");
    assert!(report.cut.as_ref().is_some_and(|cut| cut.torn && cut.frames_lost == 0 && cut.offset == last as u64));

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(types(&store, &acme()).await.last(), Some(&(4, "A3".to_string())), "the torn append A4 is gone");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last as u64);
    drop(store);

    // A file extended by zeros (a power cut after the size reached the disk, before the data;
    // or the zeros the writer writes ahead of its frames) ends at its last frame: the next
    // append goes right after it, and the open cuts the zeros.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(last as u64 + 4096).unwrap();
    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens() && report.cut.is_none(), "{report:?}");
    assert_eq!(report.segments[0].zeroed_tail, 4096);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last as u64, "the open cuts the zeros");
    assert_eq!(types(&store, &acme()).await.len(), 4);
    assert_eq!(store.append(&acme(), vec![Event::new("A5")], vec![]).await.unwrap(), vec![Position::new(5)]);
    drop(store);
    assert_eq!(*frame_offsets(&path).last().unwrap(), last, "A5 follows the last frame");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(types(&store, &acme()).await.last(), Some(&(5, "A5".to_string())));
    drop(store);
    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.cut.is_none() && report.segments[0].zeroed_tail == 0, "closed: cut to its frames {report:?}");
}

/// A repair not asked to cut still cuts a torn final flush, as the store's next open would (its
/// appends were never acknowledged), and keeps the bytes; damage it is not asked to cut stays.
#[tokio::test]
async fn a_repair_cuts_a_torn_final_flush_without_being_asked_and_nothing_else() {
    let (dir, path, offsets) = damaged_before_zeros(4).await;
    let repair = embedded_check::repair(dir.path(), false).unwrap();
    assert!(repair.before.cut.as_ref().is_some_and(|cut| cut.torn), "{:?}", repair.before);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), offsets[4] as u64, "cut at the torn flush");
    assert_eq!(repair.set_aside.len(), 1, "the cut bytes are kept");
    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens() && report.cut.is_none(), "{report:?}");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(types(&store, &acme()).await.last(), Some(&(4, "A3".to_string())));

    let (dir, path, _) = damaged_before_zeros(2).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let repair = embedded_check::repair(dir.path(), false).unwrap();
    assert!(repair.before.cut.as_ref().is_some_and(|cut| !cut.torn) && repair.set_aside.is_empty(), "{:?}", repair.before);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "damage it was not asked to cut is left as it is");
    assert!(!embedded_check::check(dir.path()).unwrap().opens());
}

/// A store of [`six_appends`] with a bit flipped in frame `damaged` and 8 KiB of zeros after its
/// last frame, as the writer leaves them ahead: its directory, the segment and the frames' offsets.
async fn damaged_before_zeros(damaged: usize) -> (tempfile::TempDir, PathBuf, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    six_appends(dir.path()).await;
    let path = segment(dir.path(), 0);
    let offsets = frame_offsets(&path);
    flip_bit(&path, offsets[damaged]);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(offsets[5] as u64 + 8192).unwrap();
    (dir, path, offsets)
}

#[tokio::test]
async fn a_power_cut_that_kept_a_later_page_of_the_last_flush_and_lost_an_earlier_one_is_cut_at_open() {
    // The last flush wrote O2 and A4 over the zeros the writer had written ahead; the power went
    // before its fdatasync ended, and the disk holds A4's page but not all of O2's.
    let (dir, path, offsets) = damaged_before_zeros(4).await;
    let report = embedded_check::check(dir.path()).unwrap();
    let cut = report.cut.clone().expect("the torn flush");
    assert!(report.opens() && cut.torn, "{report:?}");
    assert_eq!((cut.offset, cut.frames_lost), (offsets[4] as u64, 1), "O2 is damaged, A4 of the same flush is cut with it");

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(types(&store, &other()).await, vec![(1, "O1".to_string())]);
    assert_eq!(types(&store, &acme()).await.last(), Some(&(4, "A3".to_string())), "A4 is gone with O2");
    assert_eq!(store.append(&other(), vec![Event::new("O3")], vec![]).await.unwrap(), vec![Position::new(2)]);
    drop(store);
    assert_eq!(*frame_offsets(&path).last().unwrap(), offsets[4], "the next append is written at the cut");

    // The same damage with valid frames further on than one flush reaches is not a torn flush.
    let (dir, _, _) = damaged_before_zeros(2).await;
    assert!(matches!(EmbeddedStore::open(dir.path()), Err(StoreError::Corrupt { .. })));
    assert!(!embedded_check::check(dir.path()).unwrap().opens());
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_reported_and_repaired_with_the_later_segments_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 300, ..Default::default() };
    {
        let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..8 {
            store.append(&acme(), vec![Event::new(format!("E{i}")).data(vec![1; 100])], vec![]).await.unwrap();
        }
    }
    let first = segment(dir.path(), 0);
    let offsets = frame_offsets(&first);
    assert!(offsets.len() >= 2 && segment(dir.path(), 3).exists(), "small segments roll: {offsets:?}");
    let kept = offsets.len() - 1;
    flip_bit(&first, offsets[kept]);

    // The flip is in a frame's header, not in an event: with the segment's index file there, the
    // store opens without scanning it and every event reads back intact (each has its own
    // checksum). Without the index file the segment is scanned, and the damage stops the store.
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(types(&store, &acme()).await.len(), 8);
    drop(store);
    std::fs::remove_file(dir.path().join("0000000000.idx")).unwrap();
    let err = EmbeddedStore::open_with(dir.path(), options.clone()).err().expect("must refuse");
    assert!(err.to_string().contains("0000000000.log") && err.to_string().contains(&format!("at byte {}", offsets[kept])), "{err}");

    let report = embedded_check::check(dir.path()).unwrap();
    let cut = report.cut.clone().expect("the damage");
    assert!(!report.opens() && !cut.torn);
    let later: Vec<u32> = report.segments.iter().skip(1).map(|s| s.number).collect();
    // Zeros at the end of a sealed segment are damage too (only the open one is written ahead).
    let second = segment(dir.path(), 1);
    let second_len = std::fs::metadata(&second).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&second).unwrap().set_len(second_len + 4096).unwrap();
    let report = embedded_check::check(dir.path()).unwrap();
    assert_eq!((report.segments[1].damage.clone(), report.segments[1].zeroed_tail), (vec![(second_len, 4096)], 0), "{report:?}");
    std::fs::OpenOptions::new().write(true).open(&second).unwrap().set_len(second_len).unwrap();
    assert_eq!(cut.later_segments, later);
    assert_eq!(cut.events_lost, 8 - kept as u64 - 1, "every valid append after the damage, in every later segment");
    assert_eq!(cut.tenants_lost["acme"].first, kept as u64 + 2);
    assert_eq!(cut.tenants_lost["acme"].last, 8);

    let repair = embedded_check::repair(dir.path(), true).unwrap();
    assert_eq!(repair.set_aside.len(), 1 + later.len());
    for &number in &later {
        assert!(!segment(dir.path(), number).exists());
        assert!(!dir.path().join(format!("{number:010}.idx")).exists(), "no index file outlives its segment");
        assert!(dir.path().join(format!("{number:010}.log.damaged-0")).exists());
    }
    let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
    let expected: Vec<(u64, String)> = (0..kept).map(|i| (i as u64 + 1, format!("E{i}"))).collect();
    assert_eq!(types(&store, &acme()).await, expected);
    let next = store.append(&acme(), vec![Event::new("After").data(vec![1; 100])], vec![]).await.unwrap();
    assert_eq!(next, vec![Position::new(kept as u64 + 1)]);
}
