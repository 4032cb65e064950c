//! The OTLP exporter's HTTP transport: the host's hyper client (HTTP/1; https over rustls with
//! the public authorities), driven on the server's tokio runtime whatever thread the SDK's batch
//! processor exports from (it blocks on the export outside any runtime).

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// A collector answers an export with a small status message; more is not read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

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
        let (client, timeout) = (self.client.clone(), self.timeout);
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The timer too is made on the runtime: the calling thread has none.
        self.runtime.spawn(async move { tokio::time::timeout(timeout, exchange).await }).await??
    }
}
