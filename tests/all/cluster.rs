//! Several hosts on one cluster. In memory, two hosts share what a FoundationDB cluster would
//! hold for them (the log, the slice catalog, read-model state, leases): a deploy on one
//! reaches the other, each automation and read model runs on exactly one host, and when that
//! host stops the other takes its workers over from their checkpoints. On FoundationDB, two real
//! `counterpoint serve` processes do the same, and the one running the workers is killed with
//! SIGKILL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use counterpoint::automations::{Automations, RetryPolicy};
use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::deploy::{Catalog, MemoryCatalog, Registry};
use counterpoint::leases::{LeaseStore, Leases, MemoryLeases};
use counterpoint::readmodels::{MemoryState, ReadModelId, ReadModels, SharedState};
use counterpoint::runner::CommandRunner;
use counterpoint::store::{MemoryStore, Query, QueryItem, ReadOptions, SharedStore, Tenant};
use counterpoint::tenants::Tenants;
use counterpoint_tests::slices::{runtime, wasm};
use serde_json::{json, Value};

/// What the hosts share.
struct Cluster {
    store: SharedStore,
    catalog: Arc<dyn Catalog>,
    state: SharedState,
    leases: Arc<dyn LeaseStore>,
    tenant: Tenant,
}

struct Host {
    registry: Arc<Registry>,
    automations: Arc<Automations>,
    read_models: Arc<ReadModels>,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            store: Arc::new(MemoryStore::new()),
            catalog: Arc::new(MemoryCatalog::default()),
            state: Arc::new(MemoryState::new()),
            leases: Arc::new(MemoryLeases::default()),
            tenant: Tenant::new("acme").unwrap(),
        }
    }

    async fn host(&self, name: &str, dir: &std::path::Path) -> Host {
        let registry = Arc::new(Registry::open_with(runtime(), dir, Arc::new(Tenants::single(&self.tenant)), self.catalog.clone()).await.unwrap());
        registry.follow_catalog();
        let leases = Leases::new(self.leases.clone(), name, Duration::from_millis(300));
        let policy = RetryPolicy { max_failures: 3, backoff: Duration::from_millis(5) };
        let automations = Automations::new(self.store.clone(), registry.clone(), CommandRunner::default(), policy);
        automations.use_leases(leases.clone());
        automations.start();
        let read_models = ReadModels::new(self.store.clone(), self.state.clone(), registry.clone());
        read_models.use_leases(leases);
        read_models.start();
        Host { registry, automations, read_models }
    }

    async fn run(&self, host: &Host, slice: &str, command: &str, input: Value) -> Vec<counterpoint::store::Position> {
        let slice = host.registry.get(&self.tenant, slice).unwrap_or_else(|| panic!("{slice} is deployed on this host"));
        CommandRunner::default().run(&slice, &self.store, &self.tenant, command, &json_to_msgpack(&input)).await.unwrap().positions
    }

    async fn types_for(&self, tag: &str) -> Vec<String> {
        let query = Query::item(QueryItem::tags([tag]));
        let (events, _) = self.store.read(&self.tenant, query, ReadOptions::default()).await.unwrap().collect().await.unwrap();
        events.into_iter().map(|e| e.event.event_type).collect()
    }

    /// Waits (up to 30 s) until the order's events include `event_type`.
    async fn wait_for(&self, order: &str, event_type: &str) -> Vec<String> {
        let tag = format!("order_id:{order}");
        for _ in 0..600 {
            let types = self.types_for(&tag).await;
            if types.iter().any(|t| t == event_type) {
                return types;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {event_type} for {order}: {:?}", self.types_for(&tag).await);
    }

    async fn confirm(&self, host: &Host, order: &str, qty: u32) {
        self.run(host, "orders", "place-order", json!({"order_id": order, "customer_id": "c"})).await;
        self.run(host, "orders", "add-item", json!({"order_id": order, "sku": "apple", "qty": qty, "price": 1})).await;
        self.run(host, "orders", "confirm-order", json!({"order_id": order})).await;
    }
}

async fn wait_until_deployed(host: &Host, tenant: &Tenant, names: &[&str]) {
    for _ in 0..600 {
        if names.iter().all(|n| host.registry.get(tenant, n).is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{names:?} never reached the other host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_deploys_and_run_each_worker_once() {
    let cluster = Cluster::new();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster.host("host-a", dir_a.path()).await;
    let b = cluster.host("host-b", dir_b.path()).await;

    // A deploy on one host reaches the other.
    for name in ["orders", "inventory"] {
        a.registry.deploy(&cluster.tenant, wasm(name), Some(name)).await.unwrap();
    }
    wait_until_deployed(&b, &cluster.tenant, &["orders", "inventory"]).await;
    assert_eq!(b.registry.get(&cluster.tenant, "orders").unwrap().hash(), a.registry.get(&cluster.tenant, "orders").unwrap().hash());

    // Commands on either host; the automation reserves each confirmed order's stock once.
    cluster.run(&b, "inventory", "receive-stock", json!({"sku": "apple", "qty": 10})).await;
    cluster.confirm(&a, "o-1", 2).await;
    cluster.confirm(&b, "o-2", 3).await;
    for order in ["o-1", "o-2"] {
        let types = cluster.wait_for(order, "StockReserved").await;
        assert_eq!(types.iter().filter(|t| *t == "StockReserved").count(), 1, "{order}: {types:?}");
    }
    // Each automation and the read model run on exactly one host.
    let active = |statuses: Vec<(String, bool)>| statuses;
    let automations_a = active(a.automations.status(&cluster.tenant).await.unwrap().into_iter().map(|s| (s.id.name, s.progress.active)).collect());
    let automations_b = active(b.automations.status(&cluster.tenant).await.unwrap().into_iter().map(|s| (s.id.name, s.progress.active)).collect());
    assert_eq!(automations_a.len(), 2);
    for ((name, on_a), (_, on_b)) in automations_a.iter().zip(&automations_b) {
        assert!(on_a != on_b, "automation {name} runs on exactly one host (a: {on_a}, b: {on_b})");
    }
    let id = ReadModelId { tenant: cluster.tenant.clone(), slice: "inventory".into(), name: "stock-levels".into() };
    let head = cluster.store.head(&cluster.tenant).await.unwrap();
    for host in [&a, &b] {
        let answer = host.read_models.query(&id, &json_to_msgpack(&json!({"sku": "apple"})), Some(head), Duration::from_secs(30)).await.unwrap();
        assert_eq!(msgpack_to_json(&answer).unwrap()[0]["available"], 5, "both hosts answer from the one state");
    }

    // Host A stops: B takes over every worker A ran, from its checkpoint.
    a.automations.stop().await;
    a.read_models.stop().await;
    cluster.confirm(&b, "o-3", 4).await;
    let types = cluster.wait_for("o-3", "StockReserved").await;
    assert_eq!(types.iter().filter(|t| *t == "StockReserved").count(), 1, "{types:?}");
    let head = cluster.store.head(&cluster.tenant).await.unwrap();
    let answer = b.read_models.query(&id, &json_to_msgpack(&json!({"sku": "apple"})), Some(head), Duration::from_secs(30)).await.unwrap();
    assert_eq!(msgpack_to_json(&answer).unwrap()[0]["available"], 1);
    // Each of A's leases is released on its own: B takes each one at its next look.
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle = b.automations.status(&cluster.tenant).await.unwrap().into_iter().filter(|s| !s.progress.active).map(|s| s.id.name).collect();
        if idle.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(idle.is_empty(), "every automation moved to host b; not yet: {idle:?}");
    // A removal on one host reaches the other too.
    b.registry.remove(&cluster.tenant, "orders").await.unwrap();
    for _ in 0..600 {
        if a.registry.get(&cluster.tenant, "orders").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.registry.get(&cluster.tenant, "orders").is_none(), "the removal reached host a");
    b.automations.stop().await;
    b.read_models.stop().await;
}


/// A `counterpoint serve` child process on the test cluster; killed when dropped, so a failing
/// test leaves no server behind.
struct ServerProcess {
    name: &'static str,
    process: crate::process::ServeProcess,
    http: crate::api::Http,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts a server with its own data directory on the deployment `prefix` of the cluster named
    /// by `FDB_CLUSTER_FILE`, and waits until it listens.
    fn start(name: &'static str, prefix: &str) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        // The compiled slices are cached for every test server (keyed by component and engine).
        let shared = counterpoint_tests::slices::target_dir().join("test-compile-cache");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, dir.path().join("cache")).unwrap();
        let cluster_file = std::env::var("FDB_CLUSTER_FILE").expect("FDB_CLUSTER_FILE names the test cluster");
        let config = format!(
            "{}\n[store]\nkind = \"fdb\"\ncluster_file = {cluster_file:?}\nprefix = \"{prefix}\"\nlease_ttl_ms = {}\n",
            crate::api::config_text(dir.path(), &[("acme", "")]),
            LEASE_TTL.as_millis()
        );
        let config_path = dir.path().join("counterpoint.toml");
        std::fs::write(&config_path, config).unwrap();
        let process = crate::process::ServeProcess::start(&config_path);
        ServerProcess { name, http: crate::api::Http::new(process.address), process, _dir: dir }
    }

    /// What `GET path` (with the tenant's token) answers, as JSON.
    async fn get(&self, path: &str) -> Value {
        self.http.get(&format!("/v1/t/acme{path}"), Some(&crate::api::token("acme"))).await.ok()
    }

    async fn command(&self, slice: &str, command: &str, input: Value) -> Value {
        self.http.command("acme", slice, command, input).await.ok()
    }

    /// Which of this host's automations and read models follow the log now: `slice/name` → active.
    async fn workers(&self) -> BTreeMap<String, bool> {
        let automations = self.get("/automations").await["automations"].as_array().unwrap().clone();
        let read_models = self.get("/readmodels").await["read_models"].as_array().unwrap().clone();
        automations
            .iter()
            .chain(&read_models)
            .map(|w| (format!("{}/{}", w["slice"].as_str().unwrap(), w["name"].as_str().unwrap()), w["active"].as_bool().unwrap()))
            .collect()
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// Sends `signal` and waits for the process to end.
    fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        self.process.signal(signal)
    }
}

/// How long a silent host keeps its workers, in the two-process test.
const LEASE_TTL: Duration = Duration::from_millis(3_000);

/// A position from JSON: a decimal string, or a number.
fn position(value: &Value) -> u128 {
    value.as_str().map(|s| s.parse().expect("a decimal position")).or(value.as_u64().map(u128::from)).unwrap_or_else(|| panic!("not a position: {value}"))
}

/// Polls `check` every 50 ms for up to 60 s; panics with `what` if it never holds.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1_200 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 60 s");
}

/// The clear-at-the-end guard and prefix of a fresh deployment on the test cluster, and a store
/// handle on it to check the log with.
#[cfg(feature = "fdb")]
fn fdb_deployment() -> (SharedStore, String, Box<dyn std::any::Any + Send + Sync>) {
    let (store, prefix, guard) = crate::store::fdb_store();
    (Arc::new(store), prefix, guard)
}

#[cfg(not(feature = "fdb"))]
fn fdb_deployment() -> (SharedStore, String, Box<dyn std::any::Any + Send + Sync>) {
    crate::store::without_fdb()
}

/// Two real `counterpoint serve` processes, A and B, each with its own data directory, on one
/// FoundationDB deployment: a deploy on A is served by B, commands go to either, every automation
/// and read model runs on exactly one host; A is killed with SIGKILL and B takes A's workers over
/// from their checkpoints: an order confirmed after the kill gets its stock reserved exactly once,
/// and B's read model answers with the state after it.
#[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_foundationdb_and_one_killed() {
    let (store, prefix, _cleared_at_the_end) = fdb_deployment();
    let tenant = Tenant::new("acme").unwrap();
    let reserved = async |order: &str| {
        let query = Query::item(QueryItem::tags([format!("order_id:{order}")]));
        let (events, _) = store.read(&tenant, query, ReadOptions::default()).await.unwrap().collect().await.unwrap();
        events.iter().filter(|e| e.event.event_type == "StockReserved").count()
    };

    // A runs alone first, so that it holds the inventory slice's workers when B arrives.
    let mut a = ServerProcess::start("a", &prefix);
    let deployed = a.http.deploy("acme", "inventory", wasm("inventory")).await;
    assert_eq!(deployed.status.as_u16(), 200, "{:?}", deployed.json);
    let inventory_workers = ["inventory/reserve-on-confirm", "inventory/stock-levels"];
    eventually("a runs the inventory slice's workers", async || {
        let on_a = a.workers().await;
        inventory_workers.iter().all(|w| on_a.get(*w) == Some(&true)).then_some(())
    })
    .await;

    // B starts with what the catalog holds, then follows it: a deploy on A is served by B.
    let mut b = ServerProcess::start("b", &prefix);
    let deployed = a.http.deploy("acme", "orders", wasm("orders")).await;
    assert_eq!(deployed.status.as_u16(), 200, "{:?}", deployed.json);
    let hashes = |list: Value| -> BTreeMap<String, String> {
        list["slices"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["hash"].as_str().unwrap().to_string())).collect()
    };
    let on_a = hashes(a.get("/slices").await);
    assert_eq!(on_a.len(), 2);
    eventually("b serves both slices deployed on a", async || (hashes(b.get("/slices").await) == on_a).then_some(())).await;

    // Every worker runs on exactly one host (and never on both at a look).
    let mut holders = BTreeMap::new();
    eventually("every worker runs on exactly one host", async || {
        let (on_a, on_b) = (a.workers().await, b.workers().await);
        for (worker, active_on_a) in &on_a {
            assert!(!(*active_on_a && on_b.get(worker) == Some(&true)), "{worker} runs on both hosts");
        }
        if on_a.len() != 3 || on_a.keys().ne(on_b.keys()) {
            return None; // B is still starting the workers of the slices it loaded
        }
        holders = on_a.iter().map(|(w, on_a)| (w.clone(), if *on_a { "a" } else if on_b[w] { "b" } else { "none" })).collect();
        holders.values().all(|h| *h != "none").then_some(())
    })
    .await;
    for worker in inventory_workers {
        assert_eq!(holders[worker], "a", "A keeps the workers it held: {holders:?}");
    }

    // Commands go to A and B in turn; the automation (on A) reserves each confirmed order's stock once.
    let hosts = [&a, &b];
    let mut turn = 0;
    let mut next = || {
        turn += 1;
        hosts[turn % 2]
    };
    next().command("inventory", "receive-stock", json!({"sku": "apple", "qty": 10})).await;
    for (order, qty) in [("o-1", 2), ("o-2", 3)] {
        next().command("orders", "place-order", json!({"order_id": order, "customer_id": "c"})).await;
        next().command("orders", "add-item", json!({"order_id": order, "sku": "apple", "qty": qty, "price": 1})).await;
        next().command("orders", "confirm-order", json!({"order_id": order})).await;
    }
    for order in ["o-1", "o-2"] {
        eventually(&format!("{order}'s stock reserved"), async || (reserved(order).await > 0).then_some(())).await;
    }
    let head = store.head(&tenant).await.unwrap().get();
    for host in hosts {
        let answer = host.http.post(&format!("/v1/t/acme/slices/inventory/readmodels/stock-levels?at_least={head}&wait_ms=30000"), Some(&crate::api::token("acme")), &json!({"sku": "apple"})).await.ok();
        assert_eq!(answer["result"][0]["available"], 5, "{} answers from the shared state", host.name);
    }

    // A dies without a word: B takes its workers over once their leases have been silent for a TTL.
    let killed = a.signal(libc::SIGKILL);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed), Some(libc::SIGKILL), "a was killed: {killed:?}");
    let order = "o-3";
    b.command("orders", "place-order", json!({"order_id": order, "customer_id": "c"})).await;
    b.command("orders", "add-item", json!({"order_id": order, "sku": "apple", "qty": 4, "price": 1})).await;
    let after_kill = position(&b.command("orders", "confirm-order", json!({"order_id": order})).await["positions"][0]);
    // Once B's automation checkpoint has passed the confirmation, its reaction is complete.
    eventually("b's automation passes the order confirmed after the kill", async || {
        let automations = b.get("/automations").await;
        let reserve = automations["automations"].as_array().unwrap().iter().find(|s| s["name"] == "reserve-on-confirm").unwrap().clone();
        (reserve["active"] == true && position(&reserve["checkpoint"]) >= after_kill).then_some(())
    })
    .await;
    for order in ["o-1", "o-2", "o-3"] {
        assert_eq!(reserved(order).await, 1, "{order}: stock reserved exactly once\nb's log:\n{}", b.log());
    }
    let head = store.head(&tenant).await.unwrap().get();
    let answer = b.http.post(&format!("/v1/t/acme/slices/inventory/readmodels/stock-levels?at_least={head}&wait_ms=30000"), Some(&crate::api::token("acme")), &json!({"sku": "apple"})).await.ok();
    assert_eq!(answer["result"][0]["available"], 1, "b's read model holds the state after the kill");
    // Each worker's lease expires on its own: the last of them may still be held by the dead A.
    eventually("b runs every worker", async || b.workers().await.values().all(|active| *active).then_some(())).await;

    // B stops as on SIGTERM: gracefully, exit code 0.
    let stopped = b.signal(libc::SIGTERM);
    assert!(stopped.success(), "b stops cleanly on SIGTERM: {stopped:?}\n{}", b.log());
}
