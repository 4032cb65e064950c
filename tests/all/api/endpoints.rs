//! Every endpoint, used as a client would.

use axum::http::Method;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_does_what_it_says() {
    let server = Server::start().await;
    let http = &server.http;
    let acme = token("acme");
    let acme = Some(acme.as_str());

    // Probes and documents, without a token.
    let health = http.get("/healthz", None).await;
    assert_eq!((health.status.as_u16(), &health.body[..]), (200, &b"ok"[..]));
    let ready = http.get("/readyz", None).await;
    assert_eq!((ready.status.as_u16(), &ready.body[..]), (200, &b"ready"[..]));
    let openapi = http.get("/v1/openapi.json", None).await;
    assert_eq!(openapi.status.as_u16(), 200);
    assert!(openapi.json["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{}", openapi.json);
    let paths = openapi.json["paths"].as_object().expect("the document lists paths");
    for path in [
        "/v1/t/{tenant}/slices",
        "/v1/t/{tenant}/slices/{slice}",
        "/v1/t/{tenant}/slices/{slice}/commands/{command}",
        "/v1/t/{tenant}/slices/{slice}/projections/{projection}",
        "/v1/t/{tenant}/events/read",
        "/v1/t/{tenant}/events/append",
        "/v1/t/{tenant}/events/stream",
        "/v1/t/{tenant}/hot-boundaries",
    ] {
        assert!(paths.contains_key(path), "the OpenAPI document describes {path}: {:?}", paths.keys());
    }

    // Slices: deploy, list, describe.
    let orders = wasm("orders");
    let deployed = http.deploy("acme", "orders", orders.clone()).await.ok();
    assert_eq!(deployed["name"], "orders");
    assert_eq!(deployed["hash"], sha256_hex(&orders));
    assert_eq!(deployed["size"], orders.len());
    assert!(deployed["contract"].as_str().unwrap().starts_with("counterpoint:slice@"));
    let commands: Vec<&str> =
        deployed["description"]["commands"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(commands.contains(&"place-order") && commands.contains(&"add-item"), "{commands:?}");
    http.deploy("acme", "inventory", wasm("inventory")).await.ok();
    let list = http.get(&t("acme", "/slices"), acme).await.ok();
    let names: Vec<&str> = list["slices"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inventory", "orders"]);
    let described = http.get(&t("acme", "/slices/orders"), acme).await.ok();
    assert_eq!(described["hash"], sha256_hex(&orders));
    assert_eq!(described["version"], deployed["version"]);

    // Commands: the result and the positions appended.
    let placed = http.command("acme", "orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.ok();
    assert_eq!(placed["result"]["order_id"], "o-1");
    assert_eq!(placed["attempts"], 1);
    let positions = placed["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 1);
    let added = http.command("acme", "orders", "add-item", json!({"order_id": "o-1", "sku": "apple", "qty": 3, "price": 50})).await.ok();
    assert_eq!(added["result"]["total"], 150);
    assert!(position(&added["positions"][0]) > position(&positions[0]));
    http.command("acme", "inventory", "receive-stock", json!({"sku": "apple", "qty": 10})).await.ok();

    // Projections.
    let summary = http.project("acme", "orders", "order-summary", json!({"order_id": "o-1"})).await.ok();
    assert_eq!(summary["result"]["total"], 150, "{summary}");
    let customer = http.project("acme", "orders", "customer-orders", json!({"customer_id": "c-1"})).await.ok();
    assert!(customer["result"].to_string().contains("o-1"), "{customer}");
    let stock = http.project("acme", "inventory", "stock-level", json!({"sku": "apple"})).await.ok();
    assert!(stock["result"].to_string().contains("10"), "{stock}");

    // The raw DCB API: read by query, forwards and backwards, paged.
    let read = http.post(&t("acme", "/events/read"), acme, &json!({"query": {"items": [{"types": ["OrderPlaced"]}]}})).await.ok();
    let events = read["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["position"], positions[0]);
    assert_eq!(events[0]["data"]["json"]["order_id"], "o-1");
    assert!(position(&read["position"]) >= position(&positions[0]));
    let all = http.post(&t("acme", "/events/read"), acme, &json!({})).await.ok();
    assert_eq!(all["events"].as_array().unwrap().len(), 3);
    let last = http.post(&t("acme", "/events/read"), acme, &json!({"backwards": true, "limit": 1})).await.ok();
    assert_eq!(last["events"][0], all["events"][2]);
    let page = http.post(&t("acme", "/events/read"), acme, &json!({"after": positions[0], "limit": 1})).await.ok();
    assert_eq!(page["events"][0], all["events"][1]);

    // Append: JSON and base64 data, metadata, a condition that holds.
    let head = all["events"][2]["position"].clone();
    let appended = http
        .post(
            &t("acme", "/events/append"),
            acme,
            &json!({
                "events": [
                    {"type": "Noted", "tags": ["note:1"], "data": {"json": {"text": "hi"}}, "metadata": {"by": "test"}},
                    {"type": "Noted", "tags": ["note:2"], "data": {"base64": "AAEC/w=="}},
                ],
                "conditions": [{"query": {"items": [{"types": ["Noted"]}]}, "after": head}],
            }),
        )
        .await
        .ok();
    let new_positions = appended["positions"].as_array().unwrap();
    assert_eq!(new_positions.len(), 2);
    let notes = http.post(&t("acme", "/events/read"), acme, &json!({"query": {"items": [{"types": ["Noted"]}]}})).await.ok();
    let notes = notes["events"].as_array().unwrap();
    assert_eq!(notes[0]["data"], json!({"json": {"text": "hi"}}));
    assert_eq!(notes[0]["tags"], json!(["note:1"]));
    assert_eq!(notes[0]["metadata"], json!({"by": "test"}));
    assert_eq!(notes[1]["data"], json!({"base64": "AAEC/w=="}), "bytes that are not MessagePack come back as base64");
    assert_eq!(notes[0]["position"], new_positions[0]);

    // Metrics: commands by slice and outcome, deploys, workers.
    let metrics = http.get("/metrics", Some(ADMIN)).await;
    assert_eq!(metrics.status.as_u16(), 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines().any(|l| l.starts_with("counterpoint_commands_total{") && l.contains("slice=\"orders\"") && l.contains("outcome=\"ok\"") && l.ends_with(" 2")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("counterpoint_deploys_total") && l.ends_with(" 2")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("counterpoint_deployed_slices") && l.ends_with(" 2")), "{text}");
    // The background workers: inventory's automation and read model follow the log here.
    for (kind, name) in [("automation", "reserve-on-confirm"), ("read_model", "stock-levels")] {
        assert!(
            text.lines().any(|l| l.starts_with("counterpoint_worker_active{") && l.contains(&format!("kind=\"{kind}\"")) && l.contains(&format!("name=\"{name}\"")) && l.ends_with(" 1")),
            "{kind} {name}: {text}"
        );
    }

    // Remove a slice: it is gone, its events stay.
    let removed = http.send(Method::DELETE, &t("acme", "/slices/inventory"), acme, &[], "").await;
    assert_eq!(removed.status.as_u16(), 204);
    http.get(&t("acme", "/slices/inventory"), acme).await.error(404, "not_found");
    http.command("acme", "inventory", "receive-stock", json!({"sku": "apple", "qty": 1})).await.error(404, "not_found");
    assert_eq!(http.events_of("acme", "StockReceived").await.len(), 1);
    assert_eq!(http.slices("acme").await.keys().collect::<Vec<_>>(), ["orders"]);
}

#[tokio::test]
async fn the_console_is_served_from_the_binary() {
    let server = super::Server::start().await;
    let page = server.http.get("/console", None).await;
    assert_eq!(page.status.as_u16(), 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<title>Counterpoint console</title>"), "{html:.200}");
    // It drives the same API as every other client, with the tenant's token.
    for path in ["/slices", "/events/read", "/events/stream", "/automations", "/hot-boundaries", "Authorization"] {
        assert!(html.contains(path), "the console uses {path}");
    }
}
