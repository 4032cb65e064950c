//! A slice or a tenant cannot starve others: a command waiting on the host is cancelled at its
//! deadline and gives back its slot and its tenant's invocation permit.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_command_is_a_timeout_and_frees_its_slot_and_permit() {
    let server = Server::configured("max_instances = 1", &[("acme", "deadline_ms = 300\nconcurrent_invocations = 1")]).await;
    let http = &server.http;
    http.deploy("acme", "hostile", wasm("hostile")).await.ok();
    let started = Instant::now();
    let reply = within("the sleeping command", http.command("acme", "hostile", "sleep", json!({}))).await;
    reply.error(504, "slice_timeout");
    let message = reply.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("hostile") && message.contains("300 ms"), "names the slice and the limit: {message}");
    assert!(started.elapsed() < Duration::from_millis(300) + Duration::from_secs(5), "ended near its deadline");
    // One slot, one permit: both came back.
    assert_eq!(http.command("acme", "hostile", "ok", json!({})).await.ok()["result"]["count"], 1);
    assert_eq!(http.log("acme").await.len(), 1, "the cancelled command appended nothing");
}
