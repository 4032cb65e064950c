//! Every error code the API can be made to return over HTTP, with its status.
//! (`store_unavailable`, from a disk that fills up, is in `full_disk`.)

use axum::http::Method;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_has_its_status() {
    let server = Server::with(&[
        ("acme", ""),
        ("slow", "requests_per_second = 1\nburst = 2"),
        ("tiny", "max_slices = 1\nmax_log_events = 2"),
    ])
    .await;
    let http = &server.http;
    let acme = token("acme");
    let acme = Some(acme.as_str());
    http.deploy("acme", "orders", wasm("orders")).await.ok();
    http.deploy("acme", "hostile", wasm("hostile")).await.ok();

    // unauthorized, forbidden
    http.get(&t("acme", "/slices"), None).await.error(401, "unauthorized");
    http.get(&t("acme", "/slices"), Some("wrong")).await.error(401, "unauthorized");
    http.get(&t("globex", "/slices"), acme).await.error(403, "forbidden");

    // not_found: route, tenant, slice, command, projection, removal of nothing
    http.get("/v2/nothing", None).await.error(404, "not_found");
    http.get(&t("acme", "/nothing"), acme).await.error(404, "not_found");
    http.get(&t("nobody", "/slices"), Some(ADMIN)).await.error(404, "not_found");
    http.command("acme", "nothing", "place-order", json!({})).await.error(404, "not_found");
    http.command("acme", "orders", "no-such-command", json!({})).await.error(404, "not_found");
    http.project("acme", "orders", "no-such-projection", json!({})).await.error(404, "not_found");
    http.send(Method::DELETE, &t("acme", "/slices/nothing"), acme, &[], "").await.error(404, "not_found");

    // method_not_allowed
    http.get(&t("acme", "/events/append"), acme).await.error(405, "method_not_allowed");
    http.send(Method::DELETE, "/healthz", None, &[], "").await.error(405, "method_not_allowed");
    http.send(Method::POST, &t("acme", "/slices"), acme, &[], "{}").await.error(405, "method_not_allowed");

    let before = http.log("acme").await;
    // invalid_input: the body, the types, the slice's own validation, reads, streams, keys
    http.send(Method::POST, &t("acme", "/slices/orders/commands/place-order"), acme, &[], "{not json").await.error(400, "invalid_input");
    http.command("acme", "orders", "place-order", json!({"order_id": 5, "customer_id": "c"})).await.error(400, "invalid_input");
    http.command("acme", "orders", "place-order", json!({"order_id": "", "customer_id": "c"})).await.error(400, "invalid_input");
    http.command("acme", "orders", "add-item", json!({"order_id": "o", "sku": "s", "qty": -1, "price": 1})).await.error(400, "invalid_input");
    http.project("acme", "orders", "order-summary", json!({"order": 1})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/read"), acme, &json!({"limit": 0})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/read"), acme, &json!({"unknown": 1})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/read"), acme, &json!({"query": "all"})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": "X", "data": "raw"}]})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": "X", "data": {"base64": "%%%"}}]})).await.error(400, "invalid_input");
    http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": ""}]})).await.error(400, "invalid_input");
    // The host's own records cannot be forged: a checkpoint, a dead letter, an idempotency record.
    for forged in ["counterpoint.checkpoint", "counterpoint.dead-letter", "counterpoint.idempotency"] {
        let refused = http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": "X"}, {"type": forged}]})).await;
        refused.error(400, "invalid_input");
        assert!(refused.json["error"]["message"].as_str().unwrap().contains("reserved"), "{:?}", refused.json);
    }
    http.get(&t("acme", "/events/stream?after=minus-one"), acme).await.error(400, "invalid_input");
    http.get(&t("acme", "/events/stream?colour=red"), acme).await.error(400, "invalid_input");
    http.get(&t("acme", "/events/stream?query=%7B&type=X"), acme).await.error(400, "invalid_input");
    http.send(Method::GET, &t("acme", "/events/stream"), acme, &[("last-event-id", "yesterday")], "").await.error(400, "invalid_input");
    http.send(Method::PUT, &t("acme", "/slices/orders"), acme, &[], "").await.error(400, "invalid_input");

    // payload_too_large: a body over 24 MiB, just over and twice that (the client is then still
    // writing when it is refused), at a command, an append, a read and a projection.
    for over in [0, 24 << 20] {
        let huge = format!("{{\"order_id\": \"{}\", \"customer_id\": \"c\"}}", "x".repeat((24 << 20) + over));
        for path in ["/slices/orders/commands/place-order", "/events/append", "/events/read", "/slices/orders/projections/order-summary"] {
            http.send_oversized(&t("acme", path), acme, huge.clone()).await;
        }
    }
    assert_eq!(http.log("acme").await, before, "no refused request appended anything");

    // rejected
    http.command("acme", "orders", "place-order", json!({"order_id": "o-1", "customer_id": "c"})).await.ok();
    http.command("acme", "orders", "place-order", json!({"order_id": "o-1", "customer_id": "c"})).await.error(422, "rejected");
    http.command("acme", "orders", "confirm-order", json!({"order_id": "o-1"})).await.error(422, "rejected");

    // condition_failed: the raw API's conditions
    let head = http.log("acme").await.last().unwrap()["position"].clone();
    let condition = json!({"query": {"items": [{"types": ["OrderPlaced"]}]}, "after": 0});
    let refused = http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": "X"}], "conditions": [condition]})).await;
    refused.error(409, "condition_failed");
    let holds = json!({"query": {"items": [{"types": ["OrderPlaced"]}]}, "after": head});
    http.post(&t("acme", "/events/append"), acme, &json!({"events": [{"type": "X"}], "conditions": [holds]})).await.ok();

    // slice_trapped, slice_timeout, slice_out_of_memory: the hostile slice
    http.command("acme", "hostile", "trap", json!({})).await.error(502, "slice_trapped");
    http.command("acme", "hostile", "recurse", json!({})).await.error(502, "slice_trapped");
    http.command("acme", "hostile", "spin", json!({})).await.error(504, "slice_timeout");
    http.command("acme", "hostile", "hog", json!({})).await.error(502, "slice_out_of_memory");
    // ... and the slice still serves.
    http.command("acme", "hostile", "ok", json!({})).await.ok();

    // incompatible_contract, invalid_component; the old version keeps serving
    let orders_hash = http.slices("acme").await["orders"].clone();
    http.deploy("acme", "orders", wasm("future-version")).await.error(422, "incompatible_contract");
    http.deploy("acme", "orders", b"\0asm but not really".to_vec()).await.error(422, "invalid_component");
    http.deploy("acme", "orders", wasm("inventory")).await.error(422, "invalid_component");
    assert_eq!(http.slices("acme").await["orders"], orders_hash);
    http.command("acme", "orders", "place-order", json!({"order_id": "o-2", "customer_id": "c"})).await.ok();

    // quota_exceeded: slices, then the log
    http.deploy("tiny", "orders", wasm("orders")).await.ok();
    http.deploy("tiny", "inventory", wasm("inventory")).await.error(403, "quota_exceeded");
    http.deploy("tiny", "orders", rebuilt(&wasm("orders"), "2")).await.ok(); // replacing is not adding
    for i in 0..2 {
        http.command("tiny", "orders", "place-order", json!({"order_id": format!("o-{i}"), "customer_id": "c"})).await.ok();
    }
    http.command("tiny", "orders", "place-order", json!({"order_id": "o-3", "customer_id": "c"})).await.error(403, "quota_exceeded");
    http.post(&t("tiny", "/events/append"), Some(&token("tiny")), &json!({"events": [{"type": "X"}]})).await.error(403, "quota_exceeded");
    assert_eq!(http.log("tiny").await.len(), 2);

    // rate_limited: 1 request per second, a burst of 2
    let slow = token("slow");
    let path = t("slow", "/slices");
    let replies = futures_util::future::join_all((0..6).map(|_| http.get(&path, Some(&slow)))).await;
    assert!(replies.iter().any(|r| r.status.is_success()), "the burst is admitted");
    let limited: Vec<&Reply> = replies.iter().filter(|r| !r.status.is_success()).collect();
    assert!(!limited.is_empty(), "6 requests at once exceed a burst of 2");
    for reply in limited {
        reply.error(429, "rate_limited");
    }

    // Errors are counted by status.
    let metrics = http.get("/metrics", Some(ADMIN)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for code in ["400", "401", "403", "404", "405", "409", "413", "422", "429", "502", "504"] {
        assert!(text.contains(&format!("counterpoint_http_errors_total{{code=\"{code}\"}}")), "{code} is counted: {text}");
    }
}

/// With every instance slot taken (two `spin`s hold both of a pool of two until their deadline,
/// 5 s here), a command waits for one (`instance_slot_wait_ms`, 1 s here, not the default
/// 2 s), then gets `503 slice_busy`; once the slots are free, it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_instance_pool_is_slice_busy() {
    let server = Server::configured("max_instances = 2\ninstance_slot_wait_ms = 1000", &[("acme", "deadline_ms = 5000")]).await;
    let http = &server.http;
    http.deploy("acme", "hostile", wasm("hostile")).await.ok();
    let spins: Vec<_> = (0..2)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move { http.command("acme", "hostile", "spin", json!({})).await })
        })
        .collect();
    eventually("both spins hold an instance", || async {
        let metrics = http.get("/metrics", Some(ADMIN)).await;
        String::from_utf8_lossy(&metrics.body).contains("counterpoint_live_instances 2")
    })
    .await;
    let asked = std::time::Instant::now();
    let busy = tokio::spawn({
        let http = http.clone();
        async move { http.command("acme", "hostile", "ok", json!({})).await }
    });
    eventually("the command waits for a slot", || async {
        let metrics = http.get("/metrics", Some(ADMIN)).await;
        String::from_utf8_lossy(&metrics.body).contains("counterpoint_instance_slot_waiters 1")
    })
    .await;
    busy.await.unwrap().error(503, "slice_busy");
    let waited = asked.elapsed();
    assert!(waited >= std::time::Duration::from_secs(1), "it waited for a slot first: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(2), "as long as configured, not the default: {waited:?}");
    for spin in spins {
        spin.await.unwrap().error(504, "slice_timeout");
    }
    assert_eq!(http.command("acme", "hostile", "ok", json!({})).await.ok()["result"]["count"], 1, "the busy command appended nothing");
}
