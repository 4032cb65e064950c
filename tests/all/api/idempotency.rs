//! `Idempotency-Key`: a retry gets the first result and the command does not run again.

use axum::http::Method;
use serde_json::{json, Value};

use super::*;

async fn place_with_key(http: &Http, key: &str, order: &str) -> Reply {
    let body = json!({"order_id": order, "customer_id": "c"}).to_string();
    let path = t("acme", "/slices/orders/commands/place-order");
    http.send(Method::POST, &path, Some(&token("acme")), &[("idempotency-key", key)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_gets_the_first_result_without_running_again() {
    let mut server = Server::start().await;
    server.http.deploy("acme", "orders", wasm("orders")).await.ok();
    let first = place_with_key(&server.http, "key-1", "o-1").await.ok();
    assert_eq!(first["attempts"], 1);
    for _ in 0..3 {
        let again = place_with_key(&server.http, "key-1", "o-1").await.ok();
        assert_eq!(again["result"], first["result"]);
        assert_eq!(again["positions"], first["positions"]);
        assert_eq!(again["attempts"], 0, "it did not run again");
    }
    // Without the key the same request runs, and is refused: the order exists.
    server.http.command("acme", "orders", "place-order", json!({"order_id": "o-1", "customer_id": "c"})).await.error(422, "rejected");
    assert_eq!(server.http.events_of("acme", "OrderPlaced").await.len(), 1);

    // The key is kept durably: the same after a restart.
    server.restart().await;
    let after = place_with_key(&server.http, "key-1", "o-1").await.ok();
    assert_eq!((&after["result"], &after["positions"], &after["attempts"]), (&first["result"], &first["positions"], &json!(0)));
    assert_eq!(server.http.events_of("acme", "OrderPlaced").await.len(), 1);

    // Another key is another request.
    place_with_key(&server.http, "key-2", "o-2").await.ok();
    assert_eq!(server.http.events_of("acme", "OrderPlaced").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_run_the_command_once() {
    let server = Server::start().await;
    server.http.deploy("acme", "orders", wasm("orders")).await.ok();
    for round in 0..60 {
        let key = format!("race-{round}");
        let order = format!("o-{round}");
        let requests: Vec<_> = (0..16)
            .map(|_| {
                let (http, key, order) = (server.http.clone(), key.clone(), order.clone());
                tokio::spawn(async move { place_with_key(&http, &key, &order).await })
            })
            .collect();
        let mut results = Vec::new();
        for request in requests {
            results.push(request.await.unwrap().ok());
        }
        let ran: Vec<&Value> = results.iter().filter(|r| r["attempts"] != 0).collect();
        assert_eq!(ran.len(), 1, "exactly one request ran the command: {results:?}");
        for result in &results {
            assert_eq!((&result["result"], &result["positions"]), (&ran[0]["result"], &ran[0]["positions"]), "every request got the first result");
        }
        let placed = server.http.events_of("acme", "OrderPlaced").await;
        assert_eq!(placed.iter().filter(|e| e["data"]["json"]["order_id"] == order.as_str()).count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_for_one_command() {
    let server = Server::start().await;
    let http = &server.http;
    http.deploy("acme", "orders", wasm("orders")).await.ok();
    place_with_key(http, "shared", "o-1").await.ok();
    let path = t("acme", "/slices/orders/commands/cancel-order");
    let body = json!({"order_id": "o-1", "reason": "no"}).to_string();
    let other = http.send(Method::POST, &path, Some(&token("acme")), &[("idempotency-key", "shared")], body.clone()).await;
    other.error(400, "invalid_input");
    assert!(other.json["error"]["message"].as_str().unwrap().contains("place-order"), "{}", other.json);
    assert!(http.events_of("acme", "OrderCancelled").await.is_empty(), "the other command did not run");
    // Keys that cannot be keys.
    let long = "k".repeat(201);
    http.send(Method::POST, &path, Some(&token("acme")), &[("idempotency-key", &long)], body.clone()).await.error(400, "invalid_input");
    http.send(Method::POST, &path, Some(&token("acme")), &[("idempotency-key", "")], body).await.error(400, "invalid_input");
    assert!(http.events_of("acme", "OrderCancelled").await.is_empty());
}
