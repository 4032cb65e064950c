//! Automations end to end, with the example slices on the durable store: a confirmed order's
//! stock is reserved, an order whose stock cannot be reserved is cancelled, failing reactions
//! become dead letters that can be retried and skipped, and a host stopped in the middle and
//! started again on the same data directory finishes the work without doing any of it twice.

use std::sync::Arc;
use std::time::Duration;

use counterpoint::automations::{AutomationId, Automations, RetryPolicy};
use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::deploy::Registry;
use counterpoint::runner::CommandRunner;
use counterpoint::store::{EmbeddedStore, Event, Query, QueryItem, ReadOptions, SharedStore, Tenant};
use counterpoint::tenants::Tenants;
use counterpoint_tests::slices::{runtime, wasm};
use serde_json::{json, Value};

struct Host {
    store: SharedStore,
    registry: Arc<Registry>,
    automations: Arc<Automations>,
    tenant: Tenant,
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_failures: 3, backoff: Duration::from_millis(5) }
}

/// A host on `dir` with the given slices deployed (when not deployed already) and automations running.
async fn host(dir: &std::path::Path, slices: &[&str]) -> Host {
    let tenant = Tenant::new("acme").unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.join("events")).unwrap());
    let registry = Arc::new(Registry::open(runtime(), dir, Arc::new(Tenants::single(&tenant))).await.unwrap());
    for name in slices {
        if registry.get(&tenant, name).is_none() {
            registry.deploy(&tenant, wasm(name), Some(name)).await.unwrap();
        }
    }
    let automations = Automations::new(store.clone(), registry.clone(), CommandRunner::default(), fast_retries());
    automations.start();
    Host { store, registry, automations, tenant }
}

impl Host {
    async fn run(&self, slice: &str, command: &str, input: Value) -> Value {
        let slice = self.registry.get(&self.tenant, slice).unwrap();
        let out = CommandRunner::default().run(&slice, &self.store, &self.tenant, command, &json_to_msgpack(&input)).await.unwrap();
        msgpack_to_json(&out.output).unwrap_or(Value::Null)
    }

    async fn types_for(&self, tag: &str) -> Vec<String> {
        let query = Query::item(QueryItem::tags([tag]));
        let (events, _) = self.store.read(&self.tenant, query, ReadOptions::default()).await.unwrap().collect().await.unwrap();
        events.into_iter().map(|e| e.event.event_type).collect()
    }

    /// Waits (up to 30 s) until the events tagged `tag` include `event_type`.
    async fn wait_for(&self, tag: &str, event_type: &str) -> Vec<String> {
        for _ in 0..600 {
            let types = self.types_for(tag).await;
            if types.iter().any(|t| t == event_type) {
                return types;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {event_type} for {tag}: {:?}", self.types_for(tag).await);
    }

    async fn shutdown(self) {
        self.automations.stop().await;
    }
}

async fn order(host: &Host, id: &str, sku: &str, qty: u32) {
    host.run("orders", "place-order", json!({"order_id": id, "customer_id": "c"})).await;
    host.run("orders", "add-item", json!({"order_id": id, "sku": sku, "qty": qty, "price": 1})).await;
    host.run("orders", "confirm-order", json!({"order_id": id})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_orders_get_their_stock_or_are_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), &["orders", "inventory"]).await;
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 5})).await;
    order(&host, "o-1", "apple", 3).await;
    let types = host.wait_for("order_id:o-1", "StockReserved").await;
    assert!(!types.contains(&"OrderCancelled".to_string()), "{types:?}");
    order(&host, "o-2", "apple", 3).await; // only 2 left
    let types = host.wait_for("order_id:o-2", "OrderCancelled").await;
    assert!(types.contains(&"StockReservationFailed".to_string()) && !types.contains(&"StockReserved".to_string()), "{types:?}");
    let summary = host.registry.get(&host.tenant, "orders").unwrap();
    let out = counterpoint::projections::run(&summary, &host.store, &host.tenant, "order-summary", &json_to_msgpack(&json!({"order_id": "o-2"})))
        .await
        .unwrap();
    let summary = msgpack_to_json(&out).unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert!(summary["reason"].as_str().unwrap().contains("only 2 of apple available"), "{summary}");
    let status = host.automations.status(&host.tenant).await.unwrap();
    assert_eq!(status.len(), 2, "one automation in each slice");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_reactions_become_dead_letters_that_can_be_retried_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // The hostile slice's `poke` automation receives stock in inventory, which is not deployed yet.
    let host = host(dir.path(), &["hostile"]).await;
    let poke = |sku: &str| Event::new("Poked").tag(format!("sku:{sku}")).data(json_to_msgpack(&json!({"sku": sku})));
    host.store.append(&host.tenant, vec![poke("pear")], vec![]).await.unwrap();
    host.store.append(&host.tenant, vec![poke("plum")], vec![]).await.unwrap();
    let id = AutomationId { tenant: host.tenant.clone(), slice: "hostile".into(), name: "poke".into() };
    // Both events fail every attempt, are set aside, and the worker goes on past them.
    let mut status = Vec::new();
    for _ in 0..600 {
        status = host.automations.status(&host.tenant).await.unwrap();
        if status[0].lag == 0 && status[0].progress.dead_letters == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((status[0].lag, status[0].progress.dead_letters), (0, 2), "{status:?}");
    let letters = host.automations.dead_letters(&id).await.unwrap();
    assert_eq!(letters[0].attempts, fast_retries().max_failures);
    assert!(letters[0].error.contains("inventory"), "{}", letters[0].error);

    // Retrying while inventory is still missing fails and keeps the letter.
    assert!(host.automations.retry(&id, letters[0].id).await.is_err());
    host.registry.deploy(&host.tenant, wasm("inventory"), Some("inventory")).await.unwrap();
    host.automations.retry(&id, letters[0].id).await.unwrap();
    assert!(host.types_for("sku:pear").await.contains(&"StockReceived".to_string()), "the retried reaction ran");
    host.automations.skip(&id, letters[1].id).await.unwrap();
    assert!(!host.types_for("sku:plum").await.contains(&"StockReceived".to_string()), "a skipped reaction never runs");
    assert!(host.automations.dead_letters(&id).await.unwrap().is_empty());
    assert!(host.automations.skip(&id, letters[1].id).await.is_err(), "a resolved letter is gone");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stopped_in_the_middle_finishes_the_work_once_when_started_again() {
    let dir = tempfile::tempdir().unwrap();
    const ORDERS: usize = 40;
    {
        let host = host(dir.path(), &["orders", "inventory"]).await;
        host.automations.stop().await; // confirmations pile up unprocessed
        host.run("inventory", "receive-stock", json!({"sku": "fig", "qty": 25})).await;
        for i in 0..ORDERS {
            order(&host, &format!("o-{i}"), "fig", 1).await;
        }
        // Start the workers and stop everything part-way through the burst.
        host.automations.start();
        host.wait_for("order_id:o-3", "StockReserved").await;
        host.shutdown().await;
    }
    // A new host on the same data directory: the store, the slices and the checkpoints come back.
    let host = host(dir.path(), &[]).await;
    for i in 0..ORDERS {
        let tag = format!("order_id:o-{i}");
        let expected = if i < 25 { "StockReserved" } else { "OrderCancelled" };
        let types = host.wait_for(&tag, expected).await;
        let decided = types.iter().filter(|t| *t == "StockReserved" || *t == "StockReservationFailed").count();
        assert_eq!(decided, 1, "order {i} decided exactly once: {types:?}");
        assert!(types.iter().filter(|t| *t == "OrderCancelled").count() <= 1, "{types:?}");
    }
    let status = host.automations.status(&host.tenant).await.unwrap();
    assert!(status.iter().all(|s| s.lag == 0), "{status:?}");
    host.shutdown().await;
}
