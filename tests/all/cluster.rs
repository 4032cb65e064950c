//! Several hosts on one cluster. In memory, two hosts share what a FoundationDB cluster would
//! hold for them (the log, the slice catalog, read-model state, leases): a deploy on one
//! reaches the other, each automation and read model runs on exactly one host, and when that
//! host stops the other takes its workers over from their checkpoints. With the feature `fdb`
//! and `FDB_CLUSTER_FILE` naming a cluster, two real servers do the same on FoundationDB.

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
    for status in b.automations.status(&cluster.tenant).await.unwrap() {
        assert!(status.progress.active, "{} moved to host b", status.id.name);
    }
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

/// Two real servers on one FoundationDB cluster.
#[cfg(feature = "fdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(fdb_cluster), ignore = "needs FDB_CLUSTER_FILE naming a FoundationDB cluster")]
async fn two_servers_on_foundationdb() {
    use counterpoint::tenants::{hash_token, Config};
    let (_store, prefix, _cleared_at_the_end) = crate::store::fdb_store();
    let config = |dir: &std::path::Path| {
        Config::parse(&format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmin_token_sha256 = \"{}\"\n[store]\nkind = \"fdb\"\nprefix = \"{prefix}\"\nlease_ttl_ms = 1000\n[tenants.acme]\ntokens_sha256 = [\"{}\"]\n",
            dir.display().to_string(),
            hash_token("admin"),
            hash_token("acme-token")
        ))
        .unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = counterpoint::api::spawn_server(&config(dir_a.path())).await.unwrap();
    let b = counterpoint::api::spawn_server(&config(dir_b.path())).await.unwrap();
    let (http_a, http_b) = (crate::api::Http::new(a.address), crate::api::Http::new(b.address));
    for name in ["orders", "inventory"] {
        let deployed = http_a.send(axum::http::Method::PUT, &format!("/v1/t/acme/slices/{name}"), Some("admin"), &[], wasm(name)).await;
        assert_eq!(deployed.status.as_u16(), 200, "{:?}", deployed.json);
    }
    // The deploy reaches b through the catalog's watch.
    let mut seen = false;
    for _ in 0..600 {
        let list = http_b.get("/v1/t/acme/slices", Some("acme-token")).await;
        if list.json["slices"].as_array().is_some_and(|s| s.len() == 2) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the deploy on a reached b");
    let received = http_b.post("/v1/t/acme/slices/inventory/commands/receive-stock", Some("acme-token"), &json!({"sku": "apple", "qty": 3})).await.ok();
    let at = &received["positions"][0];
    let answer = http_a
        .post(&format!("/v1/t/acme/slices/inventory/readmodels/stock-levels?at_least={at}&wait_ms=30000"), Some("acme-token"), &json!({"sku": "apple"}))
        .await
        .ok();
    assert_eq!(answer["result"][0]["available"], 3);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
