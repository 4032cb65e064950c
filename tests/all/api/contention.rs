//! A hot boundary over HTTP: many clients running commands on one boundary at once each get
//! a decision, never `409 conflict`; a tenant's `command_deadline_ms` bounds how long one waits;
//! `GET /v1/t/{tenant}/hot-boundaries` shows the queue while it lasts.

use serde_json::json;

use super::*;

/// A server whose tenant acme has the orders slice and an order `hot`.
async fn with_order_hot() -> Server {
    let server = Server::start().await;
    server.http.deploy("acme", "orders", wasm("orders")).await.ok();
    server.http.command("acme", "orders", "place-order", json!({"order_id": "hot", "customer_id": "c"})).await.ok();
    server
}

/// 64 clients adding an item each (`{sku}-0` ... `{sku}-63`) to acme's order `hot` at once.
fn add_items_at_once(http: &Http, sku: &str) -> Vec<tokio::task::JoinHandle<Reply>> {
    (0..64)
        .map(|i| {
            let (http, item) = (http.clone(), json!({"order_id": "hot", "sku": format!("{sku}-{i}"), "qty": 1, "price": 1}));
            tokio::spawn(async move { http.command("acme", "orders", "add-item", item).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_on_one_boundary_all_get_a_decision() {
    let server = with_order_hot().await;
    let http = &server.http;
    let clients = add_items_at_once(http, "sku");
    let mut reran = 0;
    for client in clients {
        let reply = client.await.unwrap();
        assert_eq!(reply.status.as_u16(), 200, "every valid command succeeds: {:?}", reply.json);
        reran += usize::from(reply.json["attempts"].as_u64().unwrap() > 1);
    }
    assert!(reran > 0, "the clients did race");
    assert_eq!(http.events_of("acme", "ItemAdded").await.len(), 64);
}

/// While clients queue on one order, the tenant's hot boundaries name it (its types and its
/// tag), with more than one command queued and one running in its turn; another tenant sees none
/// of it; once every client is answered, nothing is hot. `/metrics` counts the turns queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_boundaries_clients_queue_on_are_listed_while_they_queue() {
    let server = with_order_hot().await;
    let http = &server.http;
    let listed = |tenant: &'static str| {
        let http = http.clone();
        async move { http.get(&t(tenant, "/hot-boundaries"), Some(&token(tenant))).await.ok()["hot_boundaries"].as_array().unwrap().clone() }
    };
    let turns_gauge = || {
        let http = http.clone();
        async move {
            let metrics = http.get("/metrics", Some(ADMIN)).await;
            let text = String::from_utf8_lossy(&metrics.body).to_string();
            let line = text.lines().find(|l| l.starts_with("counterpoint_hot_boundary_turns ")).expect("the gauge").to_string();
            line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        }
    };
    assert_eq!(listed("acme").await, Vec::<serde_json::Value>::new(), "nothing contended yet");
    let (mut seen, mut most_turns) = (None, 0);
    for burst in 0..10 {
        let clients = add_items_at_once(http, &format!("sku-{burst}"));
        while !clients.iter().all(|client| client.is_finished()) && (seen.is_none() || most_turns < 2) {
            let hot = listed("acme").await;
            seen = seen.or(hot.into_iter().find(|b| b["queued"].as_u64().unwrap() > 1 && b["running"] == json!(true)));
            // The gauge counts every tenant's (other tests' too): at least this order's queue.
            most_turns = most_turns.max(turns_gauge().await);
            assert_eq!(listed("globex").await, Vec::<serde_json::Value>::new(), "another tenant's log");
        }
        for client in clients {
            assert_eq!(client.await.unwrap().status.as_u16(), 200);
        }
        if seen.is_some() && most_turns >= 2 {
            break;
        }
    }
    let seen = seen.expect("a queue seen in one of ten bursts of 64 clients");
    assert!(seen["tags"].as_array().unwrap().contains(&json!("order_id:hot")), "{seen}");
    assert!(!seen["types"].as_array().unwrap().is_empty(), "{seen}");
    assert!(most_turns >= 2, "counterpoint_hot_boundary_turns saw the queue: {most_turns}");
    assert_eq!(listed("acme").await, Vec::<serde_json::Value>::new(), "every client answered: cooled down");
}

#[tokio::test]
async fn command_deadline_ms_is_a_checked_tenant_limit() {
    let err = counterpoint::tenants::Config::parse("[tenants.acme.limits]\ncommand_deadline_ms = 0\n").unwrap_err();
    assert!(err.contains("tenants.acme.limits.command_deadline_ms"), "{err}");
    let server = Server::with(&[("acme", "command_deadline_ms = 2500")]).await;
    let tenants = server.http.get("/v1/admin/tenants", Some(ADMIN)).await.ok();
    assert_eq!(tenants["tenants"][0]["limits"]["command_deadline_ms"], 2500);
}
