//! The `effects` import: capabilities beyond the log, granted per slice by the tenant's
//! configuration — outbound HTTP and HTTPS to an allow-list of hosts (with a timeout and a size cap),
//! configuration values and secrets, a clock and randomness that tests can fix — and, through
//! WASI rather than this import, directories (cap-std preopens) and environment variables.
//!
//! A slice that imports `effects` without a grant is refused when it is deployed; every call
//! checks the grant again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::bindings::counterpoint::slice::effects;
use super::bindings::types;
use super::invocation::InvocationState;
use super::output::Capture;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// What one slice may use. Deserialized from `[tenants.<t>.effects.<slice>]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// `host` or `host:port` a slice may call over HTTP or HTTPS.
    pub http_hosts: Vec<String>,
    /// Certificates (PEM) of authorities to trust for HTTPS besides the usual public ones: a
    /// company's internal CA, or a test's.
    pub http_ca_pem: Option<String>,
    /// Milliseconds an outbound request may take.
    pub http_timeout_ms: Option<u64>,
    /// Bytes a response body may have.
    pub http_max_bytes: Option<usize>,
    /// Configuration values and secrets, by key.
    pub config: BTreeMap<String, String>,
    /// A fixed clock (milliseconds since the epoch), for tests.
    pub clock_ms: Option<u64>,
    /// A seed that makes `random-bytes` repeatable, for tests.
    pub random_seed: Option<u64>,
    /// Host directories the slice may use through WASI's filesystem (`std::fs`, Python's
    /// `open`, ...), each at a path of its own; nothing outside them is reachable.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the slice sees (it sees none of the host's).
    pub env: BTreeMap<String, String>,
}

/// `{ host = "/srv/acme/templates", guest = "/templates", writable = false }`: the host directory
/// `host` appears to the slice as `guest`, read-only unless `writable`. Paths are resolved with
/// cap-std beneath it: `..` and symbolic links cannot lead out.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: std::path::PathBuf,
    pub guest: String,
    #[serde(default)]
    pub writable: bool,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_BYTES: usize = 1 << 20;

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP and HTTPS client that trusts the public authorities (Mozilla's list, built in) and
/// those of `extra_ca_pem`.
pub(super) fn http_client(extra_ca_pem: Option<&str>) -> Result<HttpClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("http_ca_pem: {e}"))?;
            roots.add(cert).map_err(|e| format!("http_ca_pem: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("http_ca_pem holds no certificate".into());
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl Grants {
    /// Checks what can be checked before a slice runs: the extra authorities parse, the
    /// directories exist, each at its own absolute guest path, the variables are well formed.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(pem) = &self.http_ca_pem {
            http_client(Some(pem))?;
        }
        let mut guests = std::collections::BTreeSet::new();
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(format!("dirs: {} is not a directory", dir.host.display()));
            }
            // The directory is opened by its path at every invocation: no link on the way may
            // be something a slice could change.
            match std::fs::canonicalize(&dir.host) {
                Ok(real) if real == dir.host => {}
                Ok(real) => {
                    return Err(format!("dirs: {} must be the directory's real path ({}): absolute, without links", dir.host.display(), real.display()));
                }
                Err(e) => return Err(format!("dirs: {}: {e}", dir.host.display())),
            }
            if !dir.guest.starts_with('/') || dir.guest.split('/').any(|part| part == "..") {
                return Err(format!("dirs: the guest path {:?} must be absolute, without \"..\"", dir.guest));
            }
            if !guests.insert(dir.guest.trim_end_matches('/')) {
                return Err(format!("dirs: {:?} is granted twice", dir.guest));
            }
        }
        if let Some(key) = self.env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
            return Err(format!("env: {key:?} is not a variable name"));
        }
        Ok(())
    }

    /// The WASI context of one invocation: the granted directories and variables, output to
    /// `stdout`/`stderr`, nothing else.
    pub(super) fn wasi(grants: Option<&Grants>, stdout: Capture, stderr: Capture) -> Result<WasiCtx, String> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout).stderr(stderr);
        if let Some(grants) = grants {
            for (key, value) in &grants.env {
                wasi.env(key, value);
            }
            for dir in &grants.dirs {
                let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
                wasi.preopened_dir(&dir.host, &dir.guest, perms)
                    .map_err(|e| format!("the directory granted as {} ({}) cannot be opened: {e}", dir.guest, dir.host.display()))?;
            }
        }
        Ok(wasi.build())
    }
}

fn denied(what: &str) -> types::Error {
    types::Error::Rejected(format!("this slice is not granted {what}"))
}

impl effects::Host for InvocationState {
    async fn http(&mut self, request: effects::HttpRequest) -> wasmtime::Result<Result<effects::HttpResponse, types::Error>> {
        let Some(grants) = self.grants.clone() else { return Ok(Err(denied("effects"))) };
        let uri: axum::http::Uri = match request.url.parse() {
            Ok(uri) => uri,
            Err(e) => return Ok(Err(types::Error::InvalidInput(format!("bad url {:?}: {e}", request.url)))),
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Ok(Err(types::Error::InvalidInput(format!("{:?} is not an http:// or https:// URL", request.url))));
        }
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let host = uri.host().unwrap_or_default();
        if !grants.http_hosts.iter().any(|allowed| *allowed == authority || *allowed == host) {
            return Ok(Err(types::Error::Rejected(format!("{authority} is not on this slice's allow-list"))));
        }
        let mut builder = axum::http::Request::builder().method(request.method.as_str()).uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outbound = match builder.body(Full::new(Bytes::from(request.body))) {
            Ok(outbound) => outbound,
            Err(e) => return Ok(Err(types::Error::InvalidInput(format!("bad request: {e}")))),
        };
        let timeout = grants.http_timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let max = grants.http_max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let client = self.http.clone();
        let exchange = async move {
            let response = client.request(outbound).await.map_err(|e| format!("request failed: {e}"))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = Limited::new(response.into_body(), max)
                .collect()
                .await
                .map_err(|e| format!("reading the response (at most {max} bytes): {e}"))?
                .to_bytes()
                .to_vec();
            Ok::<_, String>(effects::HttpResponse { status, headers, body })
        };
        Ok(match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) => Err(types::Error::Store(message)),
            Err(_) => Err(types::Error::Store(format!("no response within {} ms", timeout.as_millis()))),
        })
    }

    async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.as_ref().and_then(|g| g.config.get(&key).cloned()))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let fixed = self.grants.as_ref().and_then(|g| g.clock_ms);
        Ok(fixed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
        }))
    }

    async fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let len = len.min(1 << 16) as usize;
        Ok((0..len).map(|_| self.rng.u8(..)).collect())
    }
}
