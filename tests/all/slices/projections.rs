//! On-demand projections: full folds, "the last N", and errors.

use counterpoint::runtime::InvokeError;
use serde_json::json;

use super::Host;

#[tokio::test]
async fn order_summary_folds_every_event_of_the_order() {
    let host = Host::new();
    host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.unwrap();
    host.run("orders", "add-item", json!({"order_id": "o-1", "sku": "apple", "qty": 3, "price": 120})).await.unwrap();
    host.run("orders", "add-item", json!({"order_id": "o-1", "sku": "pear", "qty": 1, "price": 200})).await.unwrap();
    host.run("orders", "place-order", json!({"order_id": "o-2", "customer_id": "c-1"})).await.unwrap();
    let (receipt, _) = host.run("orders", "confirm-order", json!({"order_id": "o-1"})).await.unwrap();
    assert_eq!(receipt["total"], 560);
    let summary = host.query("orders", "order-summary", json!({"order_id": "o-1"})).await.unwrap();
    assert_eq!(summary["status"], "confirmed");
    assert_eq!(summary["total"], 560);
    assert_eq!(summary["items"].as_array().unwrap().len(), 2);
    let err = host.query("orders", "order-summary", json!({"order_id": "nope"})).await.unwrap_err();
    assert!(matches!(err, InvokeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn the_last_n_with_limit_and_backwards() {
    let host = Host::new();
    for i in 1..=5 {
        host.run("orders", "place-order", json!({"order_id": format!("o-{i}"), "customer_id": "c-1"})).await.unwrap();
        host.run("orders", "place-order", json!({"order_id": format!("x-{i}"), "customer_id": "c-2"})).await.unwrap();
    }
    let all = host.query("orders", "customer-orders", json!({"customer_id": "c-1"})).await.unwrap();
    assert_eq!(all["orders"], json!(["o-1", "o-2", "o-3", "o-4", "o-5"]));
    let last = host.query("orders", "customer-orders", json!({"customer_id": "c-1", "last": 2})).await.unwrap();
    assert_eq!(last["orders"], json!(["o-4", "o-5"]));
}

#[tokio::test]
async fn projections_with_many_events_are_fed_in_batches() {
    let host = Host::new();
    host.run("orders", "place-order", json!({"order_id": "big", "customer_id": "c"})).await.unwrap();
    for i in 0..1200 {
        host.run("orders", "add-item", json!({"order_id": "big", "sku": format!("s{i}"), "qty": 1, "price": 1})).await.unwrap();
    }
    let summary = host.query("orders", "order-summary", json!({"order_id": "big"})).await.unwrap();
    assert_eq!(summary["total"], 1200);
}

#[tokio::test]
async fn unknown_projections_and_bad_params_are_specific_errors() {
    let host = Host::new();
    let err = host.query("orders", "no-such-view", json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::NotFound(_)), "{err:?}");
    let err = host.query("orders", "order-summary", json!({"order": 1})).await.unwrap_err();
    assert!(matches!(err, InvokeError::InvalidInput(_)), "{err:?}");
}
