//! The `effects` import: capabilities beyond the log, granted per slice by the tenant's
//! configuration — outbound HTTP and HTTPS to an allow-list of hosts (with a timeout and a size cap),
//! configuration values and secrets, a clock and randomness that tests can fix — and, through
//! WASI rather than this import, directories (cap-std preopens) and environment variables.
//!
//! A slice that imports `effects` without a grant is refused when it is deployed; every call
//! checks the grant again.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use getrandom::rand_core::{TryRng, UnwrapErr};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tracing::Instrument as _;

use super::bindings::counterpoint::slice::effects;
use super::bindings::types;
use super::invocation::InvocationState;
use super::output::Capture;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// What one slice may use. Deserialized from `[tenants.<t>.effects.<slice>]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// `host` or `host:port` a slice may call over HTTP or HTTPS: a bare `host` allows the
    /// scheme's default port only. A name that resolves to a loopback, link-local, private,
    /// multicast or otherwise special-use address reaches it only if that address is granted
    /// too, as an IP literal (`"127.0.0.1:8080"`).
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
    /// A seed that makes `random-bytes` and WASI's random repeatable, for tests. Without it,
    /// both draw from the operating system's CSPRNG.
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

/// The outbound HTTP(S) client's configuration: which authorities it trusts. A connection is
/// made per request, to addresses checked for that request (see [`Destination`]), so no
/// connection is ever reused for a name or a slice it was not checked for.
#[derive(Clone)]
pub(super) struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
}

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
    Ok(HttpClient { tls: Arc::new(tls) })
}

/// TLS trusting the public authorities only: for the host's own outbound calls (the OTLP
/// exporter's).
pub(crate) fn public_tls() -> Arc<rustls::ClientConfig> {
    http_client(None).expect("the built-in roots make a TLS configuration with ring's defaults").tls
}

impl HttpClient {
    /// A client that connects only to `addresses`, whatever name the request's URL holds: the
    /// name was resolved and its addresses checked already, and must not be resolved again
    /// (a second answer could be another address: DNS rebinding). TLS still verifies the
    /// certificate against the URL's name.
    fn pinned_to(&self, addresses: Vec<SocketAddr>) -> Client<HttpsConnector<HttpConnector<Pinned>>, Full<Bytes>> {
        let mut tcp = HttpConnector::new_with_resolver(Pinned(addresses));
        tcp.enforce_http(false);
        // HTTP/1 only (no ALPN), `http://` in the clear and `https://` over TLS.
        let connector = HttpsConnector::from((tcp, self.tls.clone()));
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector)
    }
}

/// A resolver that answers every name with addresses fixed in advance (already checked).
#[derive(Clone)]
struct Pinned(Vec<SocketAddr>);

impl tower_service::Service<Name> for Pinned {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

/// One entry of `http_hosts`: a name or an IP address, and the port it allows (`None`: the
/// default port of the URL's scheme, 80 or 443).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostGrant {
    host: GrantedHost,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum GrantedHost {
    /// Lower case, without a trailing dot.
    Name(String),
    /// Canonical (an IPv4-mapped IPv6 address is its IPv4 address).
    Ip(IpAddr),
}

impl GrantedHost {
    fn parse(host: &str) -> GrantedHost {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => GrantedHost::Ip(ip.to_canonical()),
            Err(_) => GrantedHost::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl HostGrant {
    fn parse(text: &str) -> Result<HostGrant, String> {
        let authority: axum::http::uri::Authority =
            text.parse().map_err(|e| format!("http_hosts: {text:?} is not `host` or `host:port`: {e}"))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(format!("http_hosts: {text:?} is not `host` or `host:port`"));
        }
        let after_host = &authority.as_str()[authority.host().len()..];
        if !after_host.is_empty() && authority.port_u16().is_none_or(|port| port == 0 || after_host != format!(":{port}")) {
            return Err(format!("http_hosts: {text:?} has no valid port"));
        }
        Ok(HostGrant { host: GrantedHost::parse(authority.host()), port: authority.port_u16() })
    }
}

/// Why an outbound request was refused before it was sent. The message names the rule.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{host} is not on this slice's allow-list (http_hosts)")]
    HostNotGranted { host: String },
    #[error(
        "port {port} of {host} is not on this slice's allow-list (http_hosts): a grant of a bare host allows only the default port ({default}); grant \"{host}:{port}\""
    )]
    PortNotGranted { host: String, port: u16, default: u16 },
    #[error(
        "{host} resolves to {ip}, a {kind} address, which a slice may reach only if a grant names that address: grant \"{granted}\" to allow it"
    )]
    SpecialAddress { host: String, ip: IpAddr, kind: &'static str, granted: String },
}

/// Where a request may go: the URL's host and port, matched against the grants, and the
/// addresses granted explicitly (as IP literals) for that port.
#[derive(Debug)]
struct Destination {
    host: String,
    port: u16,
    explicit: Vec<IpAddr>,
}

impl Destination {
    /// Matches the URL's host and port against `grants`: a bare `host` allows only the scheme's
    /// default port, `host:port` only that port.
    fn check(grants: &[HostGrant], uri: &axum::http::Uri) -> Result<Destination, Refusal> {
        let default = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(default);
        let wanted = GrantedHost::parse(host);
        let same_host: Vec<&HostGrant> = grants.iter().filter(|g| g.host == wanted).collect();
        if same_host.is_empty() {
            return Err(Refusal::HostNotGranted { host: host.to_string() });
        }
        if !same_host.iter().any(|g| g.port.unwrap_or(default) == port) {
            return Err(Refusal::PortNotGranted { host: host.to_string(), port, default });
        }
        let explicit = grants
            .iter()
            .filter(|g| g.port.unwrap_or(default) == port)
            .filter_map(|g| match g.host {
                GrantedHost::Ip(ip) => Some(ip),
                GrantedHost::Name(_) => None,
            })
            .collect();
        Ok(Destination { host: host.to_string(), port, explicit })
    }

    /// The addresses to connect to: the host's (an IP literal's own, or a name's as resolved
    /// now), less any special-use address not granted explicitly. Refused when none is left.
    fn permitted(&self, resolved: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        let mut refused = None;
        let permitted: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|address| {
                let ip = address.ip().to_canonical();
                match special_use(ip) {
                    Some(kind) if !self.explicit.contains(&ip) => {
                        refused.get_or_insert((ip, kind));
                        false
                    }
                    _ => true,
                }
            })
            .collect();
        match (permitted.is_empty(), refused) {
            (true, Some((ip, kind))) => {
                let granted = match (ip, self.port) {
                    (IpAddr::V6(v6), port) => format!("[{v6}]:{port}"),
                    (IpAddr::V4(v4), port) => format!("{v4}:{port}"),
                };
                Err(Refusal::SpecialAddress { host: self.host.clone(), ip, kind, granted })
            }
            _ => Ok(permitted),
        }
    }

    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let bare = self.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&self.host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok(tokio::net::lookup_host((bare, self.port)).await?.collect())
    }
}

/// What kind of address `ip` is, if it is one a slice must not reach unless granted it by
/// address: this host, its network, the cloud's metadata service, anything not a public
/// unicast address. IPv6 addresses that embed an IPv4 address are judged by it.
fn special_use(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => special_use_v4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if segments[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
                Some("private (unique local)")
            } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0; 6] {
                // NAT64 (64:ff9b::/96) and the old IPv4-compatible form (::/96).
                special_use_v4(embedded(segments[6], segments[7]))
            } else if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
                Some("private (local NAT64)")
            } else if segments[0] == 0x2002 {
                // 6to4: the IPv4 address follows the prefix.
                special_use_v4(embedded(segments[1], segments[2]))
            } else {
                None
            }
        }
    }
}

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("private (shared, carrier-grade NAT)")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

/// Where a slice's randomness comes from: the operating system's CSPRNG, or — when the grants
/// fix `random_seed`, for tests — a repeatable generator.
pub(super) enum SliceRandom {
    Os,
    Seeded(fastrand::Rng),
}

impl SliceRandom {
    pub(super) fn for_grants(grants: Option<&Grants>) -> SliceRandom {
        match grants.and_then(|g| g.random_seed) {
            Some(seed) => SliceRandom::Seeded(fastrand::Rng::with_seed(seed)),
            None => SliceRandom::Os,
        }
    }

    fn fill(&mut self, bytes: &mut [u8]) -> Result<(), getrandom::Error> {
        match self {
            SliceRandom::Os => getrandom::fill(bytes),
            SliceRandom::Seeded(rng) => {
                rng.fill(bytes);
                Ok(())
            }
        }
    }
}

/// The generator WASI's `random` interfaces draw from when the grants fix a seed.
struct SeededWasiRandom(fastrand::Rng);

impl TryRng for SeededWasiRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.u32(..))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.u64(..))
    }

    fn try_fill_bytes(&mut self, bytes: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(bytes);
        Ok(())
    }
}

impl Grants {
    /// Checks what can be checked before a slice runs: the extra authorities parse, the
    /// directories exist, each at its own absolute guest path, the variables are well formed.
    pub fn validate(&self) -> Result<(), String> {
        for host in &self.http_hosts {
            HostGrant::parse(host)?;
        }
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

    /// The WASI context of one invocation but its directories: the granted variables, output
    /// to `stdout`/`stderr`, randomness from the OS's CSPRNG (or the granted seed), nothing
    /// else. Its random sources cannot fail once [`os_random_works`] has said the OS's works.
    pub(super) fn wasi(grants: Option<&Grants>, stdout: Capture, stderr: Capture) -> WasiCtxBuilder {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout).stderr(stderr);
        match grants.and_then(|g| g.random_seed) {
            Some(seed) => {
                wasi.secure_random(SeededWasiRandom(fastrand::Rng::with_seed(seed)))
                    .insecure_random(SeededWasiRandom(fastrand::Rng::with_seed(seed ^ 1)))
                    .insecure_random_seed(u128::from(seed));
            }
            None => {
                wasi.secure_random(UnwrapErr(getrandom::SysRng));
            }
        }
        for (key, value) in grants.iter().flat_map(|g| &g.env) {
            wasi.env(key, value);
        }
        wasi
    }

    /// Opens the granted directories in `wasi`, each at its guest path.
    pub(super) fn preopen(&self, wasi: &mut WasiCtxBuilder) -> Result<(), String> {
        for dir in &self.dirs {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("the directory granted as {} ({}) cannot be opened: {e}", dir.guest, dir.host.display()))?;
        }
        Ok(())
    }
}

/// WASI's generators cannot fail: while the operating system's random source does not work, an
/// invocation is refused here rather than failing inside the guest's call. Asked until it has
/// worked once (Linux's `getrandom` fails only before its pool is first ready), not at every
/// invocation: a system call each time was about 1 % of a command.
pub(super) fn os_random_works() -> Result<(), String> {
    static WORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WORKED.load(std::sync::atomic::Ordering::Relaxed) {
        getrandom::u64().map_err(|e| format!("the operating system's random source: {e}"))?;
        WORKED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
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
        if uri.host().is_none_or(str::is_empty) || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Ok(Err(types::Error::InvalidInput(format!("{:?} names no host (or holds credentials)", request.url))));
        }
        // Validated with the configuration: every entry parses.
        let allowed: Vec<HostGrant> = grants.http_hosts.iter().filter_map(|h| HostGrant::parse(h).ok()).collect();
        let destination = match Destination::check(&allowed, &uri) {
            Ok(destination) => destination,
            Err(refusal) => return Ok(Err(types::Error::Rejected(refusal.to_string()))),
        };
        let resolved = match destination.resolve().await {
            Ok(resolved) if !resolved.is_empty() => resolved,
            Ok(_) => return Ok(Err(types::Error::Store(format!("request failed: {} has no address", destination.host)))),
            Err(e) => return Ok(Err(types::Error::Store(format!("request failed: resolving {}: {e}", destination.host)))),
        };
        let addresses = match destination.permitted(resolved) {
            Ok(addresses) => addresses,
            Err(refusal) => return Ok(Err(types::Error::Rejected(refusal.to_string()))),
        };
        let mut builder = axum::http::Request::builder().method(request.method.as_str()).uri(uri);
        for (name, value) in &request.headers {
            // `Host` comes from the URL (the client sets it): a slice must not reach a virtual
            // host other than the one it was granted.
            if !name.eq_ignore_ascii_case("host") {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        let mut outbound = match builder.body(Full::new(Bytes::from(request.body))) {
            Ok(outbound) => outbound,
            Err(e) => return Ok(Err(types::Error::InvalidInput(format!("bad request: {e}")))),
        };
        let empty = tracing::field::Empty;
        let span = tracing::info_span!("effect.http", otel.kind = "client", http.request.method = request.method.as_str(),
            server.address = destination.host.as_str(), http.response.status_code = empty, outcome = empty, otel.status_code = empty);
        // The called service continues this trace (the host's `traceparent` replaces a slice's).
        crate::telemetry::propagate(&span, outbound.headers_mut());
        let timeout = grants.http_timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let max = grants.http_max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let client = self.http.pinned_to(addresses);
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
        let answer = match tokio::time::timeout(timeout, exchange).instrument(span.clone()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) => Err(types::Error::Store(message)),
            Err(_) => Err(types::Error::Store(format!("no response within {} ms", timeout.as_millis()))),
        };
        match &answer {
            Ok(response) => {
                span.record("http.response.status_code", response.status);
                crate::telemetry::record_outcome(&span, "ok");
            }
            Err(_) => crate::telemetry::record_outcome(&span, "error"),
        }
        Ok(answer)
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
        let mut bytes = vec![0; len.min(1 << 16) as usize];
        self.rng.fill(&mut bytes).map_err(|e| wasmtime::format_err!("the operating system's random source failed: {e}"))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(hosts: &[&str]) -> Vec<HostGrant> {
        hosts.iter().map(|h| HostGrant::parse(h).unwrap()).collect()
    }

    fn check(hosts: &[&str], url: &str) -> Result<Destination, Refusal> {
        Destination::check(&grants(hosts), &url.parse().unwrap())
    }

    #[test]
    fn special_use_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("fd00::1", "private (unique local)"),
            ("fc00::1", "private (unique local)"),
            ("100.64.0.1", "private (shared, carrier-grade NAT)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
        ] {
            assert_eq!(special_use(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for public in ["93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "8.8.8.8"] {
            assert_eq!(special_use(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn a_bare_host_allows_only_the_default_port() {
        assert_eq!(check(&["example.com"], "http://example.com/x").unwrap().port, 80);
        assert_eq!(check(&["example.com"], "https://EXAMPLE.com/x").unwrap().port, 443);
        assert_eq!(check(&["example.com"], "http://example.com:80/x").unwrap().port, 80);
        let err = check(&["example.com"], "http://example.com:8080/x").unwrap_err();
        assert!(matches!(err, Refusal::PortNotGranted { port: 8080, default: 80, .. }), "{err}");
        let err = check(&["example.com:8080"], "http://example.com/x").unwrap_err();
        assert!(matches!(err, Refusal::PortNotGranted { port: 80, .. }), "{err}");
        assert!(check(&["example.com:8080"], "https://example.com:8080/x").is_ok());
        assert!(matches!(check(&["example.com"], "http://example.org/x"), Err(Refusal::HostNotGranted { .. })));
    }

    #[test]
    fn only_addresses_granted_as_literals_for_that_port_are_explicit() {
        let destination = check(&["db.internal:5984", "10.0.0.5:5984", "10.0.0.6", "[fd00::5]:5984"], "http://db.internal:5984/").unwrap();
        assert_eq!(destination.explicit, vec!["10.0.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 5984);
        assert_eq!(destination.permitted(vec![at("10.0.0.5"), at("10.0.0.7")]).unwrap(), vec![at("10.0.0.5")]);
        assert_eq!(destination.permitted(vec![at("::ffff:10.0.0.5")]).unwrap().len(), 1, "a mapped address is its IPv4 address");
        let err = destination.permitted(vec![at("10.0.0.6"), at("169.254.169.254")]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.6, a private address") && err.to_string().contains("\"10.0.0.6:5984\""), "{err}");
        assert_eq!(destination.permitted(vec![at("93.184.216.34")]).unwrap().len(), 1, "public addresses need no literal grant");
    }

    #[test]
    fn malformed_grants_are_refused() {
        for bad in ["http://example.com", "user@example.com", "example.com:http", "example.com:0", "", "a b"] {
            assert!(HostGrant::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(HostGrant::parse("[::1]:80").unwrap(), HostGrant { host: GrantedHost::Ip("::1".parse().unwrap()), port: Some(80) });
        assert_eq!(HostGrant::parse("Example.COM.").unwrap().host, GrantedHost::Name("example.com".into()));
    }

    #[test]
    fn randomness_comes_from_the_os_unless_a_seed_is_granted() {
        assert!(matches!(SliceRandom::for_grants(None), SliceRandom::Os));
        assert!(matches!(SliceRandom::for_grants(Some(&Grants::default())), SliceRandom::Os));
        let seeded = Grants { random_seed: Some(7), ..Grants::default() };
        let draw = || {
            let mut bytes = [0u8; 16];
            SliceRandom::for_grants(Some(&seeded)).fill(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(draw(), draw());
    }
}
