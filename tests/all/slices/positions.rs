//! The position the host records for each kind of read a command makes, and what it means
//! for the command's append (DESIGN.md, "ReadAppender").

use std::sync::Arc;

use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::runtime::{Access, ReadAppender};
use counterpoint::store::{Event, MemoryStore, Position, SharedStore, StoreError, Tenant};
use counterpoint_tests::slices::slice;
use serde_json::{json, Value};

/// A log with events tagged `t` at 1, 3 and 4, and other events at 2 and 5: head 5.
async fn log() -> (SharedStore, Tenant) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let tenant = Tenant::new("positions").unwrap();
    for tag in ["t", "other", "t", "t", "other"] {
        store.append(&tenant, vec![Event::new("Seeded").tag(tag)], vec![]).await.unwrap();
    }
    (store, tenant)
}

/// Runs `probe` once (no retry): its result, the recorded read, and its append's outcome.
async fn probe(store: &SharedStore, tenant: &Tenant, input: Value) -> (Value, Position, Result<Vec<Position>, StoreError>) {
    let hostile = slice("hostile").await;
    let io = ReadAppender::new(store.clone(), tenant.clone(), Access::ReadAppend);
    let (output, io, _) = hostile.execute(io, "probe", &json_to_msgpack(&input)).await.expect("probe runs");
    assert_eq!(io.reads.len(), 1);
    let recorded = io.reads[0].after.expect("a recorded read has a position");
    assert_eq!(io.staged.as_ref().map(Vec::len), Some(1), "probe stages one event");
    (msgpack_to_json(&output).unwrap(), recorded, io.commit().await)
}

#[tokio::test]
async fn a_complete_read_records_the_head() {
    let (store, tenant) = log().await;
    let (result, recorded, append) = probe(&store, &tenant, json!({"tag": "t"})).await;
    assert_eq!(recorded, Position::new(5), "the head at the read's snapshot, not the last match (4)");
    assert_eq!(result, json!({"position": 5, "seen": 3}), "the slice sees the same position");
    assert_eq!(append.unwrap(), vec![Position::new(6)]);
}

#[tokio::test]
async fn a_backwards_read_cut_by_limit_records_the_head() {
    let (store, tenant) = log().await;
    let (result, recorded, append) = probe(&store, &tenant, json!({"tag": "t", "limit": 1, "backwards": true})).await;
    assert_eq!(recorded, Position::new(5), "the last N saw everything newer than its oldest event");
    assert_eq!(result["seen"], 1);
    // Recording the last delivered event (4) instead would fail this append on the events it read.
    assert!(append.is_ok(), "{append:?}");
}

#[tokio::test]
async fn a_forward_read_cut_by_limit_records_the_last_event_delivered() {
    let (store, tenant) = log().await;
    let (result, recorded, append) = probe(&store, &tenant, json!({"tag": "t", "limit": 2})).await;
    assert_eq!(recorded, Position::new(3), "events after 3 were not seen");
    assert_eq!(result, json!({"position": 3, "seen": 2}));
    // A matching event it did not see (4) exists after the recorded position: the append fails.
    assert!(matches!(append, Err(StoreError::ConditionFailed { .. })), "{append:?}");
}

#[tokio::test]
async fn a_forward_read_whose_limit_was_not_reached_is_complete() {
    let (store, tenant) = log().await;
    let (_, recorded, append) = probe(&store, &tenant, json!({"tag": "t", "limit": 3})).await;
    assert_eq!(recorded, Position::new(5));
    assert!(append.is_ok(), "{append:?}");
}
