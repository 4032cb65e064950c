//! The host's own records (`counterpoint.*`: checkpoints, idempotency records) never reach
//! automations and read models, even when their query matches everything; and an automation
//! whose query matches its own checkpoints does not loop on them.

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};

use super::*;

/// The `catchall` slice's automation and read model, as the API reports them.
async fn catchall_status(http: &Http) -> (Value, Value) {
    let automations = http.get(&t("acme", "/automations"), Some(&token("acme"))).await.ok();
    let read_models = http.get(&t("acme", "/readmodels"), Some(&token("acme"))).await.ok();
    let find = |list: &Value, name: &str| list.as_array().unwrap().iter().find(|a| a["name"] == name).cloned().expect(name);
    (find(&automations["automations"], "echo"), find(&read_models["read_models"], "census"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automations_and_read_models_that_match_everything_get_no_host_records_and_do_not_loop() {
    let server = Server::start().await;
    let http = &server.http;
    http.deploy("acme", "catchall", wasm("catchall")).await.ok();
    const N: usize = 5;
    for n in 0..N {
        // Under an Idempotency-Key each command leaves a `counterpoint.idempotency` record too.
        let path = t("acme", "/slices/catchall/commands/nudge");
        let key = format!("nudge-{n}");
        http.send(Method::POST, &path, Some(&token("acme")), &[("idempotency-key", &key)], json!({"n": n}).to_string()).await.ok();
    }
    // An event of another kind, which both see and the automation ignores.
    http.post(&t("acme", "/events/append"), Some(&token("acme")), &json!({"events": [{"type": "Noted"}]})).await.ok();

    // Every nudge is answered, and both catch up with the log.
    eventually("the automation and the read model catch up", || async {
        let (echo, census) = catchall_status(http).await;
        http.events_of("acme", "Answered").await.len() == N && echo["lag"] == 0 && census["lag"] == 0
    })
    .await;

    // Once caught up, nothing more is appended: the automation's checkpoints, which its query
    // matches, do not make it write another.
    let settled = http.log("acme").await.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = http.log("acme").await;
    let grown: Vec<&Value> = log.iter().skip(settled).take(3).collect();
    assert_eq!(log.len(), settled, "the log keeps growing, with {grown:?} and more");
    let count = |event_type: &str| log.iter().filter(|e| e["type"] == event_type).count();
    assert_eq!((count("Nudged"), count("Answered"), count("counterpoint.idempotency")), (N, N, N));
    assert!(count("counterpoint.checkpoint") <= 2 * N + 1, "a checkpoint per batch of work at most: {}", count("counterpoint.checkpoint"));

    // Neither was handed a host record: both fail on one (a failure, a dead letter, an error).
    let (echo, census) = catchall_status(http).await;
    assert_eq!((&echo["failures"], &echo["dead_letters"], &echo["last_error"]), (&json!(0), &json!(0), &Value::Null), "{echo}");
    assert_eq!((&census["failures"], &census["last_error"]), (&json!(0), &Value::Null), "{census}");
    let counted = http.post(&t("acme", "/slices/catchall/readmodels/census"), Some(&token("acme")), &json!({})).await.ok();
    assert_eq!(counted["result"], json!({"Answered": N, "Noted": 1, "Nudged": N}));
}
