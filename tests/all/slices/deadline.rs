//! The wall-clock deadline covers host calls: a slice that sleeps (WASI clocks) or waits on an
//! HTTP effect is cancelled at its deadline like one that spins, with the same error, appends
//! nothing, and frees its instance slot — checked with a pool of a single slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use counterpoint::codec::json_to_msgpack;
use counterpoint::deploy::Registry;
use counterpoint::runner::CommandRunner;
use counterpoint::runtime::{InvocationLimits, InvokeError, Runtime, RuntimeConfig};
use counterpoint::store::{MemoryStore, SharedStore, Tenant};
use counterpoint::tenants::{Config, Tenants};
use counterpoint_tests::slices::{target_dir, wasm};
use serde_json::{json, Value};

use super::Host;

const DEADLINE: Duration = Duration::from_millis(300);
/// Generous: the point is that the call ends near its deadline instead of hanging.
const BOUND: Duration = Duration::from_secs(5);

/// A runtime with one instance slot: a slot held by a cancelled call would make the next fail.
fn one_slot(deadline: Duration) -> Runtime {
    let limits = InvocationLimits { deadline, ..Default::default() };
    let cache_dir = Some(target_dir().join("test-compile-cache"));
    Runtime::new(RuntimeConfig { limits, cache_dir, max_instances: 1, ..Default::default() }).expect("runtime")
}

/// Runs `call` and checks that it ends with the deadline error of `stage` within the bound.
async fn times_out<T: std::fmt::Debug>(stage: &str, call: impl std::future::Future<Output = Result<T, InvokeError>>) {
    let started = Instant::now();
    let ended = tokio::time::timeout(DEADLINE + BOUND, call).await;
    let err = ended.unwrap_or_else(|_| panic!("{stage}: still running {:?} past its deadline", DEADLINE + BOUND)).unwrap_err();
    assert!(
        matches!(&err, InvokeError::Timeout { slice, stage: s, ms } if s == &stage && *ms == DEADLINE.as_millis() && !slice.is_empty()),
        "{stage}: {err:?}"
    );
    assert!(started.elapsed() >= DEADLINE, "{stage}: ended before its deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_command_or_projection_ends_at_its_deadline_and_frees_its_slot() {
    let runtime = one_slot(DEADLINE);
    let hostile = runtime.load(wasm("hostile")).await.expect("hostile loads");
    let host = Host::new();
    let runner = CommandRunner::default();
    let run = |command: &'static str, input: Value| {
        let (hostile, host, runner) = (&hostile, &host, &runner);
        async move { runner.run(hostile, &host.store, &host.tenant, command, &json_to_msgpack(&input)).await }
    };

    times_out("execute", run("sleep", json!({}))).await;
    assert_eq!(runtime.live_instances(), 0, "the cancelled instance is gone");
    // The pool's only slot is free again.
    let out = run("ok", json!({})).await.expect("a command after the cancelled one");
    assert_eq!(out.positions.len(), 1);

    let params = json_to_msgpack(&json!({}));
    let doze = counterpoint::projections::run(&hostile, &host.store, &host.tenant, "doze", &params);
    times_out("projection open", doze).await;
    assert_eq!(runtime.live_instances(), 0);
    run("ok", json!({})).await.expect("a command after the cancelled projection");

    // A short sleep is fine: the deadline is the limit, not the sleep.
    run("sleep", json!({"ms": 10})).await.expect("a short sleep");
    // The cancelled sleep appended nothing: two `ok`s and the short sleep.
    assert_eq!(host.event_types().await, ["Pinged"; 3]);
}

/// A local server that accepts connections and never answers; they stay open.
async fn never_answers() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_waiting_on_an_http_effect_ends_at_its_deadline_and_frees_its_slot() {
    let server = never_answers().await;
    let dir = tempfile::tempdir().unwrap();
    // The effect's own timeout is far longer than the invocation's deadline.
    let config = Config::parse(&format!(
        "[tenants.acme.limits]\ndeadline_ms = {}\n[tenants.acme.effects.effectful]\nhttp_hosts = [\"{server}\"]\nhttp_timeout_ms = 600000\n",
        DEADLINE.as_millis()
    ))
    .unwrap();
    let runtime = one_slot(Duration::from_secs(1));
    let registry = Registry::open(runtime.clone(), dir.path(), Arc::new(Tenants::from_config(&config))).await.unwrap();
    let tenant = Tenant::new("acme").unwrap();
    registry.deploy(&tenant, wasm("effectful"), Some("effectful")).await.unwrap();
    let slice = registry.get(&tenant, "effectful").unwrap();
    let store: SharedStore = Arc::new(MemoryStore::new());
    let runner = CommandRunner::default();

    let input = json_to_msgpack(&json!({"url": format!("http://{server}/never")}));
    let fetch = runner.run(&slice, &store, &tenant, "fetch", &input);
    times_out("execute", fetch).await;
    assert_eq!(runtime.live_instances(), 0, "the cancelled instance is gone");
    runner
        .run(&slice, &store, &tenant, "settings", &json_to_msgpack(&json!({"key": "k"})))
        .await
        .expect("a command after the cancelled one gets the only slot");
}
