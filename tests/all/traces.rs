//! Traces over OTLP: a server process (`counterpoint-serve`) configured with `[telemetry]
//! otlp_endpoint` pointing at a small OTLP/HTTP receiver here, which decodes what it is sent
//! (protobuf, `opentelemetry-proto`). One command's span tree is checked — request, command,
//! attempt, slice invocation, store read and append — with its attributes, the caller's
//! `traceparent` kept, an automation's reaction and a read model's batch, and a slice's outbound
//! HTTP effect carrying the trace on. The spans still buffered are sent when the server stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Attribute;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

use crate::api::{config_text, t, token, Http};
use crate::process::ServeProcess;
use counterpoint_tests::slices::{target_dir, wasm};

/// The caller's trace: version 00, trace id, parent span id, sampled.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver got: every span exported, and the `traceparent` of every call to `/hello`
/// (where the effectful slice's outbound requests go).
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    resources: Vec<String>,
    outbound_traceparents: Vec<String>,
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) and a `/hello` page, on 127.0.0.1.
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let (traces, hello) = (received.clone(), received.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/x-protobuf"));
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export decodes");
                let mut received = traces.lock().unwrap();
                for resource_spans in request.resource_spans {
                    let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
                    received.resources.extend(resource.get("service.name").cloned());
                    received.spans.extend(resource_spans.scope_spans.into_iter().flat_map(|s| s.spans));
                }
                // An empty ExportTraceServiceResponse: everything accepted.
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }),
        )
        .route(
            "/hello",
            axum::routing::get(move |headers: HeaderMap| async move {
                let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
                hello.lock().unwrap().outbound_traceparents.push(parent);
                "hello"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, received)
}

/// A span's attributes, as text.
fn attributes(list: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Attribute::StringValue(s)) => s.clone(),
                Some(Attribute::IntValue(i)) => i.to_string(),
                Some(Attribute::BoolValue(b)) => b.to_string(),
                Some(Attribute::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace, to look things up in.
struct Tree<'a> {
    spans: Vec<&'a Span>,
}

impl<'a> Tree<'a> {
    fn of(spans: &'a [Span], trace: &str) -> Tree<'a> {
        Tree { spans: spans.iter().filter(|s| hex(&s.trace_id) == trace).collect() }
    }

    /// The one child of `parent` named `name` whose attributes include `with`.
    #[track_caller]
    fn child(&self, parent: &Span, name: &str, with: &[(&str, &str)]) -> &'a Span {
        let found: Vec<&&Span> = self.spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.name == name && has(s, with)).collect();
        assert_eq!(found.len(), 1, "one {name} {with:?} under {}; the trace: {}", parent.name, self.describe());
        found[0]
    }

    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .spans
            .iter()
            .map(|s| format!("{} {} <- {} {:?}", hex(&s.span_id), s.name, hex(&s.parent_span_id), attributes(&s.attributes)))
            .collect();
        lines.join("\n")
    }
}

fn has(span: &Span, with: &[(&str, &str)]) -> bool {
    let attributes = attributes(&span.attributes);
    with.iter().all(|(k, v)| attributes.get(*k).map(String::as_str) == Some(*v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_is_traced_from_the_request_to_the_store() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let shared = target_dir().join("test-compile-cache");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, dir.path().join("cache")).unwrap();
    let config = format!(
        "{}[tenants.acme.effects.effectful]\nhttp_hosts = [\"{collector}\"]\n\n[telemetry]\notlp_endpoint = \"http://{collector}\"\nservice_name = \"traced-host\"\n",
        config_text(dir.path(), &[("acme", "")])
    );
    let config_path = dir.path().join("counterpoint.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut server = ServeProcess::start(&config_path);
    let http = Http::new(server.address);
    for slice in ["orders", "effectful", "catchall"] {
        http.deploy("acme", slice, wasm(slice)).await.ok();
    }

    // The command, continuing the caller's trace.
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let path = t("acme", "/slices/orders/commands/place-order");
    let body = json!({"order_id": "o-1", "customer_id": "c-1"}).to_string();
    let headers = [("traceparent", traceparent.as_str())];
    http.send(Method::POST, &path, Some(&token("acme")), &headers, body).await.ok();

    // An outbound effect, in a trace of its own: the called service continues it.
    let effect_trace = "0af7651916cd43dd8448eb211c80319c";
    let effect_parent = format!("00-{effect_trace}-b7ad6b7169203331-01");
    let path = t("acme", "/slices/effectful/commands/fetch");
    let body = json!({"url": format!("http://{collector}/hello")}).to_string();
    let fetched = http.send(Method::POST, &path, Some(&token("acme")), &[("traceparent", effect_parent.as_str())], body).await.ok();
    assert_eq!(fetched["result"]["status"], 200);

    // An automation's reaction and a read model's batch: `echo` answers each nudge.
    http.command("acme", "catchall", "nudge", json!({"n": 1})).await.ok();
    let answered = async {
        while http.events_of("acme", "Answered").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), answered).await.expect("the automation answers the nudge");
    // Stopped as an operator stops it: it must exit cleanly, having sent its last spans.
    let stopped = server.signal(libc::SIGTERM);
    assert!(stopped.success(), "the server exited with {stopped}: {}", server.log());

    let received = received.lock().unwrap();
    assert!(received.resources.iter().all(|name| name == "traced-host"), "{:?}", received.resources);
    let tree = Tree::of(&received.spans, TRACE_ID);
    assert!(!tree.spans.is_empty(), "no span of the caller's trace among {} spans", received.spans.len());

    // request -> command -> attempt -> slice invocation (-> store read) + store append.
    let roots: Vec<&&Span> = tree.spans.iter().filter(|s| hex(&s.parent_span_id) == CALLER_SPAN).collect();
    assert_eq!(roots.len(), 1, "one span continues the caller's: {}", tree.describe());
    let request = roots[0];
    assert_eq!(request.name, "POST /v1/t/{tenant}/slices/{slice}/commands/{command}");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert!(has(request, &[("http.request.method", "POST"), ("http.response.status_code", "200")]), "{}", tree.describe());
    let command = tree.child(request, "command", &[("tenant", "acme"), ("slice", "orders"), ("command", "place-order"), ("outcome", "ok"), ("attempts", "1")]);
    let attempt = tree.child(command, "attempt", &[("attempt", "1"), ("outcome", "ok")]);
    let invocation = tree.child(attempt, "slice.invoke", &[("slice", "orders"), ("call", "execute"), ("name", "place-order"), ("outcome", "ok")]);
    tree.child(invocation, "store.read", &[("tenant", "acme"), ("events", "0"), ("outcome", "ok")]);
    tree.child(attempt, "store.append", &[("tenant", "acme"), ("events", "1"), ("outcome", "ok")]);
    tree.child(attempt, "store.durable", &[("outcome", "ok")]);
    for span in [request, command, attempt, invocation] {
        assert!(span.start_time_unix_nano > 0 && span.end_time_unix_nano >= span.start_time_unix_nano, "{} has its times", span.name);
    }

    // The effect's span is a client span in the caller's trace, and the called service got it.
    let effects = Tree::of(&received.spans, effect_trace);
    let outbound: Vec<&&Span> = effects.spans.iter().filter(|s| s.name == "effect.http").collect();
    assert_eq!(outbound.len(), 1, "one effect.http span: {}", effects.describe());
    assert_eq!(outbound[0].kind, SpanKind::Client as i32);
    assert!(has(outbound[0], &[("http.response.status_code", "200"), ("outcome", "ok")]), "{}", effects.describe());
    let expected = format!("00-{effect_trace}-{}-01", hex(&outbound[0].span_id));
    assert_eq!(received.outbound_traceparents, [expected], "the outbound request carries the effect span's trace context");

    // The automation's reaction runs its command inside it; the read model's batch is a span.
    let reactions: Vec<&Span> = received
        .spans
        .iter()
        .filter(|s| s.name == "automation.react" && has(s, &[("slice", "catchall"), ("automation", "echo"), ("event_type", "Nudged"), ("outcome", "ok")]))
        .collect();
    assert_eq!(reactions.len(), 1, "one reaction to the nudge");
    // The `answer` command it ran is its child.
    let reaction = Tree::of(&received.spans, &hex(&reactions[0].trace_id));
    reaction.child(reactions[0], "command", &[("slice", "catchall"), ("command", "answer"), ("outcome", "ok")]);
    let batches = received.spans.iter().filter(|s| s.name == "readmodel.batch" && has(s, &[("tenant", "acme"), ("slice", "catchall"), ("outcome", "ok")]));
    assert!(batches.count() >= 1, "the read model's batches are spans");
}

/// A collector that cannot be reached is said in the host's log (the spans are dropped; requests
/// are not held up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_cannot_be_reached_is_said_in_the_log() {
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = unreachable.local_addr().unwrap();
    drop(unreachable); // nothing listens there now
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}[telemetry]\notlp_endpoint = \"http://{address}\"\n", config_text(dir.path(), &[("acme", "")]));
    let config_path = dir.path().join("counterpoint.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut server = ServeProcess::start(&config_path);
    let http = Http::new(server.address);
    http.deploy("acme", "orders", wasm("orders")).await.ok();
    http.command("acme", "orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.ok();
    let stopped = server.signal(libc::SIGTERM);
    assert!(stopped.success(), "the server exited with {stopped}: {}", server.log());
    let log = server.log();
    assert!(log.contains("exporting traces failed") && log.contains(&address.to_string()), "the log says the export failed:\n{log}");
}
