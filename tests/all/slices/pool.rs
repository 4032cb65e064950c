//! The runtime's instance slots: a call that finds every slot in use waits for one to free up,
//! in arrival order, for at most the runtime's `slot_wait`; then it ends `busy`, having
//! appended nothing. Checked with a pool of a single slot, held by a sleeping command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use counterpoint::codec::json_to_msgpack;
use counterpoint::runner::CommandOutput;
use counterpoint::runtime::{InvokeError, Runtime, RuntimeConfig, Slice};
use counterpoint_tests::slices::{target_dir, wasm};
use serde_json::{json, Value};

use super::Host;

async fn one_slot(slot_wait: Duration) -> (Runtime, Arc<Slice>) {
    let config = RuntimeConfig { cache_dir: Some(target_dir().join("test-compile-cache")), max_instances: 1, slot_wait, ..Default::default() };
    let runtime = Runtime::new(config).expect("runtime");
    let hostile = runtime.load(wasm("hostile")).await.expect("hostile loads");
    (runtime, Arc::new(hostile))
}

async fn run(host: &Host, slice: &Slice, command: &str, input: Value) -> Result<CommandOutput, InvokeError> {
    host.runner.run(slice, &host.store, &host.tenant, command, &json_to_msgpack(&input)).await
}

/// Starts a command that holds the only slot for `ms`, and returns once it holds it.
async fn hold_the_slot(runtime: &Runtime, host: &Arc<Host>, slice: &Arc<Slice>, ms: u64) -> tokio::task::JoinHandle<Result<CommandOutput, InvokeError>> {
    let (host, slice) = (host.clone(), slice.clone());
    let sleeper = tokio::spawn(async move { run(&host, &slice, "sleep", json!({"ms": ms})).await });
    let started = Instant::now();
    while runtime.live_instances() < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "the sleeper never took the slot");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sleeper
}

/// The tags of the log's events, in order.
async fn logged(host: &Host) -> Vec<Vec<String>> {
    let (events, _) = host.store.read(&host.tenant, Default::default(), Default::default()).await.unwrap().collect().await.unwrap();
    events.into_iter().map(|e| e.event.tags).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_pools_size_wait_for_a_slot_and_run_in_arrival_order() {
    let (runtime, hostile) = one_slot(Duration::from_secs(10)).await;
    let host = Arc::new(Host::new());
    let sleeper = hold_the_slot(&runtime, &host, &hostile, 600).await;

    let mut waiting = Vec::new();
    for stream in ["a", "b", "c"] {
        let (host, hostile) = (host.clone(), hostile.clone());
        waiting.push(tokio::spawn(async move { run(&host, &hostile, "ok", json!({"stream": stream})).await }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runtime.slot_waiters(), 3, "all three wait while the sleeper holds the slot");
    for call in waiting {
        let out = call.await.unwrap().expect("it waits for the slot instead of ending busy");
        assert_eq!(out.positions.len(), 1);
    }
    sleeper.await.unwrap().expect("the sleeper ran to its end");
    let streams: Vec<String> = logged(&host).await.into_iter().map(|tags| tags.into_iter().find(|t| t.starts_with("stream:")).unwrap_or_default()).collect();
    assert_eq!(streams, ["stream:slept", "stream:a", "stream:b", "stream:c"], "the slot's holder first, then the waiting calls as they came");
    assert_eq!(runtime.live_instances(), 0, "every call gave its slot back");
    assert_eq!(runtime.slot_waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_finds_no_slot_within_its_wait_is_busy_and_appends_nothing() {
    const WAIT: Duration = Duration::from_millis(200);
    let (runtime, hostile) = one_slot(WAIT).await;
    let host = Arc::new(Host::new());
    let sleeper = hold_the_slot(&runtime, &host, &hostile, 600).await;

    // A call given up while it waits (its client gone) stops counting as waiting.
    let gone = tokio::spawn({
        let (host, hostile) = (host.clone(), hostile.clone());
        async move { run(&host, &hostile, "ok", json!({})).await }
    });
    while runtime.slot_waiters() < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    assert_eq!(runtime.slot_waiters(), 0, "the aborted call waits no more");

    let asked = Instant::now();
    let err = run(&host, &hostile, "ok", json!({})).await.expect_err("the only slot stays taken");
    assert!(matches!(&err, InvokeError::Busy { capacity: 1, .. }), "{err:?}");
    assert!(asked.elapsed() >= WAIT, "it waited for a slot first");
    assert!(!sleeper.is_finished(), "the slot was still held when it gave up");

    sleeper.await.unwrap().expect("the sleeper ran to its end");
    assert_eq!(logged(&host).await.len(), 1, "only the sleeper appended");
    run(&host, &hostile, "ok", json!({})).await.expect("the freed slot runs the next call");
}
