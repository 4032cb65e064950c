//! Racing tests: many tasks read, decide and append at once; DCB must let no two
//! successes overlap on one boundary, and never make disjoint boundaries conflict.

use std::sync::Arc;

use counterpoint::store::{AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SharedStore, Tenant};
use tokio::sync::Barrier;

use super::Fixture;

const TASKS: usize = 64;

/// Each task reads the boundary, waits for every other task to have read, then appends guarded
/// by its read. Returns, per task, `Some((read position, appended position))` on success.
async fn race(store: SharedStore, tags: impl Fn(usize) -> String) -> Vec<Option<(Position, Position)>> {
    let t = Tenant::new("race").unwrap();
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (store, t, barrier, tag) = (store.clone(), t.clone(), barrier.clone(), tags(i));
            tokio::spawn(async move {
                let query = Query::item(QueryItem::tags([tag.clone()]));
                let (_, read_at) = store.read(&t, query.clone(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
                barrier.wait().await;
                let event = Event::new("Raced").tag(tag).data(i.to_le_bytes().to_vec());
                match store.append(&t, vec![event], vec![AppendCondition::new(query, Some(read_at))]).await {
                    Ok(positions) => Some((read_at, positions[0])),
                    Err(err) => {
                        assert!(err.is_condition_failed(), "only condition failures are expected: {err}");
                        None
                    }
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn one_shared_boundary(fixture: Fixture) {
    let store = fixture.store.clone();
    let results = race(store.clone(), |_| "account:1".into()).await;
    let successes: Vec<(Position, Position)> = results.into_iter().flatten().collect();
    assert!(!successes.is_empty(), "someone must win");
    // Re-read the log: no success may have another success's event between its read and itself.
    let t = Tenant::new("race").unwrap();
    let (log, _) = store.read(&t, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    assert_eq!(log.len(), successes.len(), "every event in the log is a success, every success is in the log");
    for &(read_at, appended) in &successes {
        for &(_, other) in &successes {
            assert!(
                !(other > read_at && other < appended),
                "overlap: a success read at {read_at} and appended at {appended}, but {other} landed in between"
            );
        }
    }
}

async fn disjoint_boundaries(fixture: Fixture) {
    let results = race(fixture.store.clone(), |i| format!("account:{i}")).await;
    assert_eq!(results.iter().filter(|r| r.is_none()).count(), 0, "disjoint boundaries never conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_one_shared_boundary() {
    one_shared_boundary(super::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_disjoint_boundaries() {
    disjoint_boundaries(super::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_one_shared_boundary() {
    one_shared_boundary(super::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_disjoint_boundaries() {
    disjoint_boundaries(super::embedded()).await;
}

// Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
#[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fdb_one_shared_boundary() {
    one_shared_boundary(super::fdb()).await;
}

#[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fdb_disjoint_boundaries() {
    disjoint_boundaries(super::fdb()).await;
}
