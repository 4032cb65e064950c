//! Managing tenants with the admin token: a created tenant gets a token that works at once, only
//! for itself; it survives a restart; removing it stops its token; tenants of the configuration
//! file cannot be removed through the API; nobody but the admin manages tenants. And the
//! configuration's `[store]` section is checked when it loads.

use axum::http::Method;
use serde_json::json;

use counterpoint::tenants::Config;

use super::{t, token, wasm, Server, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_creates_lists_and_removes_tenants() {
    let mut server = Server::start().await;
    let http = &server.http;
    // Only the admin manages tenants.
    http.post("/v1/admin/tenants", Some(&token("acme")), &json!({"name": "initech"})).await.error(403, "forbidden");
    http.post("/v1/admin/tenants", None, &json!({"name": "initech"})).await.error(401, "unauthorized");
    http.post("/v1/admin/tenants", Some(ADMIN), &json!({"name": "Bad Name"})).await.error(400, "invalid_input");
    http.post("/v1/admin/tenants", Some(ADMIN), &json!({"name": "acme"})).await.error(409, "conflict");

    let created = http.post("/v1/admin/tenants", Some(ADMIN), &json!({"name": "initech", "limits": {"max_slices": 1}})).await.ok();
    let initech = created["token"].as_str().expect("a token").to_string();
    assert_eq!(initech.len(), 64);
    http.deploy_as(&initech, "initech", "orders", wasm("orders")).await.ok();
    http.deploy_as(&initech, "initech", "inventory", wasm("inventory")).await.error(403, "quota_exceeded");
    let placed = http
        .send(Method::POST, &t("initech", "/slices/orders/commands/place-order"), Some(&initech), &[], json!({"order_id": "o", "customer_id": "c"}).to_string())
        .await
        .ok();
    assert_eq!(placed["result"]["status"], "placed");
    // Its token is its own, and nobody else's works for it.
    http.get(&t("acme", "/slices"), Some(&initech)).await.error(403, "forbidden");
    http.get(&t("initech", "/slices"), Some(&token("acme"))).await.error(403, "forbidden");
    let listed = http.get("/v1/admin/tenants", Some(ADMIN)).await.ok();
    let names: Vec<&str> = listed["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme", "globex", "initech"]);

    // It survives a restart, with its limits, slices and log.
    server.restart().await;
    let http = &server.http;
    http.get(&t("initech", "/slices/orders"), Some(&initech)).await.ok();
    http.deploy_as(&initech, "initech", "inventory", wasm("inventory")).await.error(403, "quota_exceeded");

    // Configured tenants are managed in the file; created ones can be removed, and then their
    // token stops working.
    http.send(Method::DELETE, "/v1/admin/tenants/acme", Some(ADMIN), &[], "").await.error(409, "conflict");
    let removed = http.send(Method::DELETE, "/v1/admin/tenants/initech", Some(ADMIN), &[], "").await;
    assert_eq!(removed.status.as_u16(), 204);
    http.get(&t("initech", "/slices"), Some(&initech)).await.error(401, "unauthorized");
    http.send(Method::DELETE, "/v1/admin/tenants/initech", Some(ADMIN), &[], "").await.error(404, "not_found");
    server.restart().await;
    server.http.get(&t("initech", "/slices"), Some(&initech)).await.error(401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn the_store_section_is_checked_when_the_configuration_loads() {
    let err = Config::parse("[store]\nkind = \"postgres\"\n").unwrap_err();
    assert!(err.contains("store.kind") && err.contains("\"embedded\" or \"fdb\""), "{err}");
    let err = Config::parse("[store]\nkind = \"fdb\"\nprefix = \"\"\n").unwrap_err();
    assert!(err.contains("prefix"), "{err}");
    let err = Config::parse("[store]\nkind = \"fdb\"\nclusterfile = \"/etc/fdb.cluster\"\n").unwrap_err();
    assert!(err.contains("clusterfile"), "an unknown key is named: {err}");
    let err = Config::parse("[store]\ngroup_commit_window_us = 100001\n").unwrap_err();
    assert!(err.contains("store.group_commit_window_us: 100001 is more than 100000"), "{err}");
    let config = Config::parse("[store]\ngroup_commit_window_us = 250\n").unwrap();
    assert_eq!(config.store.embedded_options().group_commit_window, std::time::Duration::from_micros(250));
    assert_eq!(Config::parse("").unwrap().store.embedded_options().group_commit_window, std::time::Duration::ZERO, "none by default");
    let err = Config::parse("max_instances = 0\n").unwrap_err();
    assert!(err.contains("max_instances"), "{err}");
    let err = Config::parse("instance_slot_wait_ms = 60001\n").unwrap_err();
    assert!(err.contains("instance_slot_wait_ms: 60001 is more than 60000"), "{err}");
    assert_eq!(Config::parse("").unwrap().instance_slot_wait_ms, 2000, "2 s by default");
    let err = Config::parse("[tenants.acme.limits]\ndeadline_ms = 0\n").unwrap_err();
    assert!(err.contains("tenants.acme.limits.deadline_ms"), "{err}");
    // A build without FoundationDB says how to get one instead of failing later.
    #[cfg(not(feature = "fdb"))]
    {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!("data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n[store]\nkind = \"fdb\"\n", dir.path().display().to_string())).unwrap();
        let err = counterpoint::api::spawn_server(&config).await.err().expect("no FoundationDB in this build");
        assert!(format!("{err:#}").contains("--features fdb"), "{err:#}");
    }
}

/// A host configured with no tenant yet starts (its drop zones' root is made for the tenants to
/// come), and a tenant created over the API deploys and runs.
#[tokio::test]
async fn a_host_with_no_tenant_yet_starts_and_takes_one_created_later() {
    let server = Server::with(&[]).await;
    let http = &server.http;
    let created = http.post("/v1/admin/tenants", Some(ADMIN), &json!({"name": "initech"})).await.ok();
    let initech = created["token"].as_str().expect("a token").to_string();
    http.deploy_as(&initech, "initech", "orders", wasm("orders")).await.ok();
    let placed = http
        .send(Method::POST, &t("initech", "/slices/orders/commands/place-order"), Some(&initech), &[], json!({"order_id": "o", "customer_id": "c"}).to_string())
        .await
        .ok();
    assert_eq!(placed["result"]["status"], "placed");
}
