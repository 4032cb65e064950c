//! Commands with effects: capabilities granted per slice in the tenant's configuration —
//! outbound HTTP and HTTPS to an allow-list (tested against local servers on 127.0.0.1, which a
//! grant must name by address: loopback is refused otherwise), ports matched, `Host` from the
//! URL, timeouts and size caps, configuration values, a fixed clock, randomness from the OS or a
//! seed — and a slice that uses effects without a grant is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::deploy::{DeployError, Registry};
use counterpoint::runner::CommandRunner;
use counterpoint::runtime::InvokeError;
use counterpoint::store::{MemoryStore, SharedStore, Tenant};
use counterpoint::tenants::{Config, Tenants};
use counterpoint_tests::slices::{runtime, wasm};
use serde_json::{json, Value};

/// A local HTTP server: `/hello`, `/host` (the `Host` header it got), `/big` (2 MB), `/slow`
/// (answers after 2 s).
async fn outside() -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello from outside" }))
        .route(
            "/host",
            get(|headers: axum::http::HeaderMap| async move {
                headers.get_all("host").iter().map(|v| v.to_str().unwrap_or("?").to_string()).collect::<Vec<_>>().join(",")
            }),
        )
        .route("/big", get(|| async { "x".repeat(2 << 20) }))
        .route("/slow", get(|| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            "late"
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn registry(dir: &std::path::Path, grants: &str) -> Registry {
    let config = Config::parse(&format!("[tenants.acme]\n{grants}")).unwrap();
    Registry::open(runtime(), dir, Arc::new(Tenants::from_config(&config))).await.unwrap()
}

async fn run(registry: &Registry, command: &str, input: Value) -> Result<Value, InvokeError> {
    let tenant = Tenant::new("acme").unwrap();
    let store: SharedStore = Arc::new(MemoryStore::new());
    let slice = registry.get(&tenant, "effectful").unwrap();
    let out = CommandRunner::default().run(&slice, &store, &tenant, command, &json_to_msgpack(&input)).await?;
    Ok(msgpack_to_json(&out.output).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_effects_work_within_their_limits() {
    let server = outside().await;
    let dir = tempfile::tempdir().unwrap();
    let grants = format!(
        "[tenants.acme.effects.effectful]\nhttp_hosts = [\"{server}\"]\nhttp_timeout_ms = 300\nhttp_max_bytes = 1000\n\
         clock_ms = 1234\nrandom_seed = 7\nconfig = {{ greeting = \"hi\" }}\n"
    );
    let registry = registry(dir.path(), &grants).await;
    registry.deploy(&Tenant::new("acme").unwrap(), wasm("effectful"), Some("effectful")).await.unwrap();

    let fetched = run(&registry, "fetch", json!({"url": format!("http://{server}/hello")})).await.unwrap();
    assert_eq!(fetched, json!({"status": 200, "body": "hello from outside"}));

    // Another port on the same machine is not on the allow-list.
    let err = run(&registry, "fetch", json!({"url": "http://127.0.0.1:9/hello"})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("port 9 of 127.0.0.1 is not on this slice's allow-list")), "{err:?}");
    // HTTPS to a server that speaks plain HTTP fails its handshake; other schemes are refused.
    let err = run(&registry, "fetch", json!({"url": format!("https://{server}/hello")})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Store(m) if m.contains("request failed")), "{err:?}");
    let err = run(&registry, "fetch", json!({"url": format!("ftp://{server}/hello")})).await.unwrap_err();
    assert!(matches!(err, InvokeError::InvalidInput(_)), "{err:?}");

    let err = run(&registry, "fetch", json!({"url": format!("http://{server}/big")})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Store(m) if m.contains("at most 1000 bytes")), "{err:?}");
    let err = run(&registry, "fetch", json!({"url": format!("http://{server}/slow")})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Store(m) if m.contains("no response within 300 ms")), "{err:?}");

    let first = run(&registry, "settings", json!({"key": "greeting"})).await.unwrap();
    assert_eq!((first["value"].clone(), first["now_ms"].clone()), (json!("hi"), json!(1234)));
    let second = run(&registry, "settings", json!({"key": "missing"})).await.unwrap();
    assert_eq!(second["value"], Value::Null);
    assert_eq!(first["random"], second["random"], "a seeded invocation draws the same bytes");
    assert_eq!(first["wasi_random"], second["wasi_random"], "WASI's random is seeded too");
}

/// Without a seed, each invocation draws other bytes, from the `effects` import and from WASI
/// (that they come from the OS's CSPRNG is checked where the generator is chosen:
/// `runtime::effects` unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseeded_randomness_differs_between_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path(), "[tenants.acme.effects.effectful]\n").await;
    registry.deploy(&Tenant::new("acme").unwrap(), wasm("effectful"), Some("effectful")).await.unwrap();
    let first = run(&registry, "settings", json!({"key": "k"})).await.unwrap();
    let second = run(&registry, "settings", json!({"key": "k"})).await.unwrap();
    assert_ne!(first["wasi_random"], second["wasi_random"]);
    assert_ne!(first["random"], second["random"]);
    assert_eq!(first["wasi_random"].as_array().map(Vec::len), Some(8));
}

/// The allow-list is checked against where a request really goes: a granted name that resolves
/// to a loopback address (here `localhost`, and `127.1`, which is 127.0.0.1 written short) is
/// refused unless the address is granted too; a bare host allows only the default port; the
/// `Host` header is the URL's, whatever the slice sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_checks_addresses_ports_and_the_host_header() {
    let server = outside().await;
    let port = server.port();
    let acme = Tenant::new("acme").unwrap();
    let granting = |hosts: &[String]| {
        let hosts = hosts.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
        format!("[tenants.acme.effects.effectful]\nhttp_hosts = [{hosts}]\n")
    };
    let deployed = |grants: String| {
        let acme = acme.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let registry = registry(dir.path(), &grants).await;
            registry.deploy(&acme, wasm("effectful"), Some("effectful")).await.unwrap();
            (dir, registry)
        }
    };

    // A name granted, its loopback address not: refused, saying which rule and what to grant.
    let (_dir, registry) = deployed(granting(&[format!("localhost:{port}"), format!("127.1:{port}")])).await;
    for host in ["localhost", "127.1"] {
        let err = run(&registry, "fetch", json!({"url": format!("http://{host}:{port}/hello")})).await.unwrap_err();
        assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("a loopback address") && m.contains(&format!(":{port}\" to allow it"))), "{host}: {err:?}");
    }

    // Granted by address as well: the same requests go through.
    let (_dir, registry) = deployed(granting(&[format!("localhost:{port}"), format!("127.1:{port}"), format!("127.0.0.1:{port}")])).await;
    for host in ["localhost", "127.1", "127.0.0.1"] {
        let fetched = run(&registry, "fetch", json!({"url": format!("http://{host}:{port}/hello")})).await.unwrap();
        assert_eq!(fetched["body"], "hello from outside", "{host}");
    }

    // The slice's `Host` is dropped: the server sees the URL's.
    let spoofed = json!({"url": format!("http://127.0.0.1:{port}/host"), "headers": [["Host", "metadata.internal"], ["X-Other", "kept"]]});
    let fetched = run(&registry, "fetch", spoofed).await.unwrap();
    assert_eq!(fetched["body"], format!("127.0.0.1:{port}"));

    // A bare host allows its scheme's default port only.
    let (_dir, registry) = deployed(granting(&["127.0.0.1".into()])).await;
    let err = run(&registry, "fetch", json!({"url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains(&format!("port {port} of 127.0.0.1")) && m.contains("default port (80)")), "{err:?}");

    // Malformed grants are refused with the configuration.
    let bad = Config::parse(&granting(&["http://example.com".into()])).unwrap_err();
    assert!(bad.contains("tenants.acme.effects.effectful") && bad.contains("http_hosts"), "{bad}");
}

#[tokio::test]
async fn a_slice_using_effects_without_a_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path(), "").await;
    let err = registry.deploy(&Tenant::new("acme").unwrap(), wasm("effectful"), Some("effectful")).await.err().expect("refused");
    assert!(matches!(err, DeployError::NotGranted { .. }), "{err:?}");
    assert!(err.to_string().contains("[tenants.acme.effects.effectful]"), "{err}");
    // Slices that use no effects need no grant.
    registry.deploy(&Tenant::new("acme").unwrap(), wasm("orders"), Some("orders")).await.unwrap();
}

/// A local HTTPS server for `localhost` whose certificate is made now, and that certificate as
/// PEM (to trust it). It answers every request with `hello over TLS`.
async fn outside_over_tls() -> (std::net::SocketAddr, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = "hello over TLS";
                let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (address, certified.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_an_allowed_host_whose_authority_is_trusted() {
    let (server, ca_pem) = outside_over_tls().await;
    let url = format!("https://localhost:{}/hello", server.port());
    let acme = Tenant::new("acme").unwrap();

    // The grant trusts the server's authority: the request goes through, encrypted.
    let dir = tempfile::tempdir().unwrap();
    // `localhost` is a loopback address: the grant names that address too.
    let hosts = format!("http_hosts = [\"localhost:{0}\", \"127.0.0.1:{0}\"]", server.port());
    let trusted = format!("[tenants.acme.effects.effectful]\n{hosts}\nhttp_ca_pem = '''\n{ca_pem}'''\n");
    let registry = registry(dir.path(), &trusted).await;
    registry.deploy(&acme, wasm("effectful"), Some("effectful")).await.unwrap();
    let fetched = run(&registry, "fetch", json!({"url": url})).await.unwrap();
    assert_eq!(fetched, json!({"status": 200, "body": "hello over TLS"}));

    // Without it, the certificate is refused: the public authorities did not issue it.
    let dir = tempfile::tempdir().unwrap();
    let untrusted = format!("[tenants.acme.effects.effectful]\n{hosts}\n");
    let registry = self::registry(dir.path(), &untrusted).await;
    registry.deploy(&acme, wasm("effectful"), Some("effectful")).await.unwrap();
    let err = run(&registry, "fetch", json!({"url": url})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Store(m) if m.contains("request failed")), "{err:?}");

    // An authority that is not a certificate is refused with the configuration.
    let bad = Config::parse("[tenants.acme.effects.effectful]\nhttp_ca_pem = \"not a certificate\"\n").unwrap_err();
    assert!(bad.contains("tenants.acme.effects.effectful") && bad.contains("http_ca_pem"), "{bad}");
}

/// Granted directories through WASI's filesystem (`std::fs` in the slice): a read-only one can
/// be read, not written; a writable one can be written; nothing outside them is reachable, not by
/// `..` and not by a symbolic link. Granted variables are seen, the host's are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_directories_and_variables_and_nothing_else() {
    let (data, out, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let real = |dir: &tempfile::TempDir| std::fs::canonicalize(dir.path()).unwrap().display().to_string();
    std::fs::write(data.path().join("prices.txt"), "apple 3").unwrap();
    let secret = elsewhere.path().join("secret.txt");
    std::fs::write(&secret, "not for slices").unwrap();
    std::os::unix::fs::symlink(&secret, data.path().join("link.txt")).unwrap();
    let grants = format!(
        "[tenants.acme.effects.effectful]\nenv = {{ REGION = \"eu-west\" }}\n\
         dirs = [{{ host = {:?}, guest = \"/data\" }}, {{ host = {:?}, guest = \"/out\", writable = true }}]\n",
        real(&data),
        real(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path(), &grants).await;
    registry.deploy(&Tenant::new("acme").unwrap(), wasm("effectful"), Some("effectful")).await.unwrap();
    let files = |input: Value| {
        let registry = &registry;
        async move { run(registry, "files", input).await.unwrap() }
    };

    let report = files(json!({"read": "/data/prices.txt", "write": "/data/new.txt", "content": "x", "env": "REGION"})).await;
    assert_eq!(report["read"], json!({"Ok": "apple 3"}));
    assert!(report["write"]["Err"].is_string(), "a read-only directory refuses writes: {report}");
    assert!(!data.path().join("new.txt").exists());
    assert_eq!(report["env"], "eu-west");

    let report = files(json!({"write": "/out/report.txt", "content": "done", "env": "PATH"})).await;
    assert_eq!(report["write"], json!({"Ok": null}));
    assert_eq!(std::fs::read_to_string(out.path().join("report.txt")).unwrap(), "done");
    assert_eq!(report["env"], Value::Null, "the host's environment is not the slice's");

    // Out of the granted directories: by `..`, by a link, by an absolute path, by a write.
    let up = format!("/data/../..{}", secret.display());
    for path in [up.as_str(), "/data/link.txt", secret.to_str().unwrap(), "/etc/passwd"] {
        let report = files(json!({"read": path})).await;
        assert!(report["read"]["Err"].is_string(), "{path} was read: {report}");
    }
    let escape = format!("/out/../..{}", elsewhere.path().join("dropped.txt").display());
    let report = files(json!({"write": escape, "content": "x"})).await;
    assert!(report["write"]["Err"].is_string(), "{report}");
    assert!(!elsewhere.path().join("dropped.txt").exists());
}

/// A slice's WASI context is made at its first WASI call, or before it runs when directories are
/// granted: variables granted alone are seen all the same, and a granted directory gone since the
/// configuration loaded fails the invocation, naming it, instead of the slice running without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_granted_alone_are_seen_and_a_granted_directory_gone_fails_the_invocation() {
    let tenant = Tenant::new("acme").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alone = registry(dir.path(), "[tenants.acme.effects.effectful]\nenv = { REGION = \"eu-west\" }\n").await;
    alone.deploy(&tenant, wasm("effectful"), Some("effectful")).await.unwrap();
    let report = run(&alone, "files", json!({"env": "REGION"})).await.unwrap();
    assert_eq!(report["env"], "eu-west");

    let data = tempfile::tempdir().unwrap();
    let host = std::fs::canonicalize(data.path()).unwrap().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let grants = format!("[tenants.acme.effects.effectful]\nenv = {{ REGION = \"eu-west\" }}\ndirs = [{{ host = {host:?}, guest = \"/data\" }}]\n");
    let registry = registry(dir.path(), &grants).await;
    registry.deploy(&tenant, wasm("effectful"), Some("effectful")).await.unwrap();
    assert_eq!(run(&registry, "files", json!({"env": "REGION"})).await.unwrap()["env"], "eu-west");
    std::fs::remove_dir(data.path()).unwrap();
    let err = run(&registry, "files", json!({"env": "REGION"})).await.unwrap_err().to_string();
    assert!(err.contains(&format!("the directory granted as /data ({host}) cannot be opened")), "{err}");
}

#[tokio::test]
async fn directory_grants_are_checked_when_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let host = std::fs::canonicalize(dir.path()).unwrap().display().to_string();
    let grant = |dirs: String| Config::parse(&format!("[tenants.acme.effects.effectful]\ndirs = [{dirs}]\n"));
    let err = grant("{ host = \"/no/such/dir\", guest = \"/data\" }".into()).unwrap_err();
    assert!(err.contains("/no/such/dir is not a directory"), "{err}");
    let err = grant(format!("{{ host = {host:?}, guest = \"data\" }}")).unwrap_err();
    assert!(err.contains("must be absolute"), "{err}");
    let err = grant(format!("{{ host = {host:?}, guest = \"/a\" }}, {{ host = {host:?}, guest = \"/a/\" }}")).unwrap_err();
    assert!(err.contains("granted twice"), "{err}");
    // Opened by path at every invocation: only a real path, and nothing inside a writable grant,
    // where a slice could put a link in its place.
    std::fs::create_dir(dir.path().join("inner")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("inner"), dir.path().join("link")).unwrap();
    for path in [format!("{host}/link"), format!("{host}/inner/../inner"), "relative".into()] {
        let err = grant(format!("{{ host = {path:?}, guest = \"/data\" }}")).unwrap_err();
        assert!(err.contains("real path") || err.contains("not a directory"), "{path}: {err}");
    }
    let nested = format!(
        "[tenants.acme.effects.writer]\ndirs = [{{ host = {host:?}, guest = \"/w\", writable = true }}]\n\
         [tenants.globex.effects.reader]\ndirs = [{{ host = \"{host}/inner\", guest = \"/r\" }}]\n"
    );
    let err = Config::parse(&nested).unwrap_err();
    assert!(err.contains("lies inside") && err.contains("tenants.acme.effects.writer"), "{err}");
    let side_by_side = nested.replace("writable = true", "writable = false");
    Config::parse(&side_by_side).expect("read-only grants may nest");
    let err = Config::parse("[tenants.acme.effects.effectful]\nenv = { \"A=B\" = \"x\" }\n").unwrap_err();
    assert!(err.contains("not a variable name"), "{err}");
}
