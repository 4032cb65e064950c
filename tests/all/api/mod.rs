//! `counterpoint serve` over real HTTP: a server in this process on 127.0.0.1 (port 0), its data
//! directory in a tempdir, and a hyper client.

mod contention;
mod deploy;
mod endpoints;
mod errors;
mod full_disk;
mod host_records;
mod idempotency;
mod isolation;
mod metrics;
mod positions;
mod props;
mod read_formats;
mod readmodels;
mod starvation;
mod stream;
mod tenants;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use counterpoint::api::{spawn_server, Running};
use counterpoint::tenants::{hash_token, Config};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub const ADMIN: &str = "admin-secret";

/// The bearer token of `tenant` in the test configurations.
pub fn token(tenant: &str) -> String {
    format!("token-of-{tenant}")
}

/// A configuration file: the admin token, and each `(tenant, limits)` with its token; `limits`
/// are TOML lines for `[tenants.NAME.limits]`.
pub fn config_text(data_dir: &Path, tenants: &[(&str, &str)]) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmin_token_sha256 = \"{}\"\n",
        data_dir.display().to_string(),
        hash_token(ADMIN)
    );
    for (name, limits) in tenants {
        text += &format!("[tenants.{name}]\ntokens_sha256 = [\"{}\"]\n[tenants.{name}.limits]\n{limits}\n", hash_token(&token(name)));
    }
    text
}

/// A server and its data directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: Config,
    running: Option<Running>,
    pub http: Http,
}

impl Server {
    /// Tenants `acme` and `globex` with default limits.
    pub async fn start() -> Server {
        Self::with(&[("acme", ""), ("globex", "")]).await
    }

    pub async fn with(tenants: &[(&str, &str)]) -> Server {
        Self::configured("", tenants).await
    }

    /// With `top` (TOML lines) before the tenants' tables.
    pub async fn configured(top: &str, tenants: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        // Compiled code is shared with the other tests (the cache is keyed by the component's
        // hash and the engine's configuration), so each server does not compile the slices anew.
        let shared = counterpoint_tests::slices::target_dir().join("test-compile-cache");
        std::fs::create_dir_all(&shared).expect("the shared compile cache");
        std::os::unix::fs::symlink(&shared, dir.path().join("cache")).expect("linking the compile cache");
        let text = format!("{top}\n{}", config_text(dir.path(), tenants));
        let config = Config::parse(&text).expect("the test configuration parses");
        let running = spawn_server(&config).await.expect("the server starts");
        let http = Http::new(running.address);
        Server { dir, config, running: Some(running), http }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Graceful shutdown, as on SIGTERM; returns once the store is closed.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("the server shuts down cleanly");
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = spawn_server(&self.config).await.expect("the server starts again");
        self.http = Http::new(running.address);
        self.running = Some(running);
    }
}

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A keep-alive HTTP/1 client for one server.
#[derive(Clone)]
pub struct Http {
    pub address: SocketAddr,
    pub client: Client<HttpConnector, Body>,
}

/// A response: status, raw body, and the body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    pub json: Value,
}

impl Reply {
    /// The error code, `""` when the body is not an error.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics unless the reply is a 2xx.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(self.status.is_success(), "expected success, got {} {}", self.status, String::from_utf8_lossy(&self.body));
        self.json
    }

    /// Panics unless the reply is the error `code` with `status`.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "expected {status} {code}, got {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert!(!self.json["error"]["message"].as_str().unwrap_or("").is_empty(), "an error has a message");
    }
}

/// A position as the API gives it: a string of decimal digits.
#[track_caller]
pub fn position(value: &Value) -> u128 {
    let text = value.as_str().unwrap_or_else(|| panic!("a position is a decimal string, got {value}"));
    assert!(!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()), "a position is decimal digits, got {text:?}");
    text.parse().expect("a position fits in 128 bits")
}

pub fn t(tenant: &str, rest: &str) -> String {
    format!("/v1/t/{tenant}{rest}")
}

impl Http {
    pub fn new(address: SocketAddr) -> Http {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Http { address, client }
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(method).uri(format!("http://{}{path}", self.address));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
    }

    /// Sends a request and reads the whole response. Panics if there is no response at all (a
    /// server that panicked or dropped the connection).
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let request = self.request(method.clone(), path, token, headers).body(full(body)).expect("a valid request");
        let response = self.client.request(request).await.unwrap_or_else(|e| panic!("{method} {path}: no response: {e:?}"));
        let status = response.status();
        let body = response.into_body().collect().await.unwrap_or_else(|e| panic!("{method} {path}: body cut short: {e}")).to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: a 500: {}", String::from_utf8_lossy(&body));
        Reply { status, body, json }
    }

    /// Sends a body over the server's limit, once with its length and once in chunks without
    /// one: the answer is `413 payload_too_large` both times, also when the body is far larger
    /// than the socket buffers hold and the client is still writing when it is refused (what is
    /// left of it is read and dropped, not left unread to reset the connection).
    /// Each goes on a client of its own that keeps no idle connection: had the server closed the
    /// connection after refusing the body, a pooled client could hand that dead connection to the
    /// next request.
    pub async fn send_oversized(&self, path: &str, token: Option<&str>, body: impl Into<Bytes>) {
        let body: Bytes = body.into();
        let chunks: Vec<_> = body.chunks(256 << 10).map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(body.slice_ref(c)))).collect();
        let bodies = [("with its length", full(body.clone())), ("in chunks", http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync())];
        for (sent, body) in bodies {
            let request = self.request(Method::POST, path, token, &[]).body(body).expect("a valid request");
            let one_off: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http();
            let response = one_off.request(request).await.unwrap_or_else(|e| panic!("POST {path} {sent}: no answer: {e:?}"));
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!((status.as_u16(), json["error"]["code"].as_str()), (413, Some("payload_too_large")), "POST {path} {sent}");
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, &[], Bytes::new()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::POST, path, token, &[], body.to_string()).await
    }

    /// `PUT /v1/t/{tenant}/slices/{name}` with the admin token.
    pub async fn deploy(&self, tenant: &str, name: &str, wasm: Vec<u8>) -> Reply {
        self.send(Method::PUT, &t(tenant, &format!("/slices/{name}")), Some(ADMIN), &[], wasm).await
    }

    /// Deploys with a given token.
    pub async fn deploy_as(&self, token: &str, tenant: &str, name: &str, wasm: Vec<u8>) -> Reply {
        self.send(Method::PUT, &t(tenant, &format!("/slices/{name}")), Some(token), &[], wasm).await
    }

    /// Runs a command with the tenant's own token.
    pub async fn command(&self, tenant: &str, slice: &str, command: &str, input: Value) -> Reply {
        self.post(&t(tenant, &format!("/slices/{slice}/commands/{command}")), Some(&token(tenant)), &input).await
    }

    pub async fn project(&self, tenant: &str, slice: &str, projection: &str, params: Value) -> Reply {
        self.post(&t(tenant, &format!("/slices/{slice}/projections/{projection}")), Some(&token(tenant)), &params).await
    }

    /// The tenant's whole log (read with the admin token), paging through it.
    pub async fn log(&self, tenant: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = json!(null);
        loop {
            let page = self.post(&t(tenant, "/events/read"), Some(ADMIN), &json!({"after": after})).await.ok();
            let events = page["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return all;
            }
            after = events.last().unwrap()["position"].clone();
            all.extend(events);
        }
    }

    /// Events of the log of type `event_type`.
    pub async fn events_of(&self, tenant: &str, event_type: &str) -> Vec<Value> {
        self.log(tenant).await.into_iter().filter(|e| e["type"] == event_type).collect()
    }

    /// The slices a tenant runs: name → hash.
    pub async fn slices(&self, tenant: &str) -> std::collections::BTreeMap<String, String> {
        let list = self.get(&t(tenant, "/slices"), Some(ADMIN)).await.ok();
        list["slices"]
            .as_array()
            .expect("slices")
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["hash"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// Waits for `condition` (polling), panicking after a generous hang guard.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

/// Hangs are failures: wait at most 60 s for `future`.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future).await.unwrap_or_else(|_| panic!("hung: {what}"))
}

pub fn wasm(name: &str) -> Vec<u8> {
    counterpoint_tests::slices::wasm(name)
}

/// A second build of a slice: other bytes and hash, the same behaviour and name.
pub fn rebuilt(wasm: &[u8], build: &str) -> Vec<u8> {
    counterpoint::bench::with_custom_section(wasm, build)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    counterpoint::runtime::hash_of(bytes)
}
