//! The OTLP exporter's HTTP transport: the host's hyper client (HTTP/1; https over rustls with
//! the public authorities), driven on the server's tokio runtime whatever thread the SDK's batch
//! processor exports from (it blocks on the export outside any runtime).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// A collector answers an export with a small status message; more is not read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A collector that is down fails every export, every few seconds: said at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);

/// Logs a failed export (the SDK's own logging is off), at most once per [`WARN_EVERY`].
fn warn_failed(what: std::fmt::Arguments<'_>) {
    let mut last = LAST_WARNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!("exporting traces failed: {what}; those spans are dropped (said at most once a minute)");
    }
}

#[derive(Clone)]
pub(super) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl Transport {
    pub(super) fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Transport {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let connector = HttpsConnector::from((tcp, crate::runtime::public_tls()));
        Transport { client: Client::builder(TokioExecutor::new()).build(connector), runtime, timeout }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpClient for Transport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, timeout, uri) = (self.client.clone(), self.timeout, request.uri().clone());
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The timer too is made on the runtime: the calling thread has none.
        let result = match self.runtime.spawn(async move { tokio::time::timeout(timeout, exchange).await }).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(elapsed)) => Err(elapsed.into()),
            Err(join) => Err(join.into()),
        };
        match &result {
            Err(err) => warn_failed(format_args!("{uri}: {err}")),
            Ok(response) if !response.status().is_success() => warn_failed(format_args!("{uri} answered {}", response.status())),
            Ok(_) => {}
        }
        result
    }
}
