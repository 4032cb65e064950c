//! Persistent read models end to end, with the inventory slice's `stock-levels` on the durable
//! store: the state follows the log and answers without replaying it, a query can wait for a
//! position, a failing update holds the model where it was, rebuilds start over, two workers on
//! one state never apply a batch twice, and a worker killed with `kill -9` in the middle of its
//! updates, again and again, leaves every event applied exactly once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::deploy::Registry;
use counterpoint::readmodels::{EmbeddedState, ReadModelId, ReadModels, SharedState};
use counterpoint::runner::CommandRunner;
use counterpoint::store::{EmbeddedStore, Event, Position, SharedStore, Tenant};
use counterpoint::tenants::Tenants;
use counterpoint_tests::slices::{runtime, wasm};
use serde_json::{json, Value};

struct Host {
    store: SharedStore,
    registry: Arc<Registry>,
    state: SharedState,
    tenant: Tenant,
}

fn stock_levels(tenant: &Tenant) -> ReadModelId {
    ReadModelId { tenant: tenant.clone(), slice: "inventory".into(), name: "stock-levels".into() }
}

/// A host on `dir` with the orders and inventory slices deployed (no workers yet).
async fn host(dir: &std::path::Path) -> Host {
    let tenant = Tenant::new("acme").unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.join("events")).unwrap());
    let registry = Arc::new(Registry::open(runtime(), dir, Arc::new(Tenants::single(&tenant))).await.unwrap());
    for name in ["orders", "inventory"] {
        if registry.get(&tenant, name).is_none() {
            registry.deploy(&tenant, wasm(name), Some(name)).await.unwrap();
        }
    }
    let state: SharedState = Arc::new(EmbeddedState::open(dir.join("readmodels.redb")).unwrap());
    Host { store, registry, state, tenant }
}

impl Host {
    fn read_models(&self) -> Arc<ReadModels> {
        ReadModels::new(self.store.clone(), self.state.clone(), self.registry.clone())
    }

    /// Runs a command; returns the positions it appended.
    async fn run(&self, slice: &str, command: &str, input: Value) -> Vec<Position> {
        let slice = self.registry.get(&self.tenant, slice).unwrap();
        CommandRunner::default().run(&slice, &self.store, &self.tenant, command, &json_to_msgpack(&input)).await.unwrap().positions
    }

    async fn project(&self, sku: &str) -> Value {
        let slice = self.registry.get(&self.tenant, "inventory").unwrap();
        let out = counterpoint::projections::run(&slice, &self.store, &self.tenant, "stock-level", &json_to_msgpack(&json!({"sku": sku})))
            .await
            .unwrap();
        msgpack_to_json(&out).unwrap()
    }
}

async fn levels(read_models: &ReadModels, tenant: &Tenant, at_least: Option<Position>) -> Value {
    let out = read_models.query(&stock_levels(tenant), &json_to_msgpack(&json!({})), at_least, Duration::from_secs(30)).await.unwrap();
    msgpack_to_json(&out).unwrap()
}

/// `{sku: available}` of a `stock-levels` answer.
fn available(answer: &Value) -> BTreeMap<String, u64> {
    answer.as_array().unwrap().iter().map(|l| (l["sku"].as_str().unwrap().to_string(), l["available"].as_u64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_follows_the_log_and_answers_without_replaying_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let read_models = host.read_models();
    read_models.start();
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 10})).await;
    host.run("inventory", "receive-stock", json!({"sku": "pear", "qty": 3})).await;
    host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c"})).await;
    let reserved = host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 4})).await;

    // Waiting for the reservation's position reads one's own write.
    let answer = levels(&read_models, &host.tenant, Some(reserved[0])).await;
    assert_eq!(available(&answer), BTreeMap::from([("apple".into(), 6), ("pear".into(), 3)]));
    let apple = &answer[0];
    let projected = host.project("apple").await;
    assert_eq!((&apple["received"], &apple["reserved"], &apple["available"]), (&projected["received"], &projected["reserved"], &projected["available"]));
    // One product by parameter; an unknown one is an empty answer.
    let pear = read_models.query(&stock_levels(&host.tenant), &json_to_msgpack(&json!({"sku": "pear"})), None, Duration::ZERO).await.unwrap();
    assert_eq!(msgpack_to_json(&pear).unwrap()[0]["received"], 3);

    // With the workers stopped, new events do not reach the answer: it comes from the kept
    // state, not from the log.
    read_models.stop().await;
    let more = host.run("inventory", "receive-stock", json!({"sku": "pear", "qty": 100})).await;
    assert_eq!(available(&levels(&read_models, &host.tenant, None).await)["pear"], 3);
    let waited = read_models.query(&stock_levels(&host.tenant), &json_to_msgpack(&json!({})), Some(more[0]), Duration::from_millis(200)).await;
    assert!(waited.unwrap_err().to_string().contains("has not reached position"), "a query for a position the model has not reached times out");

    // Started again, the model resumes from its checkpoint; the status says where it stands.
    read_models.start();
    assert_eq!(available(&levels(&read_models, &host.tenant, Some(more[0])).await)["pear"], 103);
    let status = read_models.status(&host.tenant).await.unwrap();
    assert_eq!((status.len(), status[0].lag, status[0].keys, status[0].checkpoint), (1, 0, 2, more[0]));
    read_models.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_update_holds_the_model_and_a_rebuild_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let read_models = host.read_models();
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 1})).await;
    // An event the slice cannot decode: its update fails until someone fixes the log or the slice.
    let mut broken = Event::new("StockReceived").tag("sku:apple");
    broken.data = b"not messagepack".to_vec();
    host.store.append(&host.tenant, vec![broken], vec![]).await.unwrap();
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 2})).await;
    read_models.start();
    let mut status = read_models.status(&host.tenant).await.unwrap();
    for _ in 0..200 {
        if status[0].failures >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = read_models.status(&host.tenant).await.unwrap();
    }
    assert!(status[0].failures >= 2, "the failing batch is retried: {status:?}");
    assert!(status[0].last_error.as_deref().unwrap_or("").contains("cannot decode StockReceived"), "{status:?}");
    // Nothing of the failing batch is applied, and nothing after it: no event is skipped.
    assert_eq!((status[0].checkpoint, status[0].lag, status[0].keys), (Position::ZERO, 3, 0));
    read_models.stop().await;

    // Without the broken event, a rebuild applies everything from the start, with progress.
    let dir2 = tempfile::tempdir().unwrap();
    let host2 = self::host(dir2.path()).await;
    for qty in 1..=700 {
        host2.run("inventory", "receive-stock", json!({"sku": format!("sku-{}", qty % 7), "qty": qty})).await;
    }
    let read_models2 = host2.read_models();
    let id = stock_levels(&host2.tenant);
    read_models2.catch_up(&id).await.unwrap();
    let before = levels(&read_models2, &host2.tenant, None).await;
    let reports = std::sync::Mutex::new(Vec::new());
    let at = read_models2.rebuild(&id, |done, total| reports.lock().unwrap().push((done, total))).await.unwrap();
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.first(), Some(&(0, 700)));
    assert_eq!(reports.last(), Some(&(700, 700)));
    assert!(reports.len() >= 3, "progress after every batch: {reports:?}");
    assert_eq!(at, host2.store.head(&host2.tenant).await.unwrap());
    assert_eq!(levels(&read_models2, &host2.tenant, None).await, before, "a rebuild gives the same state");
    let total: u64 = available(&before).values().sum();
    assert_eq!(total, (1..=700).sum::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_that_reads_the_log_itself_is_refused() {
    // The hostile slice's `peek` calls the store's `read` from `update` and from `answer`.
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    host.registry.deploy(&host.tenant, wasm("hostile"), Some("hostile")).await.unwrap();
    host.store.append(&host.tenant, vec![Event::new("Poked").tag("sku:apple")], vec![]).await.unwrap();
    let read_models = host.read_models();
    read_models.start();
    let peek = |status: &[counterpoint::readmodels::Status]| status.iter().find(|s| s.id.name == "peek").cloned().unwrap();
    let mut status = peek(&read_models.status(&host.tenant).await.unwrap());
    for _ in 0..1200 {
        if status.failures >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = peek(&read_models.status(&host.tenant).await.unwrap());
    }
    let refused = "a read model cannot read the log";
    assert!(status.last_error.as_deref().unwrap_or("").contains(refused), "{status:?}");
    assert_eq!((status.checkpoint, status.lag), (Position::ZERO, 1), "the event is held, not skipped");
    let id = ReadModelId { tenant: host.tenant.clone(), slice: "hostile".into(), name: "peek".into() };
    let err = read_models.query(&id, &json_to_msgpack(&json!({})), None, Duration::ZERO).await.unwrap_err();
    assert!(err.to_string().contains(refused), "{err}");
    read_models.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_state_never_apply_an_event_twice() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    // Two hosts' worth of workers on one state (as two hosts on one FoundationDB cluster are),
    // racing while commands keep appending.
    let (a, b) = (host.read_models(), host.read_models());
    a.start();
    b.start();
    let mut last = Position::ZERO;
    let mut expected = 0u64;
    for i in 0..600u64 {
        let qty = 1 + i % 5;
        expected += qty;
        last = host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": qty})).await[0];
    }
    let answer = levels(&a, &host.tenant, Some(last)).await;
    assert_eq!(available(&answer)["apple"], expected);
    assert_eq!(available(&levels(&b, &host.tenant, Some(last)).await)["apple"], expected);
    a.stop().await;
    b.stop().await;
}

/// Starts the worker process, waits until it runs, lets it work a random while, kills it.
fn run_and_kill(dir: &std::path::Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_readmodel-worker"))
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start readmodel-worker");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the worker's first line");
    assert_eq!(line.trim(), "READY");
    std::thread::sleep(Duration::from_millis(fastrand::u64(20..300)));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

#[test]
fn a_worker_killed_in_the_middle_of_updates_applies_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenant = Tenant::new("acme").unwrap();
    // A long log of received stock across 50 products, appended directly (as commands would).
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    runtime.block_on(async {
        let host = host(dir.path()).await;
        let mut n = 0u64;
        for _ in 0..400 {
            let events: Vec<Event> = (0..250)
                .map(|_| {
                    n += 1;
                    let (sku, qty) = (format!("sku-{:02}", n % 50), 1 + n % 9);
                    *expected.entry(sku.clone()).or_default() += qty;
                    let mut event = Event::new("StockReceived").tag(format!("sku:{sku}"));
                    event.data = json_to_msgpack(&json!({"sku": sku, "qty": qty}));
                    event
                })
                .collect();
            host.store.append(&tenant, events, vec![]).await.unwrap();
        }
    });
    // The store's lock is free again: the worker process opens the directory.
    let mut checkpoints = Vec::new();
    for _ in 0..8 {
        run_and_kill(dir.path());
        let checkpoint = runtime.block_on(async {
            let host = host(dir.path()).await;
            host.state.checkpoint(&stock_levels(&tenant)).await.unwrap().map_or(0, |c| c.position.get())
        });
        checkpoints.push(checkpoint);
    }
    assert!(checkpoints.iter().any(|&c| c > 0 && c < 100_000), "some kill lands in the middle of the log: {checkpoints:?}");
    runtime.block_on(async {
        let host = host(dir.path()).await;
        let read_models = host.read_models();
        let id = stock_levels(&tenant);
        let at = read_models.catch_up(&id).await.unwrap();
        assert_eq!(at.get(), 100_000);
        let answer = levels(&read_models, &tenant, None).await;
        let received: BTreeMap<String, u64> =
            answer.as_array().unwrap().iter().map(|l| (l["sku"].as_str().unwrap().to_string(), l["received"].as_u64().unwrap())).collect();
        assert_eq!(received, expected, "every event applied exactly once (checkpoints after each kill: {checkpoints:?})");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leases_one_host_follows_and_the_other_takes_over_when_it_stops() {
    use counterpoint::leases::{LeaseStore, Leases, MemoryLeases};
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let shared: Arc<dyn LeaseStore> = Arc::new(MemoryLeases::default());
    let (a, b) = (host.read_models(), host.read_models());
    a.use_leases(Leases::new(shared.clone(), "host-a", Duration::from_millis(300)));
    b.use_leases(Leases::new(shared.clone(), "host-b", Duration::from_millis(300)));
    a.start();
    b.start();
    let first = host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 2})).await[0];
    assert_eq!(available(&levels(&a, &host.tenant, Some(first)).await)["apple"], 2);
    let active = |statuses: Vec<counterpoint::readmodels::Status>| statuses[0].active;
    let (a_active, b_active) = (active(a.status(&host.tenant).await.unwrap()), active(b.status(&host.tenant).await.unwrap()));
    assert!(a_active != b_active, "exactly one host follows the log (a: {a_active}, b: {b_active})");
    // The active host stops (and gives its lease up): the other goes on from the checkpoint.
    let (stopping, other) = if a_active { (a, b) } else { (b, a) };
    stopping.stop().await;
    let second = host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 3})).await[0];
    assert_eq!(available(&levels(&other, &host.tenant, Some(second)).await)["apple"], 5);
    assert!(active(other.status(&host.tenant).await.unwrap()), "the other host took the lease over");
    other.stop().await;
}

/// A state with stock levels of distinctively named products, its host closed: the directory,
/// and the answer the state gave.
async fn a_closed_state() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    for (sku, qty) in [("quince-7f3a", 10), ("medlar-9b2c", 3), ("quince-7f3a", 5)] {
        host.run("inventory", "receive-stock", json!({"sku": sku, "qty": qty})).await;
    }
    let read_models = host.read_models();
    read_models.catch_up(&stock_levels(&host.tenant)).await.unwrap();
    let answer = levels(&read_models, &host.tenant, None).await;
    assert_eq!(available(&answer), BTreeMap::from([("medlar-9b2c".into(), 3), ("quince-7f3a".into(), 15)]));
    (dir, answer)
}

/// Flips a bit in every copy of `needle` in the file (the live pages and any older ones).
fn flip_every(path: &std::path::Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let at: Vec<usize> = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
    for &i in &at {
        bytes[i + 2] ^= 0x01;
    }
    std::fs::write(path, bytes).unwrap();
    at.len()
}

/// A state file damaged between two runs (a bit flipped in its pages, cut short, overwritten) is
/// found at open, set aside (kept, never deleted) and replaced with an empty one; the read model
/// rebuilds from the log and answers as before — never from the damaged file, and never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_set_aside_and_the_read_model_rebuilds_from_the_log() {
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 3] = [
        ("a bit flipped in every copy of a key", |path| assert!(flip_every(path, b"quince-7f3a") > 0, "the key is in the file")),
        ("cut to half its length", |path| {
            let len = std::fs::metadata(path).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
        }),
        ("its header overwritten", |path| {
            let mut bytes = std::fs::read(path).unwrap();
            bytes[..64].fill(0x5a);
            std::fs::write(path, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let (dir, before) = a_closed_state().await;
        let file = dir.path().join("readmodels.redb");
        damage(&file);

        let reopened = EmbeddedState::open(&file).unwrap_or_else(|e| panic!("{what}: the open sets the file aside, not {e}"));
        let aside = reopened.set_aside().unwrap_or_else(|| panic!("{what}: the damage is found at open")).clone();
        assert_eq!(aside.path, dir.path().join("readmodels.redb.damaged-1"), "{what}");
        // Kept for inspection (as redb left it after refusing it), never deleted.
        assert!(aside.path.is_file(), "{what}: the damaged file is kept");
        assert!(!aside.damage.is_empty());
        drop(reopened);
        // The host opens the fresh file: nothing of the damaged one is read.
        let host = host(dir.path()).await;
        let read_models = host.read_models();
        assert_eq!(read_models.status(&host.tenant).await.unwrap()[0].checkpoint, Position::ZERO, "{what}");
        read_models.catch_up(&stock_levels(&host.tenant)).await.unwrap();
        assert_eq!(levels(&read_models, &host.tenant, None).await, before, "{what}: rebuilt from the log, the same answer");
    }
}

/// A state file another handle holds is refused with a clear error, and never taken for damage.
#[tokio::test]
async fn a_state_file_in_use_is_refused_and_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("readmodels.redb");
    let _first = EmbeddedState::open(&file).unwrap();
    let err = EmbeddedState::open(&file).err().expect("one handle at a time");
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(!dir.path().join("readmodels.redb.damaged-1").exists(), "a file in use is not damaged");
}
