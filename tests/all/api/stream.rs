//! The live stream: Server-Sent Events, resumable with `Last-Event-ID`, no gap and no duplicate.

use axum::http::Method;
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
        let response = http.client.request(request).await.expect("the stream opens");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { body: response.into_body().map_err(|e| e.into()).boxed(), buffer: String::new() }
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
