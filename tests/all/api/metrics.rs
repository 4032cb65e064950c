//! `/metrics` names every tenant and slice: it takes the metrics token or the admin token, not a
//! tenant's; without a metrics token the admin token alone reads it; `metrics_public` opens it.

use counterpoint::tenants::hash_token;

use super::*;

const SCRAPER: &str = "scraper-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_or_the_admin_token() {
    let server = Server::configured(&format!("metrics_token_sha256 = \"{}\"", hash_token(SCRAPER)), &[("acme", "")]).await;
    let http = &server.http;
    http.get("/metrics", None).await.error(401, "unauthorized");
    http.get("/metrics", Some("not-a-token")).await.error(401, "unauthorized");
    http.get("/metrics", Some(&token("acme"))).await.error(403, "forbidden");
    for allowed in [SCRAPER, ADMIN] {
        let reply = http.get("/metrics", Some(allowed)).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", String::from_utf8_lossy(&reply.body));
        assert!(String::from_utf8_lossy(&reply.body).contains("counterpoint_live_instances"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_metrics_token_only_the_admin_reads_metrics_unless_they_are_public() {
    let server = Server::configured("", &[("acme", "")]).await;
    server.http.get("/metrics", None).await.error(401, "unauthorized");
    server.http.get("/metrics", Some(&token("acme"))).await.error(403, "forbidden");
    server.http.get("/metrics", Some(ADMIN)).await.ok();

    let public = Server::configured("metrics_public = true", &[("acme", "")]).await;
    let reply = public.http.get("/metrics", None).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", String::from_utf8_lossy(&reply.body));

    let err = Config::parse("metrics_token_sha256 = \"plain-token\"").unwrap_err();
    assert!(err.contains("metrics_token_sha256"), "{err}");
}
