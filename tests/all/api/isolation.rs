//! Tenant isolation: one tenant's token can do nothing to another tenant; the admin's can do
//! everything to every tenant.

use axum::http::Method;
use serde_json::json;

use super::*;

/// Every tenant route, as (method, path, body).
fn routes(tenant: &str) -> Vec<(Method, String, Vec<u8>)> {
    vec![
        (Method::GET, t(tenant, "/slices"), vec![]),
        (Method::GET, t(tenant, "/slices/orders"), vec![]),
        (Method::PUT, t(tenant, "/slices/orders"), wasm("orders")),
        (Method::DELETE, t(tenant, "/slices/orders"), vec![]),
        (Method::POST, t(tenant, "/slices/orders/commands/place-order"), br#"{"order_id":"evil","customer_id":"x"}"#.to_vec()),
        (Method::POST, t(tenant, "/slices/orders/projections/order-summary"), br#"{"order_id":"b-1"}"#.to_vec()),
        (Method::POST, t(tenant, "/events/read"), b"{}".to_vec()),
        (Method::POST, t(tenant, "/events/append"), br#"{"events":[{"type":"Evil"}]}"#.to_vec()),
        (Method::GET, t(tenant, "/events/stream"), vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_can_do_nothing_to_another_tenant() {
    let server = Server::start().await;
    let http = &server.http;
    // Both tenants have orders and data, deployed by the admin.
    for tenant in ["acme", "globex"] {
        http.deploy(tenant, "orders", wasm("orders")).await.ok();
    }
    http.command("globex", "orders", "place-order", json!({"order_id": "b-1", "customer_id": "bob"})).await.ok();
    http.command("acme", "orders", "place-order", json!({"order_id": "a-1", "customer_id": "ann"})).await.ok();
    let globex_log = http.log("globex").await;
    let globex_slices = http.slices("globex").await;

    let acme = token("acme");
    for (method, path, body) in routes("globex") {
        let reply = http.send(method.clone(), &path, Some(&acme), &[], body).await;
        assert_eq!((reply.status.as_u16(), reply.code()), (403, "forbidden"), "{method} {path} with acme's token");
        assert!(!String::from_utf8_lossy(&reply.body).contains("b-1"), "nothing of globex's leaks in the error");
    }
    // Nothing changed at globex.
    assert_eq!(http.log("globex").await, globex_log);
    assert_eq!(http.slices("globex").await, globex_slices);

    // globex's data is never visible through acme's routes.
    let acme = Some(acme.as_str());
    let own = http.post(&t("acme", "/events/read"), acme, &json!({})).await.ok();
    let own = own["events"].as_array().unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["data"]["json"]["order_id"], "a-1");
    let summary = http.project("acme", "orders", "order-summary", json!({"order_id": "b-1"})).await;
    assert!(!summary.body.windows(3).any(|w| w == b"bob"), "acme's projection sees no globex event: {}", summary.json);
    let customer = http.project("acme", "orders", "customer-orders", json!({"customer_id": "bob"})).await.ok();
    assert!(!customer.to_string().contains("b-1"), "{customer}");
    // A globex order id is free at acme: the logs are separate.
    http.command("acme", "orders", "place-order", json!({"order_id": "b-1", "customer_id": "ann"})).await.ok();
    assert_eq!(http.log("globex").await, globex_log);

    // A slice deployed at one tenant only is unknown at the other.
    http.deploy("globex", "inventory", wasm("inventory")).await.ok();
    http.command("acme", "inventory", "receive-stock", json!({"sku": "s", "qty": 1})).await.error(404, "not_found");
    assert!(!http.slices("acme").await.contains_key("inventory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_works_for_every_tenant() {
    let server = Server::start().await;
    let http = &server.http;
    for tenant in ["acme", "globex"] {
        for (method, path, body) in routes(tenant) {
            if path.ends_with("/events/stream") {
                // An open stream: the headers say it is SSE; reading it is the stream tests' job.
                let request = http.request(Method::GET, &path, Some(ADMIN), &[]).body(full("")).unwrap();
                let response = http.client.request(request).await.unwrap();
                assert_eq!(response.status().as_u16(), 200);
                assert_eq!(response.headers()["content-type"], "text/event-stream");
                continue;
            }
            let reply = http.send(method.clone(), &path, Some(ADMIN), &[], body).await;
            // The DELETE removes what the PUT deployed; the GETs before it see no slice yet.
            let expected = match (method.as_str(), path.rsplit('/').next().unwrap()) {
                ("GET", "orders") => 404,
                ("DELETE", _) => 204,
                ("POST", "place-order" | "order-summary") => 404, // removed just before
                _ => 200,
            };
            assert_eq!(reply.status.as_u16(), expected, "{method} {path} with the admin token: {}", reply.json);
        }
        let log = http.log(tenant).await;
        assert_eq!(log.len(), 1, "the admin's append landed at {tenant}");
        assert_eq!(log[0]["type"], "Evil");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked() {
    let server = Server::start().await;
    let http = &server.http;
    let path = t("acme", "/slices");
    http.get(&path, None).await.error(401, "unauthorized");
    http.get(&path, Some("token-of-nobody")).await.error(401, "unauthorized");
    // The hash of a token is not the token.
    http.get(&path, Some(&hash_token(&token("acme")))).await.error(401, "unauthorized");
    let basic = http.send(Method::GET, &path, None, &[("authorization", "Basic YWNtZTpzZWNyZXQ=")], "").await;
    basic.error(401, "unauthorized");
    http.get(&path, Some(&token("acme"))).await.ok();
    // A tenant that does not exist: not found for the admin, forbidden for a tenant's token.
    http.get(&t("nobody", "/slices"), Some(ADMIN)).await.error(404, "not_found");
    http.get(&t("nobody", "/slices"), Some(&token("acme"))).await.error(403, "forbidden");
}
