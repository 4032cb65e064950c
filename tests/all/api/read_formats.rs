//! `events/read` in its formats: JSON pages (as before), NDJSON and MessagePack streamed whole,
//! each stream ending with the read's consistency position, and `406` for anything else.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::Method;
use http_body_util::BodyExt;
use counterpoint::codec::json_to_msgpack;
use serde_json::{json, Value};

use super::*;

const NDJSON: &str = "application/x-ndjson";
const MSGPACK: &str = "application/msgpack";

/// A read's answer: its content type and body (the body checked to be whole).
struct Answer {
    content_type: String,
    body: Bytes,
}

async fn read_as(http: &Http, accept: Option<&str>, body: &Value) -> Answer {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    let request = http.request(Method::POST, &t("acme", "/events/read"), Some(&token("acme")), &headers).body(full(body.to_string())).unwrap();
    let response = http.client.request(request).await.expect("a response");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = response.into_body().collect().await.expect("the whole body").to_bytes();
    assert_eq!(status, 200, "{accept:?} {body}: {}", String::from_utf8_lossy(&bytes));
    Answer { content_type, body: bytes }
}

/// The JSON page: events and position.
async fn json_read(http: &Http, body: &Value) -> (Vec<Value>, u128) {
    let answer = read_as(http, Some("application/json"), body).await;
    assert_eq!(answer.content_type, "application/json");
    let page: Value = serde_json::from_slice(&answer.body).expect("JSON");
    (page["events"].as_array().expect("events").clone(), position(&page["position"]))
}

/// An NDJSON stream: its events, and the position on its last line.
async fn ndjson_read(http: &Http, body: &Value) -> (Vec<Value>, u128) {
    let answer = read_as(http, Some(NDJSON), body).await;
    assert_eq!(answer.content_type, NDJSON);
    let text = std::str::from_utf8(&answer.body).expect("NDJSON is UTF-8");
    assert!(text.ends_with('\n'), "every line ends with a newline");
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let trailer = lines.pop().expect("a last line");
    assert_eq!(trailer.as_object().map(|o| o.len()), Some(1), "the last line is only the position: {trailer}");
    assert!(lines.iter().all(|e| e["type"].is_string()), "every other line is an event");
    (lines, position(&trailer["position"]))
}

/// One MessagePack value of a streamed read: an event, or the trailer (no `type`).
#[derive(serde::Deserialize, Debug)]
struct Wire {
    position: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bin")]
    data: Option<Vec<u8>>,
    metadata: Option<BTreeMap<String, String>>,
}

/// A MessagePack `bin`, and nothing else (an array of numbers would not be the stored bytes).
fn bin<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    struct Bin;
    impl serde::de::Visitor<'_> for Bin {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bin")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }
    d.deserialize_bytes(Bin).map(Some)
}

/// A MessagePack stream: its events, and the position of its last value.
async fn msgpack_read(http: &Http, body: &Value) -> (Vec<Wire>, u128) {
    let answer = read_as(http, Some(MSGPACK), body).await;
    assert_eq!(answer.content_type, MSGPACK);
    let mut rest = &answer.body[..];
    let mut values = Vec::new();
    while !rest.is_empty() {
        let mut de = rmp_serde::Deserializer::new(rest);
        let value: Wire = serde::Deserialize::deserialize(&mut de).expect("a MessagePack value");
        rest = de.into_inner();
        values.push(value);
    }
    let trailer = values.pop().expect("a last value");
    assert!(trailer.event_type.is_none() && trailer.data.is_none(), "the last value is only the position: {trailer:?}");
    assert!(values.iter().all(|e| e.event_type.is_some()), "every other value is an event");
    (values, position(&json!(trailer.position)))
}

/// Events of every kind of data: JSON (stored as MessagePack), bytes that are not one MessagePack
/// value (stored as given), none; with tags and metadata. Returns the stored data by position.
async fn seed(http: &Http) -> BTreeMap<u128, Vec<u8>> {
    let acme = token("acme");
    let json_data = json!({"text": "fragile \"é\"\n", "n": -3, "big": u64::MAX, "f": 0.5, "list": [null, true, {}]});
    let events = json!([
        {"type": "Noted", "tags": ["order:1", "kind:x"], "data": {"json": json_data}, "metadata": {"by": "ada", "why": "test"}},
        {"type": "Raw", "tags": ["order:1"], "data": {"base64": "/wAB"}},
        {"type": "Empty"},
        {"type": "Noted", "tags": ["order:2"], "data": {"json": "just a string"}},
    ]);
    let appended = http.post(&t("acme", "/events/append"), Some(&acme), &json!({"events": events})).await.ok();
    let positions: Vec<u128> = appended["positions"].as_array().unwrap().iter().map(position).collect();
    let stored = [json_to_msgpack(&json_data), vec![0xff, 0x00, 0x01], Vec::new(), json_to_msgpack(&json!("just a string"))];
    positions.into_iter().zip(stored).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_returns_the_events_of_the_read() {
    let mut server = Server::start().await;
    let http = &server.http;
    let stored = seed(http).await;
    let first = *stored.keys().next().unwrap();
    let reads = [
        json!({}),
        json!({"query": {"items": [{"types": ["Noted"]}]}}),
        json!({"query": {"items": [{"tags": ["order:1"]}]}, "after": first.to_string()}),
        json!({"limit": 2}),
        json!({"backwards": true, "limit": 3}),
        json!({"query": {"items": [{"types": ["Missing"]}]}}),
    ];
    for read in &reads {
        let (events, at) = json_read(http, read).await;
        let (lines, line_at) = ndjson_read(http, read).await;
        assert_eq!(lines, events, "NDJSON events of {read}");
        assert_eq!(line_at, at, "NDJSON position of {read}");

        let (values, value_at) = msgpack_read(http, read).await;
        assert_eq!(value_at, at, "MessagePack position of {read}");
        assert_eq!(values.len(), events.len(), "MessagePack events of {read}");
        for (value, event) in values.iter().zip(&events) {
            let at = position(&event["position"]);
            assert_eq!(position(&json!(value.position)), at);
            assert_eq!(value.event_type.as_deref(), event["type"].as_str());
            assert_eq!(json!(value.tags), event["tags"]);
            assert_eq!(json!(value.metadata), event["metadata"]);
            // The data as stored, not re-encoded.
            assert_eq!(value.data.as_ref(), Some(&stored[&at]), "data of {at}");
        }
    }
    // The JSON events' data, for the record: MessagePack as JSON, other bytes as base64.
    let (events, _) = json_read(http, &json!({})).await;
    assert_eq!(events[0]["data"]["json"]["text"], "fragile \"é\"\n");
    assert_eq!(events[0]["data"]["json"]["big"], json!(u64::MAX));
    assert_eq!(events[1]["data"], json!({"base64": "/wAB"}));
    assert_eq!(events[0]["metadata"], json!({"by": "ada", "why": "test"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_longer_than_a_json_page_streams_whole() {
    let mut server = Server::start().await;
    let http = &server.http;
    let acme = token("acme");
    let total = 10_000 + 2_345;
    let mut appended = 0;
    while appended < total {
        let n = (total - appended).min(10_000);
        let events: Vec<Value> = (0..n).map(|i| json!({"type": "Tick", "data": {"json": appended + i}})).collect();
        http.post(&t("acme", "/events/append"), Some(&acme), &json!({"events": events})).await.ok();
        appended += n;
    }
    let (page, _) = json_read(http, &json!({"limit": 50_000})).await;
    assert_eq!(page.len(), 10_000, "JSON stays paged");

    let (lines, line_at) = ndjson_read(http, &json!({})).await;
    assert_eq!(lines.len(), total);
    assert!(lines.iter().enumerate().all(|(i, e)| e["data"]["json"] == json!(i)), "every event, in order");
    assert_eq!(line_at, position(&lines[total - 1]["position"]), "a complete read's position is the head");

    let (values, value_at) = msgpack_read(http, &json!({})).await;
    assert_eq!(values.len(), total);
    assert_eq!(value_at, line_at);
    assert!(values.iter().enumerate().all(|(i, v)| v.data == Some(json_to_msgpack(&json!(i)))), "every event, in order");

    // A limit still applies to a stream.
    let (limited, _) = ndjson_read(http, &json!({"limit": 10_001})).await;
    assert_eq!(limited.len(), 10_001);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_read_ends_with_its_consistency_position() {
    let mut server = Server::start().await;
    let http = &server.http;
    let stored = seed(http).await;
    let positions: Vec<u128> = stored.keys().copied().collect();
    let head = *positions.last().unwrap();
    // Only the first event matches; the read saw the whole log, so its position is the head, not
    // the last event it delivered — the position to guard an append with.
    let query = json!({"query": {"items": [{"types": ["Noted"], "tags": ["order:1"]}]}});
    let (events, at) = json_read(http, &query).await;
    assert_eq!((events.len(), at), (1, head));
    assert_eq!(ndjson_read(http, &query).await.1, head);
    assert_eq!(msgpack_read(http, &query).await.1, head);
    // A forward read cut by its limit saw up to its last event.
    let (_, at) = ndjson_read(http, &json!({"limit": 2})).await;
    assert_eq!(at, positions[1]);
    assert_eq!(msgpack_read(http, &json!({"limit": 2})).await.1, positions[1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_type_is_not_acceptable() {
    let mut server = Server::start().await;
    let http = &server.http;
    seed(http).await;
    let path = t("acme", "/events/read");
    let acme = token("acme");
    for accept in ["text/csv", "application/msgpack;q=0", "application/xml, text/html"] {
        let reply = http.send(Method::POST, &path, Some(&acme), &[("accept", accept)], "{}").await;
        reply.error(406, "not_acceptable");
    }
    // Without Accept, or accepting anything, it is JSON as before.
    for accept in [None, Some("*/*"), Some("text/csv, application/json;q=0.2")] {
        let answer = read_as(http, accept, &json!({})).await;
        let page: Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert_eq!(page["events"].as_array().map(Vec::len), Some(4), "{accept:?}");
    }
    server.stop().await;
}
