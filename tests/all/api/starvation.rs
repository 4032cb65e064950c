//! A slice or a tenant cannot starve others: a command waiting on the host is cancelled at its
//! deadline and gives back its slot and its tenant's invocation permit; uploads are bounded in
//! size, rate and compile time, refused before compiling when they can be, and collected when no
//! one runs them.

use std::time::{Duration, Instant};

use axum::http::Method;
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

/// A build of `name` no other test (or run) has: its hash, and so its compiled code, is new.
fn fresh(name: &str, what: &str) -> Vec<u8> {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    rebuilt(&wasm(name), &format!("{what}-{nonce}"))
}

/// The compile cache's entries for the component whose bytes hash to `hash`.
fn cached(server: &Server, hash: &str) -> Vec<String> {
    std::fs::read_dir(server.data_dir().join("cache"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(hash))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_tenants_size_is_refused() {
    // orders is about 430 kB, hostile about 940 kB.
    let server = Server::with(&[("acme", "max_component_bytes = 600000")]).await;
    let http = &server.http;
    let reply = http.deploy_as(&token("acme"), "acme", "hostile", wasm("hostile")).await;
    reply.error(413, "payload_too_large");
    assert!(reply.json["error"]["message"].as_str().unwrap().contains("600000"), "{:?}", reply.json);
    http.deploy_as(&token("acme"), "acme", "orders", wasm("orders")).await.ok();
    assert_eq!(http.slices("acme").await.keys().collect::<Vec<_>>(), ["orders"]);
}

/// A client that sends a whole upload before reading the answer (as `curl` does below 1 MiB, and
/// most HTTP libraries always) gets the refusal, not a broken pipe: what is refused is read and
/// dropped, not left unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_while_its_client_is_still_sending() {
    let server = Server::with(&[("acme", "max_component_bytes = 600000")]).await;
    let http = &server.http;
    // Far more than the socket buffers hold: the client is still writing when it is refused.
    let junk = vec![7u8; 16 << 20];
    let declared = http.deploy_as(&token("acme"), "acme", "hostile", junk.clone()).await;
    declared.error(413, "payload_too_large");
    assert!(declared.json["error"]["message"].as_str().unwrap().contains("600000"), "{:?}", declared.json);
    // Sent in chunks, without a length: refused once past the limit, as it is read.
    let chunks = junk.chunks(64 << 10).map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::copy_from_slice(c))));
    let streamed = http_body_util::StreamBody::new(futures_util::stream::iter(chunks.collect::<Vec<_>>())).boxed_unsync();
    let request = http.request(Method::PUT, &t("acme", "/slices/hostile"), Some(&token("acme")), &[]).body(streamed).unwrap();
    let response = http.client.request(request).await.expect("an answer, not a broken pipe");
    assert_eq!(response.status(), 413);
    http.deploy_as(&token("acme"), "acme", "orders", wasm("orders")).await.ok();
    assert_eq!(http.slices("acme").await.keys().collect::<Vec<_>>(), ["orders"]);
}

/// An upload's head written on a socket of its own: `PUT` of acme's `hostile`, with `headers`.
async fn raw_upload(server: &Server, headers: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(server.http.address).await.unwrap();
    let path = t("acme", "/slices/hostile");
    let head = raw_head("PUT", &path, &token("acme"), headers);
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// A request's head as a client writes it: method, path, the bearer token, then `headers` (each
/// ending in CRLF).
fn raw_head(method: &str, path: &str, token: &str, headers: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: counterpoint\r\nauthorization: Bearer {token}\r\n{headers}\r\n")
}

/// Asserts the connection is still open: a next request on it is answered.
async fn answers_a_next_request(reader: &mut (impl tokio::io::AsyncRead + Unpin), writer: &mut (impl tokio::io::AsyncWrite + Unpin)) {
    use tokio::io::AsyncWriteExt;
    writer.write_all(raw_head("GET", &t("acme", "/slices"), &token("acme"), "").as_bytes()).await.unwrap();
    let next = read_answer(reader).await;
    assert!(next.starts_with("http/1.1 200"), "{next}");
}

/// Reads one answer's head (up to its blank line), lower-cased.
async fn read_head(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(within("an answer", socket.read(&mut byte)).await.unwrap(), 1, "closed before an answer: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

/// A client that asks `Expect: 100-continue` is refused before it sends its body, and the
/// connection is closed after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_waiting_for_100_continue_is_refused_before_its_body_is_sent() {
    use tokio::io::AsyncReadExt;
    let server = Server::with(&[("acme", "max_component_bytes = 600000")]).await;
    let mut socket = raw_upload(&server, &format!("content-length: {}\r\nexpect: 100-continue\r\n", 16 << 20)).await;
    let mut answer = Vec::new();
    within("the answer, then the connection closed", socket.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close") && answer.contains("payload_too_large"), "{answer}");
    assert!(!answer.contains("100 continue"), "{answer}");
}

/// A client that waited for `100 Continue` and then sends a body without a length, past the
/// limit, is refused as it sends and still gets the answer: what it sends after is read and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_after_100_continue_is_refused_past_the_limit_and_answered() {
    use tokio::io::AsyncWriteExt;
    let server = Server::with(&[("acme", "max_component_bytes = 600000")]).await;
    let socket = raw_upload(&server, "transfer-encoding: chunked\r\nexpect: 100-continue\r\n").await;
    let (mut reader, mut writer) = socket.into_split();
    let continued = read_head(&mut reader).await;
    assert!(continued.starts_with("http/1.1 100 continue"), "{continued}");
    // 16 MiB in 64 KiB chunks, far past the limit and the socket buffers. The writing half is
    // kept (dropping it would half-close the connection, which the server takes as the client gone).
    let sending = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "x".repeat(64 << 10));
        for _ in 0..256 {
            writer.write_all(chunk.as_bytes()).await?;
        }
        writer.write_all(b"0\r\n\r\n").await.map(|()| writer)
    });
    let refused = read_answer(&mut reader).await;
    assert!(refused.starts_with("http/1.1 413") && refused.contains("payload_too_large"), "{refused}");
    within("the body sent", sending).await.unwrap().expect("the whole body written, no broken pipe");
}

/// One answer, head and body (by its `content-length`), lower-cased.
async fn read_answer(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let head = read_head(socket).await;
    let length: usize = head.split("content-length: ").nth(1).and_then(|rest| rest.split("\r\n").next()?.parse().ok()).expect("a length");
    let mut body = vec![0u8; length];
    within("the answer's body", tokio::io::AsyncReadExt::read_exact(socket, &mut body)).await.unwrap();
    head + &String::from_utf8_lossy(&body).to_lowercase()
}

/// A request refused before its handler read its body (an upload with a wrong token, 4 MiB on
/// the way) keeps its connection once the body is read and dropped: the next request on it is
/// answered. One over the limit in chunks, read and dropped to its end too, keeps it as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_refused_body_was_read_to_its_end_stays_open() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let mut socket = tokio::net::TcpStream::connect(server.http.address).await.unwrap();
    let upload = vec![b'x'; 4 << 20];
    let head = raw_head("PUT", &t("acme", "/slices/orders"), "nobody", &format!("content-length: {}\r\n", upload.len()));
    let wrong = [head.as_bytes(), &upload].concat();
    let path = t("acme", "/slices/orders/commands/place-order");
    let (mut reader, mut writer) = socket.split();
    let (sent, refused) = tokio::join!(writer.write_all(&wrong), read_answer(&mut reader));
    sent.expect("the whole body written");
    assert!(refused.starts_with("http/1.1 401") && !refused.contains("connection: close"), "{refused}");
    let over = format!("{:x}\r\n{}\r\n", 1 << 20, "x".repeat(1 << 20)).repeat(25) + "0\r\n\r\n";
    let chunked = raw_head("POST", &path, &token("acme"), "content-type: application/json\r\ntransfer-encoding: chunked\r\n") + &over;
    let (sent, refused) = tokio::join!(writer.write_all(chunked.as_bytes()), read_answer(&mut reader));
    sent.expect("the whole body written");
    assert!(refused.starts_with("http/1.1 413") && !refused.contains("connection: close"), "{refused}");
    answers_a_next_request(&mut reader, &mut writer).await;
}

/// A refusal after the body was read whole (here: an empty body) keeps the connection: the next
/// request on it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_upload_was_read_whole_stays_open_after_a_refusal() {
    let server = Server::start().await;
    let mut socket = raw_upload(&server, "content-length: 0\r\n").await;
    let (mut reader, mut writer) = socket.split();
    let refused = read_answer(&mut reader).await;
    assert!(refused.starts_with("http/1.1 400") && !refused.contains("connection: close"), "{refused}");
    assert!(refused.contains("invalid_input"), "{refused}");
    answers_a_next_request(&mut reader, &mut writer).await;
}

/// A body that declares more than is ever read and dropped (64 MiB) is answered once refused,
/// and its connection closed: nothing waits for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_past_what_is_drained_is_answered_and_its_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let mut socket = tokio::net::TcpStream::connect(server.http.address).await.unwrap();
    let path = t("acme", "/slices/orders/commands/place-order");
    let head = raw_head("POST", &path, &token("acme"), &format!("content-type: application/json\r\ncontent-length: {}\r\n", 100 << 20));
    let (mut reader, mut writer) = socket.split();
    // Past the 24 MiB limit, then the writer stops: the rest of the 100 MiB never comes.
    let sending = async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&vec![b' '; 25 << 20]).await
    };
    // Answered well before the 10 s a drain may take.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), read_answer(&mut reader));
    let (_, refused) = tokio::join!(sending, answered);
    let refused = refused.expect("answered without waiting for the rest of the body");
    assert!(refused.starts_with("http/1.1 413") && refused.contains("connection: close"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_uploads_is_rate_limited_per_tenant() {
    let server = Server::with(&[("acme", "uploads_per_minute = 3"), ("globex", "")]).await;
    let http = &server.http;
    // Refused uploads count too: compiling them is what costs.
    for _ in 0..3 {
        http.deploy_as(&token("acme"), "acme", "orders", b"not a component".to_vec()).await.error(422, "invalid_component");
    }
    let reply = http.deploy_as(&token("acme"), "acme", "orders", wasm("orders")).await;
    reply.error(429, "upload_rate_limited");
    assert!(http.slices("acme").await.is_empty());
    // Another tenant's budget is its own; the operator's (the admin token) is not rationed.
    http.deploy_as(&token("globex"), "globex", "orders", wasm("orders")).await.ok();
    http.deploy("acme", "orders", wasm("orders")).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_contract_is_refused_before_compiling() {
    let server = Server::start().await;
    let future = fresh("future-version", "precheck");
    let hash = counterpoint::runtime::hash_of(&future);
    let started = std::time::Instant::now();
    let reply = server.http.deploy_as(&token("acme"), "acme", "future-version", future).await;
    reply.error(422, "incompatible_contract");
    assert!(started.elapsed() < Duration::from_secs(5), "refused without compiling, quickly");
    assert_eq!(cached(&server, &hash), Vec::<String>::new(), "nothing was compiled");
    assert!(!server.data_dir().join(format!("components/{hash}.wasm")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_past_the_timeout_is_refused() {
    let server = Server::configured("compile_timeout_ms = 1\ncompile_concurrency = 1", &[("acme", "")]).await;
    let reply = server.http.deploy("acme", "orders", fresh("orders", "timeout")).await;
    reply.error(503, "compile_timeout");
    assert!(server.http.slices("acme").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_no_tenant_runs_is_deleted_with_its_compiled_code() {
    let server = Server::start().await;
    let http = &server.http;
    let (first, second) = (fresh("orders", "gc-first"), fresh("orders", "gc-second"));
    let (old, new) = (counterpoint::runtime::hash_of(&first), counterpoint::runtime::hash_of(&second));
    let component = |hash: &str| server.data_dir().join(format!("components/{hash}.wasm"));
    http.deploy("acme", "orders", first.clone()).await.ok();
    http.deploy("globex", "orders", first).await.ok();
    assert!(component(&old).exists() && !cached(&server, &old).is_empty());

    // acme moves on; globex still runs the first build.
    http.deploy("acme", "orders", second).await.ok();
    assert!(component(&old).exists() && !cached(&server, &old).is_empty(), "still globex's");
    // Now no one does.
    http.send(Method::DELETE, &t("globex", "/slices/orders"), Some(ADMIN), &[], "").await.ok();
    assert!(!component(&old).exists(), "the component is deleted");
    assert!(cached(&server, &old).is_empty(), "its compiled code is deleted");
    assert!(component(&new).exists() && !cached(&server, &new).is_empty(), "the one acme runs is kept");
    // And the kept one still serves after a restart.
    let mut server = server;
    server.restart().await;
    assert_eq!(server.http.slices("acme").await["orders"], new);
    assert!(server.http.slices("globex").await.is_empty());
}
