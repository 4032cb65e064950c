//! The read-model state conformance suite: what every `StateStore` must do, written once and
//! run against the in-memory state, the embedded (redb) state and, with `--features fdb`, the
//! FoundationDB state (run when `FDB_CLUSTER_FILE` named a cluster at build time, reported as
//! ignored otherwise: see `tests/build.rs` and `docs/fdb.md`).
//!
//! `state_conformance!(backend, fixture)` instantiates every case for one backend (attributes
//! after the fixture go on every case). A new backend plugs in with one line at the bottom.

use std::any::Any;
use std::sync::Arc;

use counterpoint::readmodels::state::Writes;
use counterpoint::readmodels::{Checkpoint, EmbeddedState, MemoryState, ReadModelId, SharedState};
use counterpoint::store::{Position, Tenant};

/// A state backend under test; holds whatever must outlive it (its file) or clean up after it.
pub struct Fixture {
    pub state: SharedState,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

pub fn memory() -> Fixture {
    Fixture { state: Arc::new(MemoryState::new()), _guard: None }
}

pub fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = EmbeddedState::open(dir.path().join("readmodels.redb")).expect("open the embedded state");
    Fixture { state: Arc::new(state), _guard: Some(Box::new(dir)) }
}

/// The cluster named by `FDB_CLUSTER_FILE`, under a fresh random prefix (cleared afterwards),
/// so tests never see each other's data.
#[cfg(feature = "fdb")]
pub fn fdb() -> Fixture {
    let (store, prefix, guard) = crate::store::fdb_store();
    let state = counterpoint::readmodels::FdbState::new(store.database(), &prefix).expect("open the FoundationDB state");
    Fixture { state: Arc::new(state), _guard: Some(guard) }
}

#[cfg(not(feature = "fdb"))]
pub fn fdb() -> Fixture {
    crate::store::without_fdb()
}

fn id(tenant: &str, slice: &str, name: &str) -> ReadModelId {
    ReadModelId { tenant: Tenant::new(tenant).unwrap(), slice: slice.into(), name: name.into() }
}

fn model() -> ReadModelId {
    id("acme", "inventory", "stock-levels")
}

fn cp(position: u128, source: &str) -> Checkpoint {
    Checkpoint { position: Position::from_u128(position), source: source.into() }
}

fn puts(entries: &[(&[u8], &[u8])]) -> Writes {
    entries.iter().map(|(k, v)| (k.to_vec(), Some(v.to_vec()))).collect()
}

fn deletes(keys: &[&[u8]]) -> Writes {
    keys.iter().map(|k| (k.to_vec(), None)).collect()
}

async fn get(state: &SharedState, id: &ReadModelId, key: &[u8]) -> Option<Vec<u8>> {
    state.get(id, key).await.expect("get")
}

async fn keys(state: &SharedState, id: &ReadModelId, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
    state.scan(id, prefix, after, limit).await.expect("scan").into_iter().map(|(k, _)| k).collect()
}

fn ks(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// Commits, expecting the checkpoint to have been `from`.
async fn commit(state: &SharedState, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: &Checkpoint) {
    assert!(state.commit(id, from, writes, to.clone()).await.expect("commit"), "the checkpoint was {from:?}");
}

pub async fn get_put_delete_through_commit(state: SharedState) {
    let m = model();
    assert_eq!(get(&state, &m, b"apples").await, None, "a new read model is empty");
    let big = vec![7u8; 90_000];
    let c1 = cp(1, "q");
    commit(&state, &m, None, puts(&[(b"apples", b"10"), (b"pears", b"3"), (b"big", &big), (&[0, 0xff], b"")]), &c1).await;
    assert_eq!(get(&state, &m, b"apples").await, Some(b"10".to_vec()));
    assert_eq!(get(&state, &m, b"pears").await, Some(b"3".to_vec()));
    assert_eq!(get(&state, &m, b"big").await, Some(big), "a value of 90,000 bytes");
    assert_eq!(get(&state, &m, &[0, 0xff]).await, Some(Vec::new()), "an empty value is a value");
    assert_eq!(get(&state, &m, b"apple").await, None, "no key by prefix");

    // Overwrite one, delete one, delete one that never was, add one: all in one commit.
    let c2 = cp(2, "q");
    let mut writes = puts(&[(b"apples", b"9"), (b"plums", b"1")]);
    writes.extend(deletes(&[b"pears", b"never"]));
    commit(&state, &m, Some(&c1), writes, &c2).await;
    assert_eq!(get(&state, &m, b"apples").await, Some(b"9".to_vec()));
    assert_eq!(get(&state, &m, b"pears").await, None);
    assert_eq!(get(&state, &m, b"never").await, None);
    assert_eq!(get(&state, &m, b"plums").await, Some(b"1".to_vec()));
    assert_eq!(state.len(&m).await.unwrap(), 4);

    // A batch that writes nothing still moves the checkpoint.
    let c3 = cp(3, "q");
    commit(&state, &m, Some(&c2), Writes::new(), &c3).await;
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c3));
    assert_eq!(get(&state, &m, b"apples").await, Some(b"9".to_vec()));
}

pub async fn scan_prefix_after_limit_and_order(state: SharedState) {
    let m = model();
    assert!(keys(&state, &m, b"", None, 100).await.is_empty(), "a new read model scans empty");
    let all: Vec<&[u8]> = vec![
        &[0x00],
        b"apple",
        b"apple/1",
        b"apple/2",
        b"apple/3",
        b"apricot",
        b"b",
        &[0xff],
        &[0xff, 0x00],
        &[0xff, 0xff],
    ];
    // Written in an order other than the key order.
    let mut writes = Writes::new();
    for key in all.iter().rev() {
        writes.insert(key.to_vec(), Some([b"v:".as_slice(), key].concat()));
    }
    commit(&state, &m, None, writes, &cp(1, "q")).await;

    let scanned = state.scan(&m, b"", None, 100).await.unwrap();
    assert_eq!(scanned.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), ks(&all), "every key, in byte order");
    assert!(scanned.iter().all(|(k, v)| *v == [b"v:".as_slice(), k].concat()), "each with its value");

    // Prefix.
    assert_eq!(keys(&state, &m, b"apple/", None, 100).await, ks(&[b"apple/1", b"apple/2", b"apple/3"]));
    assert_eq!(keys(&state, &m, b"apple", None, 100).await, ks(&[b"apple", b"apple/1", b"apple/2", b"apple/3"]));
    assert_eq!(keys(&state, &m, &[0xff], None, 100).await, ks(&[&[0xff], &[0xff, 0x00], &[0xff, 0xff]]));
    assert!(keys(&state, &m, b"zzz", None, 100).await.is_empty());
    assert!(keys(&state, &m, b"apple/4", None, 100).await.is_empty());

    // After: exclusive, within the prefix, before it, at it, past it.
    assert_eq!(keys(&state, &m, b"apple/", Some(b"apple/1"), 100).await, ks(&[b"apple/2", b"apple/3"]));
    assert_eq!(keys(&state, &m, b"apple/", Some(b"apple/15"), 100).await, ks(&[b"apple/2", b"apple/3"]), "after a key that is not there");
    assert_eq!(keys(&state, &m, b"apple/", Some(b"a"), 100).await, ks(&[b"apple/1", b"apple/2", b"apple/3"]), "after before the prefix");
    assert_eq!(keys(&state, &m, b"apple/", Some(&[]), 100).await, ks(&[b"apple/1", b"apple/2", b"apple/3"]), "after the empty key");
    assert_eq!(keys(&state, &m, b"apple/", Some(b"apple/"), 100).await, ks(&[b"apple/1", b"apple/2", b"apple/3"]), "after the prefix itself");
    assert!(keys(&state, &m, b"apple/", Some(b"apple/3"), 100).await.is_empty(), "after the last key");
    assert!(keys(&state, &m, b"apple/", Some(b"b"), 100).await.is_empty(), "after past the prefix");
    assert_eq!(keys(&state, &m, b"", Some(b"b"), 100).await, ks(&[&[0xff], &[0xff, 0x00], &[0xff, 0xff]]));
    assert_eq!(keys(&state, &m, &[0xff], Some(&[0xff, 0x00]), 100).await, ks(&[&[0xff, 0xff]]));
    assert!(keys(&state, &m, b"", Some(&[0xff, 0xff]), 100).await.is_empty());

    // Limit.
    assert_eq!(keys(&state, &m, b"ap", None, 2).await, ks(&[b"apple", b"apple/1"]));
    assert_eq!(keys(&state, &m, b"ap", Some(b"apple/2"), 10).await, ks(&[b"apple/3", b"apricot"]));
    assert_eq!(keys(&state, &m, b"", Some(b"apple/3"), 3).await, ks(&[b"apricot", b"b", &[0xff]]));
    assert_eq!(keys(&state, &m, b"", None, 1).await, ks(&[&[0x00]]));
    assert!(keys(&state, &m, b"", None, 0).await.is_empty(), "limit 0");

    // Paging through with `after` = the last key seen visits every key once.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = keys(&state, &m, b"", after.as_deref(), 3).await;
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, ks(&all));

    // Deleted keys are gone from scans.
    commit(&state, &m, Some(&cp(1, "q")), deletes(&[b"apple/2", &[0xff]]), &cp(2, "q")).await;
    assert_eq!(keys(&state, &m, b"apple/", None, 100).await, ks(&[b"apple/1", b"apple/3"]));
    assert_eq!(keys(&state, &m, &[0xff], None, 100).await, ks(&[&[0xff, 0x00], &[0xff, 0xff]]));
}

pub async fn stale_from_writes_nothing(state: SharedState) {
    let m = model();
    let c1 = cp(5, "q");
    commit(&state, &m, None, puts(&[(b"x", b"1")]), &c1).await;
    let stale = [None, Some(cp(4, "q")), Some(cp(5, "other source")), Some(cp(6, "q"))];
    for from in &stale {
        let moved = state.commit(&m, from.as_ref(), puts(&[(b"x", b"2"), (b"y", b"3")]), cp(9, "q")).await.unwrap();
        assert!(!moved, "a commit from {from:?} while the checkpoint is {c1:?}");
        let moved = state.commit(&m, from.as_ref(), deletes(&[b"x"]), cp(9, "q")).await.unwrap();
        assert!(!moved, "a delete from {from:?}");
    }
    assert_eq!(get(&state, &m, b"x").await, Some(b"1".to_vec()));
    assert_eq!(get(&state, &m, b"y").await, None);
    assert_eq!(state.len(&m).await.unwrap(), 1);
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c1.clone()));
    // The right `from` still works afterwards.
    commit(&state, &m, Some(&c1), puts(&[(b"y", b"3")]), &cp(9, "q")).await;
    assert_eq!(get(&state, &m, b"y").await, Some(b"3".to_vec()));

    // A commit from a checkpoint on a read model that has none.
    let fresh = id("acme", "inventory", "fresh");
    assert!(!state.commit(&fresh, Some(&c1), puts(&[(b"x", b"1")]), cp(6, "q")).await.unwrap());
    assert_eq!(get(&state, &fresh, b"x").await, None);
    assert_eq!(state.checkpoint(&fresh).await.unwrap(), None);
}

pub async fn checkpoint_round_trip(state: SharedState) {
    let m = model();
    assert_eq!(state.checkpoint(&m).await.unwrap(), None, "a new read model has no checkpoint");
    let c1 = cp(7, r#"{"items":[{"types":["StockReceived"],"tags":[]}]}"#);
    commit(&state, &m, None, Writes::new(), &c1).await;
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c1.clone()));
    // Positions are opaque 128-bit values (versionstamps on FoundationDB), sources any text.
    let long_source: String = "é∑ source ".repeat(1000);
    let c2 = cp((1u128 << 95) + 12_345, &long_source);
    commit(&state, &m, Some(&c1), Writes::new(), &c2).await;
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c2.clone()));
    let c3 = cp(u128::MAX, "");
    commit(&state, &m, Some(&c2), Writes::new(), &c3).await;
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c3.clone()));
    // A checkpoint may go back (a rebuild from another source starts over).
    let c4 = cp(0, "new source");
    commit(&state, &m, Some(&c3), Writes::new(), &c4).await;
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(c4));
}

pub async fn clear_drops_entries_and_checkpoint(state: SharedState) {
    let m = model();
    let c1 = cp(3, "q");
    commit(&state, &m, None, puts(&[(b"a", b"1"), (b"b", b"2"), (&[0xff; 3], b"3")]), &c1).await;
    state.clear(&m).await.unwrap();
    assert_eq!(state.checkpoint(&m).await.unwrap(), None);
    assert_eq!(get(&state, &m, b"a").await, None);
    assert!(keys(&state, &m, b"", None, 100).await.is_empty());
    assert_eq!(state.len(&m).await.unwrap(), 0);
    // The old checkpoint is gone: committing from it fails, from nothing succeeds.
    assert!(!state.commit(&m, Some(&c1), puts(&[(b"z", b"1")]), cp(4, "q")).await.unwrap());
    assert_eq!(get(&state, &m, b"z").await, None);
    commit(&state, &m, None, puts(&[(b"c", b"1")]), &cp(1, "q2")).await;
    assert_eq!(keys(&state, &m, b"", None, 100).await, ks(&[b"c"]));
    assert_eq!(state.checkpoint(&m).await.unwrap(), Some(cp(1, "q2")));
    // Clearing what does not exist (twice) is fine.
    state.clear(&id("acme", "nothing", "here")).await.unwrap();
    state.clear(&m).await.unwrap();
    state.clear(&m).await.unwrap();
    assert_eq!(state.checkpoint(&m).await.unwrap(), None);
}

pub async fn len_counts_keys(state: SharedState) {
    let m = model();
    assert_eq!(state.len(&m).await.unwrap(), 0);
    let mut writes = Writes::new();
    for i in 0..1000u32 {
        writes.insert(format!("key/{i:04}").into_bytes(), Some(vec![1; 100]));
    }
    commit(&state, &m, None, writes, &cp(1, "q")).await;
    assert_eq!(state.len(&m).await.unwrap(), 1000);
    // Overwrites do not count twice; deletes of absent keys do not count at all.
    let mut writes = puts(&[(b"key/0000", b"again"), (b"new", b"1")]);
    writes.extend(deletes(&[b"key/0001", b"key/0002", b"absent"]));
    commit(&state, &m, Some(&cp(1, "q")), writes, &cp(2, "q")).await;
    assert_eq!(state.len(&m).await.unwrap(), 999);
    // The checkpoint is not a key.
    let only_checkpoint = id("acme", "inventory", "empty");
    commit(&state, &only_checkpoint, None, Writes::new(), &cp(1, "q")).await;
    assert_eq!(state.len(&only_checkpoint).await.unwrap(), 0);
}

pub async fn read_models_and_tenants_are_isolated(state: SharedState) {
    // Names that are prefixes of each other, in every part of the id.
    let ids = [
        id("acme", "s", "n"),
        id("acme", "s", "n2"),
        id("acme", "s2", "n"),
        id("acme", "sn", "x"),
        id("acme", "s", "nx"),
        id("acme-2", "s", "n"),
        id("acme2", "s", "n"),
    ];
    for (i, m) in ids.iter().enumerate() {
        let value = format!("{i}").into_bytes();
        commit(&state, m, None, puts(&[(b"k", &value), (format!("only-{i}").as_bytes(), b"")]), &cp(i as u128 + 1, &format!("src-{i}"))).await;
    }
    for (i, m) in ids.iter().enumerate() {
        assert_eq!(get(&state, m, b"k").await, Some(format!("{i}").into_bytes()), "{m}");
        assert_eq!(keys(&state, m, b"", None, 100).await, ks(&[b"k", format!("only-{i}").as_bytes()]), "{m}");
        assert_eq!(state.len(m).await.unwrap(), 2, "{m}");
        assert_eq!(state.checkpoint(m).await.unwrap(), Some(cp(i as u128 + 1, &format!("src-{i}"))), "{m}");
    }
    // A commit on one, from another's checkpoint, fails; a stale commit on one leaves the others.
    assert!(!state.commit(&ids[1], Some(&cp(1, "src-0")), puts(&[(b"k", b"!")]), cp(99, "x")).await.unwrap());
    // Clearing one leaves the others.
    state.clear(&ids[0]).await.unwrap();
    state.clear(&ids[5]).await.unwrap();
    for (i, m) in ids.iter().enumerate() {
        let cleared = i == 0 || i == 5;
        assert_eq!(get(&state, m, b"k").await.is_none(), cleared, "{m}");
        assert_eq!(state.checkpoint(m).await.unwrap().is_none(), cleared, "{m}");
        assert_eq!(state.len(m).await.unwrap(), if cleared { 0 } else { 2 }, "{m}");
    }
    // Writes to one do not reach the others.
    commit(&state, &ids[6], Some(&cp(7, "src-6")), puts(&[(b"k", b"changed")]), &cp(8, "src-6")).await;
    assert_eq!(get(&state, &ids[6], b"k").await, Some(b"changed".to_vec()));
    for m in &ids[1..6] {
        assert_ne!(get(&state, m, b"k").await, Some(b"changed".to_vec()), "{m}");
    }
}

/// Racing commits from one checkpoint: exactly one wins, and only its writes land.
pub async fn racing_commits_exactly_one_wins(state: SharedState) {
    const RACERS: usize = 16;
    let m = model();
    let start = cp(1, "q");
    commit(&state, &m, None, puts(&[(b"winner", b"none")]), &start).await;
    for round in 0..3u128 {
        let from = state.checkpoint(&m).await.unwrap().expect("a checkpoint");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let (state, m, from, barrier) = (state.clone(), m.clone(), from.clone(), barrier.clone());
            racers.push(tokio::spawn(async move {
                let mut writes = puts(&[(b"winner", format!("{i}").as_bytes())]);
                writes.insert(format!("own/{round}/{i:02}").into_bytes(), Some(Vec::new()));
                let to = cp(from.position.get() + 1, &format!("racer-{round}-{i}"));
                barrier.wait().await;
                state.commit(&m, Some(&from), writes, to).await.expect("commit")
            }));
        }
        let mut winners = Vec::new();
        for (i, racer) in racers.into_iter().enumerate() {
            if racer.await.expect("racer") {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one racing commit wins, not {winners:?}");
        let winner = winners[0];
        assert_eq!(state.checkpoint(&m).await.unwrap(), Some(cp(from.position.get() + 1, &format!("racer-{round}-{winner}"))));
        assert_eq!(get(&state, &m, b"winner").await, Some(format!("{winner}").into_bytes()));
        let prefix = format!("own/{round}/");
        assert_eq!(keys(&state, &m, prefix.as_bytes(), None, 100).await, vec![format!("own/{round}/{winner:02}").into_bytes()], "only the winner's writes");
    }
    assert_eq!(state.len(&m).await.unwrap(), 4);
}

macro_rules! state_conformance {
    ($backend:ident, $fixture:expr $(, #[$attr:meta])* $(,)?) => {
        mod $backend {
            state_conformance!(@cases $fixture; [$(#[$attr])*];
                get_put_delete_through_commit, scan_prefix_after_limit_and_order, stale_from_writes_nothing,
                checkpoint_round_trip, clear_drops_entries_and_checkpoint, len_counts_keys,
                read_models_and_tenants_are_isolated, racing_commits_exactly_one_wins);
        }
    };
    (@cases $fixture:expr; $attrs:tt; $($case:ident),* $(,)?) => {
        $( state_conformance!(@case $fixture; $attrs; $case); )*
    };
    (@case $fixture:expr; [$(#[$attr:meta])*]; $case:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let fixture = $fixture;
            super::$case(fixture.state.clone()).await;
        }
    };
}

state_conformance!(memory, super::memory());
state_conformance!(embedded, super::embedded());
// Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
state_conformance!(fdb, super::fdb(), #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]);
