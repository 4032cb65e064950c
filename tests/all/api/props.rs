//! Property tests (a seeded `fastrand` loop: `proptest` is not in the dependency tree): bad
//! input of every kind thrown at the API is never a 500 and never a panic (every request gets a
//! response), gets the right code, and leaves the log unchanged.
//!
//! Set `API_PROPTEST_SEED` to replay a run; the seed is printed.

use axum::http::Method;
use serde_json::{json, Value};

use super::*;

fn random_string(rng: &mut fastrand::Rng, max: usize) -> String {
    let len = rng.usize(0..=max);
    (0..len)
        .map(|_| match rng.u8(0..4) {
            0 => rng.char(..),
            1 => rng.choice(['"', '\\', '{', '}', '[', ']', ',', ':', '\0', '\n']).unwrap(),
            _ => rng.alphanumeric(),
        })
        .collect()
}

/// Any JSON value, nested up to `depth`.
fn random_json(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e300),
        4 => json!(random_string(rng, 20)),
        5 => Value::Array((0..rng.usize(0..4)).map(|_| random_json(rng, depth - 1)).collect()),
        _ => Value::Object((0..rng.usize(0..4)).map(|_| (random_string(rng, 8), random_json(rng, depth - 1))).collect()),
    }
}

/// Any JSON value that is not a string.
fn not_a_string(rng: &mut fastrand::Rng) -> Value {
    loop {
        let value = random_json(rng, 2);
        if !value.is_string() {
            return value;
        }
    }
}

/// Text that is not JSON: a valid document cut short or damaged, or noise.
fn malformed_json(rng: &mut fastrand::Rng) -> Vec<u8> {
    let valid = json!({"order_id": random_string(rng, 10), "customer_id": "c", "x": random_json(rng, 3)}).to_string().into_bytes();
    let mut bytes = match rng.u8(0..3) {
        0 => valid[..rng.usize(1..valid.len())].to_vec(),
        1 => {
            let mut damaged = valid.clone();
            let at = rng.usize(0..damaged.len());
            damaged[at] = *rng.choice(b"{}[],:\"\\x\xff").unwrap();
            damaged
        }
        _ => (0..rng.usize(1..200)).map(|_| rng.u8(..)).collect(),
    };
    // Still valid by chance (a damaged digit, a whitespace-only body)? Make sure it is not.
    if bytes.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<Value>(&bytes).is_ok() {
        bytes.push(b'{');
    }
    bytes
}

fn nested_arrays(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

struct Case {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The acceptable (status, code)s.
    expect: &'static [(u16, &'static str)],
}

const INVALID: &[(u16, &str)] = &[(400, "invalid_input")];

fn case(rng: &mut fastrand::Rng) -> Case {
    let command = t("acme", "/slices/orders/commands/place-order");
    let endpoints = [
        command.clone(),
        t("acme", "/slices/orders/commands/add-item"),
        t("acme", "/slices/orders/projections/order-summary"),
        t("acme", "/events/read"),
        t("acme", "/events/append"),
    ];
    let post = |path: String, body: Vec<u8>, expect| Case { method: Method::POST, path, headers: vec![], body, expect };
    match rng.u8(0..9) {
        // Malformed JSON at any JSON endpoint.
        0 => post(rng.choice(&endpoints).unwrap().clone(), malformed_json(rng), INVALID),
        // Wrong types for a command's fields.
        1 => {
            let body = if rng.bool() {
                json!({"order_id": not_a_string(rng), "customer_id": "c"})
            } else {
                json!({"order_id": "o", "sku": "s", "qty": not_a_string(rng), "price": rng.choice([json!(-1), json!("1"), json!(1.5), json!([])]).unwrap()})
            };
            let path = if body.get("sku").is_some() { t("acme", "/slices/orders/commands/add-item") } else { command };
            post(path, body.to_string().into_bytes(), INVALID)
        }
        // A body that is valid JSON but not an object the endpoint takes.
        2 => {
            // Scalars only: a JSON array is a valid struct to serde (fields in order).
            let body = random_json(rng, 0);
            post(rng.choice(&endpoints).unwrap().clone(), body.to_string().into_bytes(), INVALID)
        }
        // Bad read requests: random queries, positions, limits.
        3 => {
            let mut body = serde_json::Map::new();
            let fields = ["query", "after", "limit", "backwards", "items", "types"];
            for _ in 0..rng.usize(1..4) {
                body.insert(rng.choice(fields).unwrap().to_string(), random_json(rng, 3));
            }
            // Some of these are valid reads by chance: a read changes nothing either way.
            post(t("acme", "/events/read"), Value::Object(body).to_string().into_bytes(), &[(200, ""), (400, "invalid_input")])
        }
        // Bad appends: events of the wrong shape.
        4 => {
            let event = match rng.u8(0..4) {
                0 => json!({"type": not_a_string(rng)}),
                1 => json!({"type": "X", "data": random_json(rng, 2).to_string()}),
                2 => json!({"type": "X", "tags": rng.choice([json!(1), json!({"a": []}), json!(true), json!([1]), json!("t")]).unwrap(), "data": {"json": 1}}),
                _ => json!({"type": "X", "data": {"base64": random_string(rng, 10) + "%"}}),
            };
            let mut events = vec![json!({"type": "Fine", "data": {"json": 1}}); rng.usize(0..3)];
            events.insert(rng.usize(0..=events.len()), event);
            post(t("acme", "/events/append"), json!({"events": events}).to_string().into_bytes(), INVALID)
        }
        // Deeply nested bodies (past any recursion limit).
        5 => post(rng.choice(&endpoints).unwrap().clone(), nested_arrays(rng.usize(1_000..100_001)).into_bytes(), INVALID),
        // Bad stream parameters.
        6 => {
            let key = rng.choice(["after", "query", "colour", "type&after", "after=1&query"]).unwrap();
            let value: String = random_string(rng, 12).bytes().map(|b| format!("%{b:02X}")).collect();
            let value = if key == "after" && value.is_empty() { "-".into() } else { value };
            let path = t("acme", &format!("/events/stream?{key}={value}x"));
            Case { method: Method::GET, path, headers: vec![], body: vec![], expect: INVALID }
        }
        // Random bytes as a component (sometimes starting like one).
        7 => {
            let mut body: Vec<u8> = (0..rng.usize(1..4096)).map(|_| rng.u8(..)).collect();
            if rng.bool() {
                body.splice(0..0, *b"\0asm\x0d\0\x01\0");
            }
            Case { method: Method::PUT, path: t("acme", "/slices/orders"), headers: vec![], body, expect: &[(422, "invalid_component")] }
        }
        // A bad Last-Event-ID or Idempotency-Key.
        _ => {
            if rng.bool() {
                let id = format!("{}x", random_string(rng, 10).replace(|c: char| !c.is_ascii_graphic(), ""));
                Case { method: Method::GET, path: t("acme", "/events/stream"), headers: vec![("last-event-id", id)], body: vec![], expect: INVALID }
            } else {
                let key = "k".repeat(rng.usize(201..1000));
                let body = json!({"order_id": "o", "customer_id": "c"}).to_string().into_bytes();
                Case { method: Method::POST, path: command, headers: vec![("idempotency-key", key)], body, expect: INVALID }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_right_code_and_changes_nothing() {
    let seed = std::env::var("API_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("API_PROPTEST_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = Server::start().await;
    let http = &server.http;
    http.deploy("acme", "orders", wasm("orders")).await.ok();
    http.command("acme", "orders", "place-order", json!({"order_id": "o", "customer_id": "c"})).await.ok();
    let log = http.log("acme").await;
    let slices = http.slices("acme").await;
    let admin = ADMIN.to_string();
    for i in 0..300 {
        let case = case(&mut rng);
        let token = if case.method == Method::PUT { admin.clone() } else { token("acme") };
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // `send` fails the test on a 500 or on no response at all.
        let reply = http.send(case.method.clone(), &case.path, Some(&token), &headers, case.body.clone()).await;
        let got = (reply.status.as_u16(), reply.code());
        assert!(
            case.expect.iter().any(|&(status, code)| got == (status, code) || (status == 200 && reply.status.is_success())),
            "case {i} (seed {seed}): {} {} with {:?}: expected one of {:?}, got {} {}",
            case.method,
            case.path,
            String::from_utf8_lossy(&case.body[..case.body.len().min(300)]),
            case.expect,
            reply.status,
            String::from_utf8_lossy(&reply.body),
        );
    }
    // 100,000 nested arrays, at every JSON endpoint.
    for path in [t("acme", "/slices/orders/commands/place-order"), t("acme", "/slices/orders/projections/order-summary"), t("acme", "/events/read"), t("acme", "/events/append")] {
        http.send(Method::POST, &path, Some(&token("acme")), &[], nested_arrays(100_000)).await.error(400, "invalid_input");
    }
    // Huge bodies: just under the limit (refused for what they are), and over it.
    let big = format!("{{\"order_id\": {}, \"customer_id\": \"c\"}}", "1".repeat(20 << 20));
    http.send(Method::POST, &t("acme", "/slices/orders/commands/place-order"), Some(&token("acme")), &[], big).await.error(400, "invalid_input");
    let over: Vec<u8> = (0..(25 << 20)).map(|_| rng.u8(..)).collect();
    for path in [t("acme", "/events/append"), t("acme", "/events/read"), t("acme", "/slices/orders/commands/add-item")] {
        http.send_oversized(&path, Some(&token("acme")), over.clone()).await;
    }
    assert_eq!(http.log("acme").await, log, "the log is unchanged (seed {seed})");
    assert_eq!(http.slices("acme").await, slices, "the deployed slices are unchanged (seed {seed})");
    http.command("acme", "orders", "place-order", json!({"order_id": "o-after", "customer_id": "c"})).await.ok();
}
