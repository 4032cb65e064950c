//! The orders slice in three languages: Rust (`orders`), Python (`orders-py`, componentize-py)
//! and JavaScript (`orders-js`, componentize-qjs). Each passes the same spec, describes itself the
//! same, answers the same inputs with the same results and errors, writes the same bytes to the
//! log, and shares that log with the Rust inventory slice.

use counterpoint::runtime::InvokeError;
use counterpoint::store::{Query, ReadOptions};
use counterpoint::testing::{run, Spec};
use counterpoint_tests::slices::slice;
use serde_json::{json, Value};

use crate::slices::Host;

const RUST: &str = "orders";
const PYTHON: &str = "orders-py";
const JS: &str = "orders-js";

async fn orders_spec_passes(orders: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../slices/orders/scenarios.json");
    let spec = Spec::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(!spec.scenarios.is_empty());
    let outcomes = run(&slice(orders).await, &spec).await;
    let failures: Vec<String> =
        outcomes.iter().filter_map(|o| o.result.as_ref().err().map(|why| format!("{}: {why}", o.name))).collect();
    assert!(failures.is_empty(), "{orders}: {failures:#?}");
}

/// Stock is reserved, through the Rust inventory slice, for an order placed by `orders`.
async fn stock_is_reserved_for_an_order_of(orders: &str) {
    let host = Host::new();
    let (receipt, _) = host.run(orders, "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.unwrap();
    assert_eq!(receipt, json!({"order_id": "o-1", "status": "placed", "total": 0}), "{orders}");
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 5})).await.unwrap();
    let (reservation, _) =
        host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 2})).await.unwrap();
    assert_eq!(reservation["available"], 3, "{orders}");
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 1})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("already reserved")), "{orders}: {err:?}");

    // The inventory slice reads the orders slice's events: a cancelled order gets nothing.
    host.run(orders, "place-order", json!({"order_id": "o-2", "customer_id": "c-1"})).await.unwrap();
    host.run(orders, "cancel-order", json!({"order_id": "o-2", "reason": "changed my mind"})).await.unwrap();
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-2", "sku": "apple", "qty": 1})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("cancelled")), "{orders}: {err:?}");
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-9", "sku": "apple", "qty": 1})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("not placed")), "{orders}: {err:?}");
    let stock = host.query("inventory", "stock-level", json!({"sku": "apple"})).await.unwrap();
    assert_eq!((stock["reserved"].clone(), stock["available"].clone()), (json!(2), json!(3)), "{orders}");
    assert_eq!(
        host.event_types().await,
        ["OrderPlaced", "StockReceived", "StockReserved", "OrderPlaced", "OrderCancelled"],
        "{orders}"
    );
}

macro_rules! per_language {
    ($($language:ident => $slice:expr),* $(,)?) => {$(
        mod $language {
            #[tokio::test]
            async fn passes_the_orders_spec() {
                super::orders_spec_passes($slice).await;
            }

            #[tokio::test]
            async fn stock_is_reserved_by_the_rust_inventory_slice() {
                super::stock_is_reserved_for_an_order_of($slice).await;
            }
        }
    )*};
}

per_language! {
    rust => super::RUST,
    python => super::PYTHON,
    js => super::JS,
}

#[tokio::test]
async fn every_language_describes_the_same_slice() {
    let rust = slice(RUST).await.description().clone();
    let mut read_models = Vec::new();
    for other in [PYTHON, JS] {
        // Only the Python and JavaScript slices have a read model (`orders-by-customer`, the same
        // in both); all else is alike.
        let mut described = slice(other).await.description().clone();
        let declared: Vec<_> = described.read_models.drain(..).collect();
        assert_eq!(declared.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["orders-by-customer"], "{other}");
        read_models.push(declared);
        assert_eq!(&described, &rust, "{other} describes itself like {RUST}");
    }
    assert_eq!(read_models[0], read_models[1], "{PYTHON} and {JS} declare the same read model");
}

/// The Python and JavaScript slices' persistent read model `orders-by-customer`, kept by the
/// host's `ReadModels` in its state and answered from it.
#[tokio::test]
async fn a_python_and_a_javascript_read_model_follow_the_log() {
    for orders in [PYTHON, JS] {
        read_model_follows_the_log(orders).await;
    }
}

async fn read_model_follows_the_log(language: &str) {
    use std::sync::Arc;
    use std::time::Duration;

    use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
    use counterpoint::deploy::Registry;
    use counterpoint::readmodels::{MemoryState, ReadModelId, ReadModels};
    use counterpoint::runner::CommandRunner;
    use counterpoint::store::{MemoryStore, SharedStore, Tenant};
    use counterpoint::tenants::{Config, Tenants};
    use counterpoint_tests::slices::{runtime, wasm};

    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("acme").unwrap();
    let store: SharedStore = Arc::new(MemoryStore::new());
    // A component may import the effects interface (unused), so the slice gets a grant.
    let tenants = Tenants::from_config(&Config::parse("[tenants.acme.effects.orders]\n").unwrap());
    let registry = Arc::new(Registry::open(runtime(), dir.path(), Arc::new(tenants)).await.unwrap());
    let orders = registry.deploy(&tenant, wasm(language), Some("orders")).await.unwrap();
    assert_eq!(orders.slice.description().read_models.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["orders-by-customer"], "{language}");
    let read_models = ReadModels::new(store.clone(), Arc::new(MemoryState::new()), registry.clone());
    let id = ReadModelId { tenant: tenant.clone(), slice: "orders".into(), name: "orders-by-customer".into() };

    for (order_id, customer_id) in [("o-1", "c-1"), ("o-2", "c-2"), ("o-3", "c-1")] {
        let slice = registry.get(&tenant, "orders").unwrap();
        let input = json_to_msgpack(&json!({"order_id": order_id, "customer_id": customer_id}));
        CommandRunner::default().run(&slice, &store, &tenant, "place-order", &input).await.unwrap();
    }
    read_models.catch_up(&id).await.unwrap();
    let answer = read_models.query(&id, &json_to_msgpack(&json!({"customer_id": "c-1"})), None, Duration::ZERO).await.unwrap();
    assert_eq!(msgpack_to_json(&answer).unwrap(), json!({"customer_id": "c-1", "orders": ["o-1", "o-3"]}), "{language}");
    let answer = read_models.query(&id, &json_to_msgpack(&json!({"customer_id": "c-9"})), None, Duration::ZERO).await.unwrap();
    assert_eq!(msgpack_to_json(&answer).unwrap(), json!({"customer_id": "c-9", "orders": []}), "{language}");
}

/// One session of commands, queries and mistakes: every result and error, rendered as text.
async fn session(orders: &str) -> (Vec<String>, Vec<(String, Vec<String>, Vec<u8>, Vec<(String, String)>)>) {
    let host = Host::new();
    let mut seen = Vec::new();
    let commands: &[(&str, Value)] = &[
        ("place-order", json!({"order_id": "o-1", "customer_id": "c-1"})),
        ("place-order", json!({"order_id": "o-1", "customer_id": "c-2"})),
        ("add-item", json!({"order_id": "o-1", "sku": "apple", "qty": 3, "price": 50})),
        ("add-item", json!({"order_id": "o-1", "sku": "pear", "qty": 1, "price": 120, "note": "ignored"})),
        ("add-item", json!({"order_id": "o-1", "sku": "apple", "qty": "three", "price": 1})),
        ("add-item", json!({"order_id": "o-1", "sku": "apple", "qty": -1, "price": 1})),
        ("add-item", json!({"order_id": "o-1", "sku": "apple", "qty": 0, "price": 1})),
        ("add-item", json!({"order_id": "o-2", "sku": "apple", "qty": 1, "price": 1})),
        ("place-order", json!({"order_id": "o-2"})),
        ("place-order", json!({"order_id": 5, "customer_id": "c-1"})),
        ("place-order", json!({"order_id": "", "customer_id": "c-1"})),
        ("confirm-order", json!({"order_id": "o-1"})),
        ("confirm-order", json!({"order_id": "o-1"})),
        ("cancel-order", json!({"order_id": "o-1", "reason": "late"})),
        ("place-order", json!({"order_id": "o-2", "customer_id": "c-1"})),
        ("confirm-order", json!({"order_id": "o-2"})),
        ("cancel-order", json!({"order_id": "o-2", "reason": "changed my mind"})),
        ("add-item", json!({"order_id": "o-2", "sku": "apple", "qty": 1, "price": 1})),
        ("place-order", json!({"order_id": "o-3", "customer_id": "c-1"})),
        ("ship-order", json!({"order_id": "o-1"})),
    ];
    for (command, input) in commands {
        let outcome = match host.run(orders, command, input.clone()).await {
            Ok((result, out)) => format!("{command} ok {result} attempts={}", out.attempts),
            Err(e) => format!("{command} {e}"),
        };
        seen.push(outcome);
    }
    let queries: &[(&str, Value)] = &[
        ("order-summary", json!({"order_id": "o-1"})),
        ("order-summary", json!({"order_id": "o-2"})),
        ("order-summary", json!({"order_id": "o-9"})),
        ("order-summary", json!({})),
        ("customer-orders", json!({"customer_id": "c-1"})),
        ("customer-orders", json!({"customer_id": "c-1", "last": 2})),
        ("customer-orders", json!({"customer_id": "c-9", "last": null})),
        ("order-history", json!({})),
    ];
    for (projection, params) in queries {
        let outcome = match host.query(orders, projection, params.clone()).await {
            Ok(result) => format!("{projection} ok {result}"),
            Err(e) => format!("{projection} {e}"),
        };
        seen.push(outcome);
    }
    let (events, _) =
        host.store.read(&host.tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    let log = events.into_iter().map(|e| (e.event.event_type, e.event.tags, e.event.data, e.event.metadata)).collect();
    (seen, log)
}

#[tokio::test]
async fn every_language_answers_alike_and_writes_the_same_bytes() {
    let (rust, rust_log) = session(RUST).await;
    assert!(rust.iter().any(|s| s.contains("rejected")) && rust.iter().any(|s| s.contains("invalid input")), "{rust:#?}");
    assert_eq!(rust_log.len(), 8, "{rust:#?}");
    for other in [PYTHON, JS] {
        let (seen, log) = session(other).await;
        for (i, (theirs, ours)) in seen.iter().zip(&rust).enumerate() {
            assert_eq!(theirs, ours, "{other}, step {i}");
        }
        assert_eq!(seen.len(), rust.len());
        assert_eq!(log, rust_log, "{other} writes the same events, byte for byte");
    }
}

#[tokio::test]
async fn every_language_computes_the_same_tags() {
    let rust = slice(RUST).await;
    let events = [
        ("OrderPlaced", json!({"order_id": "o-1", "customer_id": "c-1"})),
        ("ItemAdded", json!({"order_id": "o-1", "sku": "apple", "qty": 1, "price": 2})),
        ("OrderConfirmed", json!({"order_id": "o-1"})),
        ("OrderCancelled", json!({"order_id": "o-1", "reason": "x"})),
        ("OrderPlaced", json!({"order_id": "o-1"})),
        ("StockReceived", json!({"sku": "apple", "qty": 1})),
    ];
    let io = || {
        counterpoint::runtime::ReadAppender::new(
            std::sync::Arc::new(counterpoint::store::MemoryStore::new()),
            counterpoint::store::Tenant::new("acme").unwrap(),
            counterpoint::runtime::Access::ReadOnly,
        )
    };
    for other in [PYTHON, JS] {
        let theirs = slice(other).await;
        for (event_type, data) in &events {
            let data = counterpoint::codec::json_to_msgpack(data);
            let ours = rust.tags(io(), event_type, &data).await.map_err(|e| std::mem::discriminant(&e));
            let got = theirs.tags(io(), event_type, &data).await.map_err(|e| std::mem::discriminant(&e));
            assert_eq!(got, ours, "{other}: tags of {event_type}");
        }
    }
}

#[tokio::test]
async fn every_language_reacts_alike() {
    let io = || {
        counterpoint::runtime::ReadAppender::new(
            std::sync::Arc::new(counterpoint::store::MemoryStore::new()),
            counterpoint::store::Tenant::new("acme").unwrap(),
            counterpoint::runtime::Access::ReadOnly,
        )
    };
    let failed = counterpoint::store::SequencedEvent {
        position: counterpoint::store::Position::new(7),
        event: counterpoint::store::Event {
            event_type: "StockReservationFailed".into(),
            tags: vec!["order_id:o-1".into()],
            data: counterpoint::codec::json_to_msgpack(&json!({"order_id": "o-1", "reason": "only 1 of apple available"})),
            metadata: vec![],
        },
    };
    let rust = slice(RUST).await;
    let ours = rust.react(io(), "cancel-when-out-of-stock", failed.clone()).await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!((ours[0].slice.as_str(), ours[0].command.as_str()), ("orders", "cancel-order"));
    for other in [PYTHON, JS] {
        let theirs = slice(other).await;
        assert_eq!(theirs.react(io(), "cancel-when-out-of-stock", failed.clone()).await.unwrap(), ours, "{other}");
        let err = theirs.react(io(), "no-such-automation", failed.clone()).await.unwrap_err();
        assert!(matches!(err, InvokeError::NotFound(_)), "{other}: {err:?}");
    }
}
