//! The embedded store's index files: reads and conditions across sealed segments answer what an
//! index held wholly in memory answers, memory holds the open segment only, and an index file
//! that is missing, damaged or of the format before is built again from its segment (a damaged
//! block, which opening does not see, by `store check` and `store repair`).

use std::path::Path;
use std::time::Duration;

use counterpoint::store::{
    embedded_check, AppendCondition, EmbeddedOptions, EmbeddedStore, Event, EventStore, MemoryStore, Position, Query,
    QueryItem, ReadOptions, StoreError, Tenant,
};

fn small_segments() -> EmbeddedOptions {
    // A few appends per segment: every read and probe crosses many sealed segments.
    EmbeddedOptions { segment_bytes: 700, ..Default::default() }
}

fn tenants() -> [Tenant; 2] {
    [Tenant::new("acme").unwrap(), Tenant::new("globex").unwrap()]
}

fn random_query(rng: &mut fastrand::Rng) -> Query {
    let mut query = Query::default();
    for _ in 0..rng.usize(0..3) {
        let mut item = QueryItem::default();
        for _ in 0..rng.usize(0..3) {
            item = item.with_type(format!("T{}", rng.u8(0..4)));
        }
        for _ in 0..rng.usize(0..3) {
            item = item.with_tag(format!("k:{}", rng.u8(0..12)));
        }
        query = query.or(item);
    }
    query
}

/// An event of one of four types with up to two of twelve tags and `data_len` bytes of data.
fn random_event(rng: &mut fastrand::Rng, data_len: impl FnOnce(&mut fastrand::Rng) -> usize) -> Event {
    let (kind, byte) = (rng.u8(0..4), rng.u8(..));
    let mut event = Event::new(format!("T{kind}")).data(vec![byte; data_len(rng)]);
    for _ in 0..rng.usize(0..3) {
        event = event.tag(format!("k:{}", rng.u8(0..12)));
    }
    event
}

/// The same random appends to both stores, some under conditions.
async fn fill(stores: [&dyn EventStore; 2], rng: &mut fastrand::Rng, appends: usize) {
    for _ in 0..appends {
        let tenant = &tenants()[rng.usize(0..2)];
        let events: Vec<Event> = (0..rng.usize(1..6))
            .map(|_| random_event(rng, |rng| rng.usize(0..60)))
            .collect();
        let conditions = match rng.u8(0..3) {
            0 => {
                let head = stores[1].head(tenant).await.unwrap().dense();
                let after = (head > 0).then(|| Position::new(rng.u64(0..=head))).filter(|p| p.dense() > 0);
                vec![AppendCondition::new(random_query(rng), after)]
            }
            _ => vec![],
        };
        let expected = stores[1].append(tenant, events.clone(), conditions.clone()).await;
        let got = stores[0].append(tenant, events, conditions).await;
        assert_eq!(outcome(got), outcome(expected), "an append's outcome");
    }
}

fn outcome(result: Result<Vec<Position>, StoreError>) -> Result<Vec<u64>, String> {
    result.map(|positions| positions.iter().map(|p| p.dense()).collect()).map_err(|e| e.to_string())
}

/// Random reads of every kind and condition probes answer the same on both stores.
async fn compare(store: &EmbeddedStore, memory: &MemoryStore, rng: &mut fastrand::Rng, rounds: usize) {
    for _ in 0..rounds {
        let tenant = &tenants()[rng.usize(0..2)];
        let head = memory.head(tenant).await.unwrap().dense();
        let query = random_query(rng);
        let options = ReadOptions {
            after: rng.bool().then(|| rng.u64(1..=head.max(1))).map(Position::new),
            limit: rng.bool().then(|| rng.u64(1..8)),
            backwards: rng.bool(),
        };
        assert_eq!(
            read(store, tenant, &query, options).await,
            read(memory, tenant, &query, options).await,
            "{query:?} with {options:?}"
        );
        let after = Position::new(rng.u64(1..=head.max(1)));
        let (got, expected) = (probe(store, tenant, &query, after).await, probe(memory, tenant, &query, after).await);
        assert_eq!(got, expected, "condition {query:?} after {after:?}");
    }
}

async fn read(store: &dyn EventStore, tenant: &Tenant, query: &Query, options: ReadOptions) -> (Vec<(u64, Event)>, Position) {
    let (events, consistency) = store.read(tenant, query.clone(), options).await.unwrap().collect().await.unwrap();
    (events.into_iter().map(|e| (e.position.dense(), e.event)).collect(), consistency)
}

/// The first event breaking a condition on `query` after `after`, as a refused append names it
/// (None: the append was taken).
async fn probe(store: &dyn EventStore, tenant: &Tenant, query: &Query, after: Position) -> Option<u64> {
    match store.append(tenant, vec![Event::new("Probe")], vec![AppendCondition::new(query.clone(), Some(after))]).await {
        Err(StoreError::ConditionFailed { position, .. }) => Some(position.dense()),
        Err(other) => panic!("{other}"),
        Ok(_) => None,
    }
}

fn index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    files.sort();
    files
}

/// Waits until the sealer has indexed every sealed segment and memory forgot them.
async fn sealed(store: &EmbeddedStore) {
    for _ in 0..500 {
        let memory = store.index_memory();
        if index_files(store.dir()).len() as u64 == memory.sealed_segments && memory.events_in_memory < 40 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the sealer did not index the sealed segments: {:?}", store.index_memory());
}

/// A store on small segments filled with `appends` random appends (the same in a memory store),
/// every sealed segment indexed, then closed.
async fn closed_sealed_store(seed: u64, appends: usize) -> (tempfile::TempDir, MemoryStore, fastrand::Rng) {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    fill([&store, &memory], &mut rng, appends).await;
    sealed(&store).await;
    (dir, memory, rng)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_conditions_across_sealed_segments_answer_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(16);
    {
        let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
        fill([&store, &memory], &mut rng, 300).await;
        // While segments are being sealed, and once they all are.
        compare(&store, &memory, &mut rng, 150).await;
        sealed(&store).await;
        assert!(store.index_memory().sealed_segments > 20, "{:?}", store.index_memory());
        compare(&store, &memory, &mut rng, 150).await;
    }
    // Reopened: sealed segments come from their files, the open one from its scan.
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    assert!(store.index_memory().events_in_memory < 40, "opening reads index files, not the log: {:?}", store.index_memory());
    compare(&store, &memory, &mut rng, 200).await;
    fill([&store, &memory], &mut rng, 100).await;
    compare(&store, &memory, &mut rng, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_holds_the_open_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    let tenant = &tenants()[0];
    for i in 0..2_000u64 {
        store.append(tenant, vec![Event::new("T0").tag(format!("k:{}", i % 50)).data(vec![7; 40])], vec![]).await.unwrap();
    }
    sealed(&store).await;
    let memory = store.index_memory();
    assert!(memory.sealed_segments >= 100, "{memory:?}");
    assert!(memory.events_in_memory < 40, "2,000 events written, {} indexed in memory", memory.events_in_memory);
    let by_tag = Query::item(QueryItem::tags(["k:7"]));
    let (events, _) = store.read(tenant, by_tag, ReadOptions::default()).await.unwrap().collect().await.unwrap();
    assert_eq!(events.iter().map(|e| e.position.dense()).collect::<Vec<_>>(), (0..40).map(|n| 8 + 50 * n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_damaged_and_stale_index_files_are_built_again() {
    let (dir, memory, mut rng) = closed_sealed_store(61, 200).await;
    let files = index_files(dir.path());
    assert!(files.len() > 10);
    let good: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // One removed, one cut short, one with a bit flipped in its trailer, one copied over another.
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::write(&files[1], &good[1][..good[1].len() / 2]).unwrap();
    let mut flipped = good[2].clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x04;
    std::fs::write(&files[2], flipped).unwrap();
    std::fs::write(&files[3], &good[4]).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    for (file, good) in files.iter().zip(&good).take(4) {
        assert_eq!(&std::fs::read(file).unwrap(), good, "{} is built again, the same", file.display());
    }
    compare(&store, &memory, &mut rng, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_format_1_is_upgraded_in_place() {
    let (dir, memory, mut rng) = closed_sealed_store(1, 150).await;
    // What today's format-1 stores look like: segments, no index files.
    for file in index_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    std::fs::write(dir.path().join("FORMAT"), "counterpoint-store 1\n").unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(), "counterpoint-store 2\n");
    assert_eq!(index_files(dir.path()).len() as u64, store.index_memory().sealed_segments);
    compare(&store, &memory, &mut rng, 150).await;
    fill([&store, &memory], &mut rng, 50).await;
    compare(&store, &memory, &mut rng, 50).await;
    drop(store);

    std::fs::write(dir.path().join("FORMAT"), "counterpoint-store 3\n").unwrap();
    let err = EmbeddedStore::open_with(dir.path(), small_segments()).err().expect("a later format is refused");
    assert!(matches!(err, StoreError::UnsupportedFormat { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_block_is_found_by_check_and_removed_by_repair() {
    let (dir, memory, mut rng) = closed_sealed_store(71, 200).await;
    let files = index_files(dir.path());
    let name = |path: &Path| path.file_name().unwrap().to_owned();
    let healthy = embedded_check::check(dir.path()).unwrap();
    let sound = (files.len() + run_files(dir.path()).len(), 0);
    assert_eq!((healthy.index_files.sound, healthy.index_files.unsound.len()), sound, "as written, every file is sound");

    // A bit flipped in a block: opening the store checks only each file's trailer and meta.
    let good = std::fs::read(&files[3]).unwrap();
    let mut flipped = good.clone();
    flipped[2] ^= 0x10;
    std::fs::write(&files[3], &flipped).unwrap();
    drop(EmbeddedStore::open_with(dir.path(), small_segments()).unwrap());
    assert_eq!(std::fs::read(&files[3]).unwrap(), flipped, "the open does not see it");
    // A file cut short: that the open sees, and builds again by itself.
    let cut = std::fs::read(&files[5]).unwrap();
    std::fs::write(&files[5], &cut[..cut.len() / 2]).unwrap();

    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens(), "{report:?}");
    assert_eq!(report.index_files.sound, files.len() - 2 + run_files(dir.path()).len());
    let unsound: Vec<_> = report.index_files.unsound.iter().map(|(path, why)| (name(path), why.contains("byte 2 differs"))).collect();
    assert_eq!(unsound, vec![(name(&files[3]), true)], "{:?}", report.index_files);
    let rebuilt: Vec<_> = report.index_files.rebuilt_at_open.iter().map(|(path, _)| name(path)).collect();
    assert_eq!(rebuilt, vec![name(&files[5])], "{:?}", report.index_files);

    let repair = embedded_check::repair(dir.path(), false).unwrap();
    assert_eq!(repair.removed_index_files.iter().map(|p| name(p)).collect::<Vec<_>>(), vec![name(&files[3])]);
    assert!(repair.set_aside.is_empty(), "nothing of the log is cut");
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(std::fs::read(&files[3]).unwrap(), good, "built again by the open, the same");
    assert_eq!(std::fs::read(&files[5]).unwrap(), cut, "built again by the open, the same");
    compare(&store, &memory, &mut rng, 100).await;
}

fn run_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .collect();
    files.sort();
    files
}

/// Waits until the sealer has indexed every sealed segment and merged what is due.
async fn merged(store: &EmbeddedStore) {
    for _ in 0..1_000 {
        if !store.index_memory().indexing {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the sealer did not finish merging: {:?}", store.index_memory());
}

/// A store on small segments filled with `appends` random appends (the same in a memory store),
/// every merge that falls due done, then closed.
async fn closed_merged_store(seed: u64, appends: usize) -> (tempfile::TempDir, MemoryStore, fastrand::Rng) {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    fill([&store, &memory], &mut rng, appends).await;
    merged(&store).await;
    (dir, memory, rng)
}

/// The segments a run file covers, from its name.
fn covered(run: &Path) -> (u32, u32) {
    let name = run.file_stem().unwrap().to_str().unwrap();
    let (first, last) = name.split_once('-').unwrap();
    (first.parse().unwrap(), last.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_go_through_runs_of_merged_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(23);
    {
        let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
        fill([&store, &memory], &mut rng, 900).await;
        compare(&store, &memory, &mut rng, 100).await;
        merged(&store).await;
        let layout = store.index_memory();
        // Runs of 8 and of 64 segments, like a counter in base 8, and the segments left over.
        let sealed = layout.sealed_segments;
        let (sixty_fours, eights, loose) = (sealed / 64, sealed % 64 / 8, sealed % 8);
        assert!(sixty_fours >= 1, "{layout:?}");
        // What a tenant's searches go through (a tenant may have no events in a loose segment).
        assert!((sixty_fours..=sixty_fours + eights + loose).contains(&layout.search_parts), "{layout:?}");
        let runs: Vec<(u32, u32)> = run_files(dir.path()).iter().map(|r| covered(r)).collect();
        let mut want = Vec::new();
        let mut at = 0;
        for size in std::iter::repeat_n(64, sixty_fours as usize).chain(std::iter::repeat_n(8, eights as usize)) {
            want.push((at, at + size - 1));
            at += size;
        }
        assert_eq!(runs, want, "the runs merged smaller ones are removed");
        // Bloom filters are held for what searches go through only: the segments runs cover
        // keep their files (for their events' locations), not their filters.
        assert_eq!(layout.bloom_files, runs.len() as u64 + loose, "{layout:?}");
        compare(&store, &memory, &mut rng, 200).await;
    }
    // Reopened: the runs are taken as they are, and the covered segments' filters left out.
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    let layout = store.index_memory();
    assert_eq!(layout.bloom_files, run_files(dir.path()).len() as u64 + layout.sealed_segments % 8, "{layout:?}");
    let parts = store.index_memory().search_parts;
    assert!(parts < store.index_memory().sealed_segments / 4, "{:?}", store.index_memory());
    compare(&store, &memory, &mut rng, 200).await;
    fill([&store, &memory], &mut rng, 200).await;
    merged(&store).await;
    compare(&store, &memory, &mut rng, 200).await;
}

/// The third level of the counter: 512 segments become one run, merged from 8 runs of 64, each
/// merged from 8 runs of 8 (at 64 MiB segments, about 370 M events), and searches through it
/// answer what memory answers, live and reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_512_segments_answers_what_memory_answers() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(512);
    {
        let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
        // Appends bigger than a segment, so that each seals one: 520 segments in 520 appends.
        while store.index_memory().sealed_segments < 520 {
            let tenant = &tenants()[rng.usize(0..2)];
            let events: Vec<Event> = (0..12).map(|_| random_event(&mut rng, |_| 60)).collect();
            let expected = memory.append(tenant, events.clone(), vec![]).await.unwrap();
            assert_eq!(store.append(tenant, events, vec![]).await.unwrap(), expected);
        }
        merged(&store).await;
        let runs: Vec<(u32, u32)> = run_files(dir.path()).iter().map(|r| covered(r)).collect();
        assert_eq!(runs.first(), Some(&(0, 511)), "{runs:?}");
        assert!(runs.iter().skip(1).all(|&(first, last)| first > 511 && last - first + 1 == 8), "{runs:?}");
        let layout = store.index_memory();
        assert!(layout.search_parts <= 1 + 7 + 7, "{layout:?}");
        compare(&store, &memory, &mut rng, 300).await;
    }
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    assert!(store.index_memory().search_parts <= 1 + 7 + 7, "{:?}", store.index_memory());
    compare(&store, &memory, &mut rng, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_half_written_and_leftover_runs_are_removed_and_merged_again() {
    let (dir, memory, mut rng) = closed_merged_store(29, 500).await;
    let runs = run_files(dir.path());
    assert!(runs.len() >= 3, "{runs:?}");
    let good: Vec<Vec<u8>> = runs.iter().map(|r| std::fs::read(r).unwrap()).collect();
    // A bit flipped in a run's meta; a run cut short; a half-written merge left by a crash; a
    // smaller run that a crash left beside the bigger one that merged it.
    let meta_offset = |bytes: &[u8]| u64::from_le_bytes(bytes[bytes.len() - 20..bytes.len() - 12].try_into().unwrap()) as usize;
    let mut flipped = good[0].clone();
    flipped[meta_offset(&good[0]) + 30] ^= 0x08;
    std::fs::write(&runs[0], flipped).unwrap();
    std::fs::write(&runs[1], &good[1][..good[1].len() - 100]).unwrap();
    std::fs::write(dir.path().join("0000000000-0000000063.run.tmp"), b"half a run").unwrap();
    let (first, _) = covered(&runs[2]);
    let leftover = dir.path().join(format!("{first:010}-{:010}.run", first + 1));
    std::fs::write(&leftover, b"merged since").unwrap();
    // A stray name covering far more segments than there are.
    let stray = dir.path().join(format!("{:010}-{}.run", 0, u32::MAX));
    std::fs::write(&stray, b"stray").unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    assert!(!stray.exists(), "a run beyond the sealed segments is removed");
    let layout = store.index_memory();
    // The segments of the runs removed are searched themselves, with their bloom filters.
    assert!(layout.bloom_files >= layout.search_parts, "{layout:?}");
    assert!(!leftover.exists() && !dir.path().join("0000000000-0000000063.run.tmp").exists(), "{:?}", run_files(dir.path()));
    compare(&store, &memory, &mut rng, 100).await;
    merged(&store).await;
    for (run, good) in runs.iter().zip(&good) {
        assert_eq!(&std::fs::read(run).unwrap(), good, "{} is merged again, the same", run.display());
    }
    assert_eq!(run_files(dir.path()), runs);
    compare(&store, &memory, &mut rng, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_block_is_found_by_check_and_removed_by_repair() {
    let (dir, memory, mut rng) = closed_merged_store(37, 300).await;
    let runs = run_files(dir.path());
    let good = std::fs::read(&runs[0]).unwrap();
    // The first block is the first tenant's first key bucket: a search by any of its keys reads it.
    let mut flipped = good.clone();
    flipped[5] ^= 0x20;
    std::fs::write(&runs[0], &flipped).unwrap();
    {
        let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
        let by_tag = Query::item(QueryItem::tags(["k:1"]));
        let read = store.read(&tenants()[0], by_tag, ReadOptions::default()).await.unwrap().collect().await;
        let err = read.expect_err("searches go through the run, and its damage is an error, not a wrong answer");
        assert!(matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains(".run")), "{err}");
    }
    let report = embedded_check::check(dir.path()).unwrap();
    let unsound: Vec<_> = report.index_files.unsound.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(unsound, vec![runs[0].clone()], "{:?}", report.index_files);
    assert_eq!(report.index_files.sound, index_files(dir.path()).len() + runs.len() - 1);
    let repair = embedded_check::repair(dir.path(), false).unwrap();
    assert_eq!(repair.removed_index_files, vec![runs[0].clone()]);
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    merged(&store).await;
    assert_eq!(std::fs::read(&runs[0]).unwrap(), good, "merged again, the same");
    compare(&store, &memory, &mut rng, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_fails_stops_merging_not_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(43);
    {
        let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
        fill([&store, &memory], &mut rng, 30).await;
        sealed(&store).await;
    }
    let files = index_files(dir.path());
    assert!((2..8).contains(&files.len()), "fewer segments than a merge takes: {files:?}");
    // A flipped bit in the last key bucket of a segment's index file: opening does not read it,
    // a merge of that file does, and fails.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let meta_offset = u64::from_le_bytes(bytes[bytes.len() - 20..bytes.len() - 12].try_into().unwrap()) as usize;
    bytes[meta_offset - 6] ^= 0x01;
    std::fs::write(&files[1], &bytes).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small_segments()).unwrap();
    fill([&store, &memory], &mut rng, 200).await;
    // Nothing more is due once merging stopped, and every sealed segment is indexed.
    merged(&store).await;
    sealed(&store).await;
    let memory_after = store.index_memory();
    assert!(memory_after.sealed_segments >= 16, "{memory_after:?}");
    assert!(run_files(dir.path()).is_empty(), "the merge of the damaged file failed");
}

/// Segments of many appends, and the open one's index written at every clean close.
fn checkpointed() -> EmbeddedOptions {
    EmbeddedOptions { segment_bytes: 48 << 10, checkpoint_min_bytes: 0, ..Default::default() }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_writes_the_open_segments_index_and_the_next_open_scans_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(23);
    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    fill([&store, &memory], &mut rng, 150).await;
    assert_eq!(store.index_memory().sealed_segments, 0, "one open segment: {:?}", store.index_memory());
    drop(store);
    let open_index = dir.path().join("0000000000.idx");
    assert!(open_index.exists(), "the close wrote the open segment's index");

    // The open takes every event from the file: none is indexed in memory.
    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    assert_eq!(store.index_memory().events_in_memory, 0, "{:?}", store.index_memory());
    compare(&store, &memory, &mut rng, 150).await;
    // Appends after it are indexed in memory, and conditions see both.
    fill([&store, &memory], &mut rng, 100).await;
    assert!(store.index_memory().events_in_memory > 0);
    compare(&store, &memory, &mut rng, 100).await;
    // Until the segment is sealed: its whole index replaces the file and what memory held.
    while store.index_memory().sealed_segments == 0 {
        fill([&store, &memory], &mut rng, 20).await;
    }
    sealed(&store).await;
    let held = store.index_memory();
    assert_eq!(held.search_parts, held.sealed_segments, "the sealed segment's file took the place of the close's: {held:?}");
    compare(&store, &memory, &mut rng, 150).await;
    drop(store);

    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    assert_eq!(store.index_memory().events_in_memory, 0, "{:?}", store.index_memory());
    compare(&store, &memory, &mut rng, 150).await;
    drop(store);
    let report = embedded_check::check(dir.path()).unwrap();
    let files = index_files(dir.path()).len() + run_files(dir.path()).len();
    assert_eq!((report.index_files.sound, report.index_files.unsound.len(), report.index_files.rebuilt_at_open.len()), (files, 0, 0), "{:?}", report.index_files);
}

/// A store closed cleanly on one open segment of 120 appends of one event each (tags `k:0`..`k:6`).
async fn closed_on_one_segment(dir: &Path) -> Tenant {
    let tenant = tenants()[0].clone();
    let store = EmbeddedStore::open_with(dir, checkpointed()).unwrap();
    for i in 0..120u64 {
        store.append(&tenant, vec![Event::new("T0").tag(format!("k:{}", i % 7)).data(vec![i as u8; 40])], vec![]).await.unwrap();
    }
    drop(store);
    assert!(dir.join("0000000000.idx").exists());
    tenant
}

/// `store check` says what the next open does with an open segment's index file that does not
/// describe it: removes it and scans the segment (it is not built again as a sealed one's is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_a_damaged_open_segment_index_is_removed_and_the_segment_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = closed_on_one_segment(dir.path()).await;
    let file = dir.path().join("0000000000.idx");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // the trailer
    std::fs::write(&file, &bytes).unwrap();

    let report = embedded_check::check(dir.path()).unwrap();
    assert!(report.opens(), "{report:?}");
    let scanned = report.index_files.open_segment_scanned.as_ref().map(|(path, _)| path.clone());
    assert_eq!((scanned, report.index_files.rebuilt_at_open.len(), report.index_files.sound), (Some(file.clone()), 0, 0), "{:?}", report.index_files);

    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    assert!(!file.exists(), "the open removes it");
    assert_eq!(store.index_memory().events_in_memory, 120, "and scans the segment");
    assert_eq!(positions(&store, &tenant, Query::all()).await, (1..=120).collect::<Vec<_>>());
    drop(store);
    let report = embedded_check::check(dir.path()).unwrap();
    assert_eq!((report.index_files.open_segment_scanned.is_none(), report.index_files.sound), (true, 1), "the clean close wrote it again: {:?}", report.index_files);
}

async fn positions(store: &EmbeddedStore, tenant: &Tenant, query: Query) -> Vec<u64> {
    let (events, _) = store.read(tenant, query, ReadOptions::default()).await.unwrap().collect().await.unwrap();
    events.iter().map(|e| e.position.dense()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_segments_index_that_no_longer_describes_the_segment_is_removed_and_the_segment_scanned() {
    // The segment cut inside its last frame (as a repair cuts, or a torn write): the file
    // describes bytes the segment no longer has.
    let dir = tempfile::tempdir().unwrap();
    let tenant = closed_on_one_segment(dir.path()).await;
    let segment = &segment_files(dir.path())[0];
    let len = std::fs::metadata(segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(segment).unwrap().set_len(len - 5).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    assert!(!dir.path().join("0000000000.idx").exists(), "the file that describes more than the segment is removed");
    assert_eq!(positions(&store, &tenant, Query::all()).await, (1..=119).collect::<Vec<_>>(), "the torn append is cut");
    assert_eq!(store.index_memory().events_in_memory, 119);
    drop(store);

    // The segment's last event changed, its length the same: the file's checksum of it fails.
    let dir = tempfile::tempdir().unwrap();
    let tenant = closed_on_one_segment(dir.path()).await;
    let segment = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), checkpointed()).unwrap();
    let by_tag = Query::item(QueryItem::tags(["k:1"]));
    // The last frame fails its checksum with no frame after it: cut as a torn write.
    assert_eq!(positions(&store, &tenant, by_tag).await, (0..17).map(|n| 2 + 7 * n).collect::<Vec<_>>());
    assert_eq!(positions(&store, &tenant, Query::all()).await.len(), 119);
    drop(store);

    // A byte of the first frame flipped, frames after it whole further on than one flush
    // reaches: damage, not a torn write. The store refuses to open and names the segment, as it
    // does with no file: the prefix the file describes is checked too.
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 1 << 20, ..checkpointed() };
    {
        let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..3u8 {
            store.append(&tenant, vec![Event::new("T0").data(vec![i; 40_000])], vec![]).await.unwrap();
        }
    }
    assert!(dir.path().join("0000000000.idx").exists());
    let segment = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();
    let err = EmbeddedStore::open_with(dir.path(), options).err().expect("damage in the open segment stops the open");
    assert!(matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("0000000000.log")), "{err:?}");
}

/// The open segment checkpointed by the sealer while the store runs, then appended to by tenants
/// that were in the checkpoint and one that was not, then closed without a checkpoint (as a
/// crash leaves it, the page cache kept): the next open takes the first events from the file and
/// scans the rest, reads and conditions answer as in memory, and `store check` finds every index
/// file sound, the open segment's describing its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealers_checkpoint_of_the_open_segment_is_what_an_open_after_a_crash_starts_from() {
    let options = super::checkpointed_while_running(8 << 10);
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(29);
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    fill([&store, &memory], &mut rng, 150).await;
    let open_index = dir.path().join("0000000000.idx");
    crate::api::eventually("the sealer checkpoints the open segment", || async { open_index.exists() }).await;
    // A tenant with no event in the checkpoint.
    let late = Tenant::new("late").unwrap();
    for i in 0..5u64 {
        let event = || Event::new("Late").tag(format!("late:{i}"));
        store.append(&late, vec![event()], vec![]).await.unwrap();
        memory.append(&late, vec![event()], vec![]).await.unwrap();
    }
    fill([&store, &memory], &mut rng, 20).await;
    drop(store);

    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    let mut total = 0;
    for tenant in [tenants().as_slice(), std::slice::from_ref(&late)].concat() {
        total += memory.head(&tenant).await.unwrap().dense();
    }
    let in_memory = store.index_memory().events_in_memory;
    assert!(in_memory > 0 && in_memory < total, "{in_memory} of {total} events indexed in memory: some from the file, the rest scanned");
    compare(&store, &memory, &mut rng, 150).await;
    assert_eq!(positions(&store, &late, Query::all()).await, (1..=5).collect::<Vec<_>>());
    drop(store);
    // The sealer's checkpoints after the first described only what came after the one before.
    let files = index_files(dir.path());
    assert!(files.len() >= 2 && files.len() <= 8, "a chain of checkpoint files: {files:?}");
    let report = embedded_check::check(dir.path()).unwrap();
    let index_files = &report.index_files;
    assert_eq!((index_files.sound, index_files.unsound.len(), index_files.rebuilt_at_open.len(), index_files.open_segment_scanned.is_none()), (files.len(), 0, 0, true), "{index_files:?}");
}

/// The open segment's checkpoint files: the first (`<segment>.idx`) and those after it
/// (`<segment>+<from>.idx`), in order.
fn checkpoint_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = index_files(dir).into_iter().filter(|path| path.to_string_lossy().contains("0000000000")).collect();
    // The first file, then the others by where they start.
    files.sort_by_key(|path| path.file_name().unwrap().to_string_lossy().replace(".idx", "+"));
    files
}

/// Appends events `numbers` one by one, each tagged `k:<number % 7>`.
async fn append_numbered(store: &EmbeddedStore, tenant: &Tenant, numbers: std::ops::RangeInclusive<u64>) {
    for i in numbers {
        store.append(tenant, vec![Event::new("T0").tag(format!("k:{}", i % 7)).data(vec![i as u8; 200])], vec![]).await.unwrap();
    }
}

/// Opens the store, appends events `round * 10 + 1..=round * 10 + 10` and closes it, for each round.
async fn rounds_of_ten(dir: &Path, options: &EmbeddedOptions, tenant: &Tenant, rounds: std::ops::Range<u64>) {
    for round in rounds {
        let store = EmbeddedStore::open_with(dir, options.clone()).unwrap();
        append_numbered(&store, tenant, round * 10 + 1..=round * 10 + 10).await;
    }
}

/// Each clean close adds a checkpoint file that describes only what came after the last one, and
/// the next open takes every event from the chain (none is scanned); the close after the eighth
/// file writes one file of the whole segment again in their place, so a chain stays short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_clean_close_adds_a_checkpoint_of_what_came_after_the_last_and_eight_are_folded_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 1 << 20, checkpoint_min_bytes: 0, ..Default::default() };
    let tenant = tenants()[0].clone();
    let mut sizes = Vec::new();
    for round in 1..=10u64 {
        let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(store.index_memory().events_in_memory, 0, "round {round}: every event from the files");
        assert_eq!(positions(&store, &tenant, Query::all()).await, (1..=(round - 1) * 10).collect::<Vec<_>>(), "round {round}");
        let by_tag = Query::item(QueryItem::tags(["k:3"]));
        let expected: Vec<u64> = (1..=(round - 1) * 10).filter(|p| p % 7 == 3).collect();
        assert_eq!(positions(&store, &tenant, by_tag).await, expected, "round {round}: a tag read across the files");
        append_numbered(&store, &tenant, (round - 1) * 10 + 1..=round * 10).await;
        drop(store);
        let files = checkpoint_files(dir.path());
        assert_eq!(files.len() as u64, if round <= 8 { round } else { round - 8 }, "round {round}: {files:?}");
        sizes.push(std::fs::metadata(files.last().unwrap()).unwrap().len());
    }
    // A file after the first costs its own events (ten), not the segment's: the eighth is about
    // the size of the first, the ninth (all 90 events again) several times bigger.
    assert!(sizes[7] < 2 * sizes[0] && sizes[8] > 4 * sizes[0], "file sizes by round: {sizes:?}");
    let report = embedded_check::check(dir.path()).unwrap();
    assert_eq!((report.index_files.sound, report.index_files.open_segment_scanned.is_none()), (2, true), "{:?}", report.index_files);
}

/// A checkpoint file in the middle of the chain damaged, then one missing: the open takes the
/// events of the files before it, removes it and every later one, and scans the rest; `store
/// check` names the file first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_checkpoint_file_ends_the_chain_there_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 1 << 20, checkpoint_min_bytes: 0, ..Default::default() };
    let tenant = tenants()[0].clone();
    rounds_of_ten(dir.path(), &options, &tenant, 0..5).await;
    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), 5, "{files:?}");

    // The third file's trailer damaged: the first two are taken, 30 events scanned.
    let mut bytes = std::fs::read(&files[2]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&files[2], &bytes).unwrap();
    let report = embedded_check::check(dir.path()).unwrap();
    assert_eq!(report.index_files.open_segment_scanned.as_ref().map(|(path, _)| path), Some(&files[2]), "{:?}", report.index_files);
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(store.index_memory().events_in_memory, 30);
    assert_eq!(checkpoint_files(dir.path()), files[..2], "the damaged file and those after it are removed");
    assert_eq!(positions(&store, &tenant, Query::all()).await, (1..=50).collect::<Vec<_>>());
    let expected: Vec<u64> = (1..=50).filter(|p| p % 7 == 3).collect();
    assert_eq!(positions(&store, &tenant, Query::item(QueryItem::tags(["k:3"]))).await, expected);
    drop(store);

    // The close added one file for the 30 events; two more rounds, then the second file goes:
    // the files after it do not follow the first, and only the first is taken.
    rounds_of_ten(dir.path(), &options, &tenant, 5..7).await;
    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), 5, "{files:?}");
    std::fs::remove_file(&files[1]).unwrap();
    let report = embedded_check::check(dir.path()).unwrap();
    assert_eq!(report.index_files.open_segment_scanned.as_ref().map(|(path, _)| path), Some(&files[2]), "{:?}", report.index_files);
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(store.index_memory().events_in_memory, 60, "the first file held the first 10 events");
    assert_eq!(checkpoint_files(dir.path()), files[..1]);
    let expected: Vec<u64> = (1..=70).filter(|p| p % 7 == 3).collect();
    assert_eq!(positions(&store, &tenant, Query::item(QueryItem::tags(["k:3"]))).await, expected);
}

/// When the open segment is sealed its whole index replaces the chain: the files after the first
/// are removed, in a store opened from them too; one that a crash left behind after the seal is
/// removed by the next open, as is an index file's temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_replaces_the_checkpoint_chain_and_an_open_removes_one_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 64 << 10, checkpoint_min_bytes: 0, ..Default::default() };
    let tenant = tenants()[0].clone();
    rounds_of_ten(dir.path(), &options, &tenant, 0..3).await;
    let mut appended = 30;
    let chain = checkpoint_files(dir.path());
    assert_eq!(chain.len(), 3, "{chain:?}");
    let left_behind = std::fs::read(&chain[2]).unwrap();

    // Opened from the chain, then sealed: the segment's whole file takes the chain's place.
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    while store.index_memory().sealed_segments == 0 {
        append_numbered(&store, &tenant, appended + 1..=appended + 20).await;
        appended += 20;
    }
    sealed(&store).await;
    assert_eq!(checkpoint_files(dir.path()), [dir.path().join("0000000000.idx")], "the seal removed the files after the first");
    drop(store);

    // A crash between the seal's file and the removal of the chain's others, and one while an
    // index file was written.
    std::fs::write(&chain[2], &left_behind).unwrap();
    let temporary = chain[2].with_extension("idx.tmp");
    std::fs::write(&temporary, &left_behind[..100]).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert!(!chain[2].exists(), "the open removes a sealed segment's checkpoint file");
    assert!(!temporary.exists(), "and an index file's temporary file");
    assert_eq!(positions(&store, &tenant, Query::all()).await, (1..=appended).collect::<Vec<_>>());
    let expected: Vec<u64> = (1..=appended).filter(|p| p % 7 == 3).collect();
    assert_eq!(positions(&store, &tenant, Query::item(QueryItem::tags(["k:3"]))).await, expected);
}

/// A run copies the events of each short posting list into the key bucket that holds it (up to
/// 4 KiB of them a key): a read by such a tag takes its events from there and reads nothing of
/// the log, while a tag whose events are too big to copy is read from the log, as the events
/// no run covers yet are. Either way, reopened too, the events are the ones appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_read_through_a_run_takes_its_events_from_the_runs_copies() {
    use counterpoint::store::sim_disk::{Faults, SimDisk};
    let disk = SimDisk::new(5, Faults::default());
    let open = || EmbeddedStore::open_on(std::sync::Arc::new(disk.clone()), "/data", small_segments()).unwrap();
    let store = open();
    let tenant = &tenants()[0];
    let mut appended: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    // Each append is bigger than a segment, so append i lies in segment i: the copied tags'
    // events in segments 0..=5, which the first run (0..=7) covers.
    for i in 0..24u8 {
        let small = format!("copied:{}", i % 3);
        let mut events = vec![Event::new("Big").tag("big").data(vec![i; 600])];
        if i < 6 {
            events.push(Event::new("Small").tag(small.as_str()).data(vec![i; 40]));
            appended.entry(small).or_default().push(vec![i; 40]);
        }
        appended.entry("big".into()).or_default().push(vec![i; 600]);
        store.append(tenant, events, vec![]).await.unwrap();
    }
    merged(&store).await;
    assert!(run_files_on(&disk).contains(&"0000000000-0000000007.run".to_string()), "{:?}", run_files_on(&disk));

    let mut store = Some(store);
    for reopened in [false, true] {
        if reopened {
            drop(store.take());
        }
        let store = store.get_or_insert_with(open);
        for (tag, want) in &appended {
            let before = disk.log_reads();
            let (events, _) = store.read(tenant, Query::item(QueryItem::tags([tag.as_str()])), ReadOptions::default()).await.unwrap().collect().await.unwrap();
            let log_reads = disk.log_reads() - before;
            assert_eq!(&events.into_iter().map(|e| e.event.data).collect::<Vec<_>>(), want, "{tag} (reopened: {reopened})");
            if tag == "big" {
                // 14 KiB of events: more than a key's copies may hold; and some lie past the run.
                assert!(log_reads > 0, "{tag}: read from the log");
            } else {
                assert_eq!(log_reads, 0, "{tag}: the run's copies answer, the log is not read");
            }
        }
    }
}

fn run_files_on(disk: &counterpoint::store::sim_disk::SimDisk) -> Vec<String> {
    use counterpoint::store::embedded_disk::Disk;
    disk.list(Path::new("/data")).unwrap().into_iter().filter(|name| name.ends_with(".run")).collect()
}

/// What `bench scale` leaves out of its warm-up: the index files of exactly the segments the
/// runs cover, which exist; a run named beyond the sealed segments covers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_files_runs_cover_are_named_by_the_runs() {
    let (dir, _, _) = closed_merged_store(41, 300).await;
    std::fs::write(dir.path().join(format!("{:010}-{}.run", 0, u32::MAX)), b"stray").unwrap();
    let skipped = embedded_check::covered_index_files(dir.path()).unwrap();
    let runs: Vec<(u32, u32)> = run_files(dir.path()).iter().map(|r| covered(r)).filter(|&(_, last)| last != u32::MAX).collect();
    assert!(!runs.is_empty());
    let want: Vec<_> = runs.iter().flat_map(|&(first, last)| first..=last).map(|s| dir.path().join(format!("{s:010}.idx"))).collect();
    assert_eq!(skipped, want);
    assert!(skipped.iter().all(|file| index_files(dir.path()).contains(file)));
    assert!(index_files(dir.path()).len() > skipped.len(), "the segments no run covers keep theirs in the warm-up");
}
