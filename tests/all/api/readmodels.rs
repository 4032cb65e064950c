//! Persistent read models over HTTP: the list with checkpoints and lag, a query that waits for
//! the position a command returned, a rebuild, and clear errors for what does not exist.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_answer_list_and_rebuild_over_http() {
    let mut server = Server::start().await;
    let acme = token("acme");
    let acme = Some(acme.as_str());
    server.http.deploy("acme", "inventory", wasm("inventory")).await.ok();
    let query_path = t("acme", "/slices/inventory/readmodels/stock-levels");

    let received = server.http.command("acme", "inventory", "receive-stock", json!({"sku": "apple", "qty": 5})).await.ok();
    let at = received["positions"][0].as_str().expect("a position is a decimal string").to_string();
    // The answer includes the command's event: the query waited for its position.
    let answer = server.http.post(&format!("{query_path}?at_least={at}"), acme, &json!({"sku": "apple"})).await.ok();
    assert_eq!(answer["result"], json!([{"sku": "apple", "received": 5, "reserved": 0, "available": 5}]));
    let all = server.http.post(&query_path, acme, &json!({})).await.ok();
    assert_eq!(all["result"].as_array().map(Vec::len), Some(1));

    let list = server.http.get(&t("acme", "/readmodels"), acme).await.ok();
    let model = &list["read_models"][0];
    assert_eq!((&model["slice"], &model["name"], &model["lag"], &model["keys"]), (&json!("inventory"), &json!("stock-levels"), &json!(0), &json!(1)));
    assert_eq!(model["checkpoint"], at);
    // Described with the slice, for clients and the console.
    let described = server.http.get(&t("acme", "/slices/inventory"), acme).await.ok();
    assert_eq!(described["description"]["read_models"][0]["name"], "stock-levels", "{described:?}");

    // A rebuild starts over in the background and comes back to the same state.
    let rebuild = server.http.post(&t("acme", "/readmodels/inventory/stock-levels/rebuild"), acme, &json!({})).await;
    assert_eq!(rebuild.status.as_u16(), 202, "{:?}", rebuild.json);
    let again = server.http.post(&format!("{query_path}?at_least={at}&wait_ms=10000"), acme, &json!({"sku": "apple"})).await.ok();
    assert_eq!(again["result"], answer["result"]);

    // The state survives a restart; the worker resumes from its checkpoint.
    server.restart().await;
    let more = server.http.command("acme", "inventory", "receive-stock", json!({"sku": "apple", "qty": 1})).await.ok();
    let after_restart =
        server.http.post(&format!("{query_path}?at_least={}", more["positions"][0].as_str().unwrap()), acme, &json!({"sku": "apple"})).await.ok();
    assert_eq!(after_restart["result"][0]["received"], 6);

    // Errors: unknown names, a bad position, a position the model cannot reach in time, another tenant.
    server.http.post(&t("acme", "/slices/inventory/readmodels/nope"), acme, &json!({})).await.error(404, "not_found");
    server.http.post(&t("acme", "/slices/nope/readmodels/stock-levels"), acme, &json!({})).await.error(404, "not_found");
    server.http.post(&t("acme", "/readmodels/inventory/nope/rebuild"), acme, &json!({})).await.error(404, "not_found");
    server.http.post(&format!("{query_path}?at_least=soon"), acme, &json!({})).await.error(400, "invalid_input");
    server.http.post(&format!("{query_path}?wait_ms=many"), acme, &json!({})).await.error(400, "invalid_input");
    server.http.post(&query_path, acme, &json!({"sku": 7})).await.error(400, "invalid_input");
    // An event of the model's source far in the future: never reached.
    let waiting = server.http.post(&format!("{query_path}?at_least=1000000&wait_ms=50"), acme, &json!({})).await;
    assert_eq!(waiting.status.as_u16(), 200, "no event of the source lies before that position: the state is current");
    server.http.get(&t("acme", "/readmodels"), Some(&token("globex"))).await.error(403, "forbidden");
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}
