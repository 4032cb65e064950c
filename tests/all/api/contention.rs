//! A hot boundary over HTTP: many clients running commands on one boundary at once each get
//! a decision, never `409 conflict`; a tenant's `command_deadline_ms` bounds how long one waits.

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_on_one_boundary_all_get_a_decision() {
    let server = Server::start().await;
    let http = &server.http;
    http.deploy("acme", "orders", wasm("orders")).await.ok();
    http.command("acme", "orders", "place-order", json!({"order_id": "hot", "customer_id": "c"})).await.ok();
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let http = http.clone();
            tokio::spawn(async move {
                http.command("acme", "orders", "add-item", json!({"order_id": "hot", "sku": format!("sku-{i}"), "qty": 1, "price": 1})).await
            })
        })
        .collect();
    let mut reran = 0;
    for client in clients {
        let reply = client.await.unwrap();
        assert_eq!(reply.status.as_u16(), 200, "every valid command succeeds: {:?}", reply.json);
        reran += usize::from(reply.json["attempts"].as_u64().unwrap() > 1);
    }
    assert!(reran > 0, "the clients did race");
    assert_eq!(http.events_of("acme", "ItemAdded").await.len(), 64);
}

#[tokio::test]
async fn command_deadline_ms_is_a_checked_tenant_limit() {
    let err = counterpoint::tenants::Config::parse("[tenants.acme.limits]\ncommand_deadline_ms = 0\n").unwrap_err();
    assert!(err.contains("tenants.acme.limits.command_deadline_ms"), "{err}");
    let server = Server::with(&[("acme", "command_deadline_ms = 2500")]).await;
    let tenants = server.http.get("/v1/admin/tenants", Some(ADMIN)).await.ok();
    assert_eq!(tenants["tenants"][0]["limits"]["command_deadline_ms"], 2500);
}
