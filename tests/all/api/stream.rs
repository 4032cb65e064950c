//! The live stream: Server-Sent Events, resumable with `Last-Event-ID`, no gap and no duplicate;
//! at most `max_streams` open per tenant, and ended when the access they were opened with goes.

use std::time::Duration;

use axum::http::{Method, Request};
use serde_json::{json, Value};

use super::*;

/// Reads SSE events from a response body, parsing the `id:` and `data:` lines itself.
pub struct SseReader {
    body: BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    buffer: String,
}

/// One SSE event: its `id` and its `data` as JSON.
#[derive(Debug)]
pub struct SseEvent {
    pub id: String,
    pub data: Value,
}

impl SseReader {
    pub async fn open(http: &Http, path: &str, token: &str, last_event_id: Option<&str>) -> SseReader {
        let mut headers = vec![];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        let request = http.request(Method::GET, path, Some(token), &headers).body(full("")).unwrap();
        match Self::try_open(http, request).await {
            Ok(reader) => reader,
            Err(reply) => panic!("{path}: the stream does not open: {} {}", reply.status, String::from_utf8_lossy(&reply.body)),
        }
    }

    /// Opens a stream, or gives back the error the server answered instead.
    async fn try_open(http: &Http, request: Request<Body>) -> Result<SseReader, Reply> {
        let response = http.client.request(request).await.expect("the server answers");
        let status = response.status();
        if status.as_u16() != 200 {
            let body = response.into_body().collect().await.expect("an error body").to_bytes();
            return Err(Reply { status, json: serde_json::from_slice(&body).unwrap_or(Value::Null), body });
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(SseReader { body: response.into_body().map_err(|e| e.into()).boxed(), buffer: String::new() })
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim_start().to_string());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data += value.strip_prefix(' ').unwrap_or(value);
                    }
                    // `event:` names the kind; lines starting with ':' are keep-alive comments.
                }
                match id {
                    Some(id) => return Some(SseEvent { id, data: serde_json::from_str(&data).expect("data is JSON") }),
                    None => continue, // a comment-only block
                }
            }
            let frame = within("the next SSE frame", self.body.frame()).await?;
            let frame = frame.expect("the stream is readable");
            if let Ok(data) = frame.into_data() {
                self.buffer += std::str::from_utf8(&data).expect("SSE is UTF-8");
            }
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(self.next().await.expect("the stream goes on"));
        }
        events
    }
}

async fn append(http: &Http, event_type: &str, n: usize) -> Vec<Value> {
    let events: Vec<Value> = (0..n).map(|i| json!({"type": event_type, "tags": [format!("n:{i}")], "data": {"json": i}})).collect();
    let reply = http.post(&t("acme", "/events/append"), Some(&token("acme")), &json!({"events": events})).await.ok();
    reply["positions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_with_last_event_id_without_gap_or_duplicate() {
    let server = Server::start().await;
    let http = &server.http;
    let acme = token("acme");
    let mut expected: Vec<Value> = Vec::new();
    // Events before connecting, with others the stream's filter leaves out.
    expected.extend(append(http, "Tick", 3).await);
    append(http, "Other", 2).await;

    let path = t("acme", "/events/stream?type=Tick");
    let mut stream = SseReader::open(http, &path, &acme, None).await;
    let mut seen = stream.take(3).await;
    // Events after connecting.
    expected.extend(append(http, "Tick", 2).await);
    append(http, "Other", 1).await;
    expected.extend(append(http, "Tick", 1).await);
    seen.extend(stream.take(3).await);
    drop(stream); // the client goes away

    // Appended while disconnected.
    expected.extend(append(http, "Tick", 4).await);
    let last = seen.last().unwrap().id.clone();
    let mut stream = SseReader::open(http, &path, &acme, Some(&last)).await;
    seen.extend(stream.take(4).await);
    expected.extend(append(http, "Tick", 2).await);
    seen.extend(stream.take(2).await);

    let ids: Vec<Value> = seen.iter().map(|e| json!(e.id)).collect();
    assert_eq!(ids, expected, "every Tick once, in order, across the reconnect");
    for event in &seen {
        assert_eq!(event.data["type"], "Tick");
        assert_eq!(json!(event.id), event.data["position"], "the SSE id is the position, as a decimal string");
    }
    // What the stream said is what the log holds.
    let read = http.post(&t("acme", "/events/read"), Some(&acme), &json!({"query": {"items": [{"types": ["Tick"]}]}})).await.ok();
    let logged: Vec<&Value> = read["events"].as_array().unwrap().iter().collect();
    assert_eq!(logged, seen.iter().map(|e| &e.data).collect::<Vec<_>>());

    // `after` in the query string resumes the same way; a tag filter narrows it.
    let mut stream = SseReader::open(http, &format!("{path}&after={}", seen[9].id), &acme, None).await;
    let rest = stream.take(ids.len() - 10).await;
    assert_eq!(rest.iter().map(|e| json!(e.id)).collect::<Vec<_>>(), ids[10..]);
    let mut tagged = SseReader::open(http, &t("acme", "/events/stream?type=Other&tag=n:0"), &acme, None).await;
    let first = tagged.take(2).await;
    assert!(first.iter().all(|e| e.data["type"] == "Other" && e.data["tags"] == json!(["n:0"])), "{first:?}");
    // A JSON query works too.
    let query = serde_json::to_string(&json!({"items": [{"types": ["Other"]}]})).unwrap();
    let encoded: String = form_urlencoded_byte_serialize(&query);
    let mut by_query = SseReader::open(http, &t("acme", &format!("/events/stream?query={encoded}")), &acme, None).await;
    assert_eq!(by_query.take(3).await.iter().filter(|e| e.data["type"] == "Other").count(), 3);
}

fn form_urlencoded_byte_serialize(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Opens a stream of every event of `tenant` with `token`, or the error that refused it.
async fn try_stream(http: &Http, tenant: &str, token: &str) -> Result<SseReader, Reply> {
    let request = http.request(Method::GET, &t(tenant, "/events/stream"), Some(token), &[]).body(full("")).unwrap();
    SseReader::try_open(http, request).await
}

/// The stream ends (the server closes it) within a generous bound, without any event first.
async fn ends(stream: &mut SseReader, what: &str) {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(None) => {}
        Ok(Some(event)) => panic!("{what}: the stream went on with {event:?}"),
        Err(_) => panic!("{what}: the stream is still open after 10 s"),
    }
}

/// Tenant `initech` created through the admin API, and its token; streams of initech opened with
/// that token and with the admin's; a stream of acme.
async fn initech_with_streams(http: &Http) -> (String, SseReader, SseReader, SseReader) {
    let created = http.post("/v1/admin/tenants", Some(ADMIN), &json!({"name": "initech"})).await.ok();
    let initech = created["token"].as_str().expect("a token").to_string();
    let own = try_stream(http, "initech", &initech).await.expect("the stream opens");
    let admins = try_stream(http, "initech", ADMIN).await.expect("the admin's stream opens");
    let others = try_stream(http, "acme", &token("acme")).await.expect("acme's stream opens");
    (initech, own, admins, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_has_at_most_max_streams_open_and_a_closed_one_frees_its_place() {
    let server = Server::with(&[("acme", "max_streams = 2"), ("globex", "")]).await;
    let http = &server.http;
    let acme = token("acme");
    let mut first = try_stream(http, "acme", &acme).await.expect("the first stream opens");
    // The admin's streams of the tenant count too: they use the tenant's server all the same.
    let second = try_stream(http, "acme", ADMIN).await.expect("the second stream opens");
    for token in [&acme, ADMIN] {
        let refused = try_stream(http, "acme", token).await.err().expect("a third stream is refused");
        refused.error(429, "too_many_streams");
    }
    // Another tenant's streams are its own.
    let _globex = try_stream(http, "globex", &token("globex")).await.expect("globex's stream opens");
    // The open ones still work.
    let appended = append(http, "Tick", 1).await;
    assert_eq!(json!(first.take(1).await[0].id), appended[0]);

    // The client goes away: its place is free again once the server notices.
    drop(second);
    let mut reopened = None;
    for _ in 0..100 {
        match try_stream(http, "acme", &acme).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(refused) => refused.error(429, "too_many_streams"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reopened = reopened.expect("a stream opens again within 10 s of one closing");
    assert_eq!(json!(reopened.take(1).await[0].id), appended[0]);
    try_stream(http, "acme", &acme).await.err().expect("and the cap holds again").error(429, "too_many_streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_is_replaced() {
    let server = Server::start().await;
    let http = &server.http;
    let (old, mut revoked, mut admins, mut others) = initech_with_streams(http).await;

    // Only the admin replaces tokens, and only of tenants it created.
    http.post("/v1/admin/tenants/initech/token", Some(&old), &json!({})).await.error(403, "forbidden");
    http.post("/v1/admin/tenants/acme/token", Some(ADMIN), &json!({})).await.error(409, "conflict");
    http.post("/v1/admin/tenants/nobody/token", Some(ADMIN), &json!({})).await.error(404, "not_found");
    let new = http.post("/v1/admin/tenants/initech/token", Some(ADMIN), &json!({})).await.ok()["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    ends(&mut revoked, "the replaced token's stream").await;
    http.get(&t("initech", "/slices"), Some(&old)).await.error(401, "unauthorized");
    try_stream(http, "initech", &old).await.err().expect("the old token opens nothing").error(401, "unauthorized");

    // Streams opened with tokens that still work go on.
    let mut renewed = try_stream(http, "initech", &new).await.expect("the new token's stream opens");
    let appended = http.post(&t("initech", "/events/append"), Some(&new), &json!({"events": [{"type": "Tick"}]})).await.ok();
    assert_eq!(json!(renewed.take(1).await[0].id), appended["positions"][0]);
    assert_eq!(json!(admins.take(1).await[0].id), appended["positions"][0]);
    let acme = append(http, "Tick", 1).await;
    assert_eq!(json!(others.take(1).await[0].id), acme[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_when_their_tenant_is_removed() {
    let server = Server::start().await;
    let http = &server.http;
    let (_, mut own, mut admins, mut others) = initech_with_streams(http).await;
    let removed = http.send(Method::DELETE, "/v1/admin/tenants/initech", Some(ADMIN), &[], "").await;
    assert_eq!(removed.status.as_u16(), 204);
    ends(&mut own, "the removed tenant's stream").await;
    ends(&mut admins, "the admin's stream of the removed tenant").await;
    let acme = append(http, "Tick", 1).await;
    assert_eq!(json!(others.take(1).await[0].id), acme[0]);
}
