//! `bench http`: `counterpoint serve` measured from outside, over real HTTP.
//!
//! The server runs as a child process (this same binary, `counterpoint serve`), so its RSS is its
//! own and the client's work is not mixed into it; both share the machine's cores.
//!
//! - `commands_per_s_64`, `p99_ms_64`: orders `place-order` commands (distinct orders), 64
//!   concurrent keep-alive connections, the durable embedded store.
//! - `swap_failed_requests`: the same load while the orders slice is hot-swapped 10 times
//!   between two builds (the second is `orders.wasm` plus a custom section, as a build that
//!   stamps a build id: same code, other bytes, another hash, compiled on its first deploy).
//! - `hot_64_conflicts`, `hot_64_commands_per_s`: the `courses` slice, one course with room for
//!   everyone, 64 keep-alive connections subscribing distinct students to it (one hot consistency
//!   boundary): requests answered `409 conflict` (target 0) and subscriptions decided per second.
//! - `full_read_*`: the first 1,000,000 events of a log read over HTTP by one client, streamed
//!   as MessagePack and as NDJSON and paged as JSON; see [`reads`] (also run alone as `bench
//!   http-reads`). Embedded store only.
//! - `rss_mb_1000_slices`: a fresh server with 100 tenants × 10 deployed slices, idle. The 10 are
//!   real, distinct slices: `counterpoint new` scaffolds built for wasm32-wasip2 (once, cached
//!   under `<target>/bench-slices`), differing in their names. Every tenant deploys the same 10
//!   components, which the runtime compiles once and shares; tenants deploying 1000 different
//!   components would add their compiled code on top.
//! - `fsync_per_s`: the disk's raw flush rate, in the same run.
//!
//! With `--backend fdb` (`just bench http --backend fdb`) the servers run with `[store] kind =
//! "fdb"` on the cluster `FDB_CLUSTER_FILE` names, each under a fresh prefix (cleared at the end),
//! and the report is `http-fdb`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::{fresh_prefix, fsync_per_s, Backend, Report};
use crate::tenants::hash_token;

mod reads;

pub use reads::http_reads;

const TOKEN: &str = "bench-token";
const ADMIN: &str = "bench-admin";
const CONNECTIONS: usize = 64;
const SWAPS: usize = 10;
const TENANTS: usize = 100;
const SLICES_PER_TENANT: usize = 10;

pub async fn http(scratch: &Path, slices: &Path, seconds: f64) -> anyhow::Result<Report> {
    let backend = Backend::from_env()?;
    let mut stores = StoreSections { backend, prefixes: Vec::new() };
    let result = measure(scratch, slices, seconds, &mut stores).await;
    stores.clear().await?;
    result
}

async fn measure(scratch: &Path, slices: &Path, seconds: f64, stores: &mut StoreSections) -> anyhow::Result<Report> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    let duration = Duration::from_secs_f64(seconds);
    let embedded = stores.backend == Backend::Embedded;
    let mut report = Report::for_backend("http", stores.backend);
    let orders_path = slices.join("orders.wasm");
    let orders = std::fs::read(&orders_path).with_context(|| format!("reading {} (build the slices first)", orders_path.display()))?;
    // Built before anything is timed: compiling them would disturb the measurements.
    let generated = generated_slices(slices)?;

    let fsync = fsync_per_s(scratch, duration)?;

    // Throughput and latency.
    let data = scratch.join("throughput");
    let limits = "requests_per_second = 10000000\nburst = 10000000\n";
    let server = Server::start(&data, &(config(&data, &[("bench".to_string(), limits.to_string())]) + &stores.next()))?;
    let client = Http::new(&server.address);
    client.deploy("bench", "orders", orders.clone()).await?;
    load(&client, Duration::from_millis(500).min(duration), None).await?; // warm up
    let mut measured = load(&client, duration, None).await?;
    let target = (0.3 * 64.0 * fsync).min(10_000.0);
    let on = if embedded { format!("durable (target >= {target:.0})") } else { "on the FoundationDB cluster".into() };
    report.add(
        "commands_per_s_64",
        measured.ok as f64 / measured.elapsed.as_secs_f64(),
        format!("place-order over HTTP, 64 keep-alive connections, {on}"),
    );
    report.add("p99_ms_64", measured.p99_ms(), format!("{} commands, {} failed", measured.ok, measured.failed));

    // Hot swaps under the same load.
    let builds = [builds_last(&orders, 0), builds_last(&orders, 1)];
    let swapping = Arc::new(AtomicBool::new(true));
    let swapper = {
        let (client, swapping) = (client.clone(), swapping.clone());
        tokio::spawn(async move {
            let result = async {
                for swap in 1..=SWAPS {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    client.deploy("bench", "orders", builds[swap % 2].clone()).await?;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                anyhow::Ok(())
            }
            .await;
            swapping.store(false, Ordering::Relaxed);
            result
        })
    };
    let during = load(&client, Duration::from_secs(3600), Some(swapping)).await?;
    swapper.await??;
    // The last version deployed is the one serving.
    let described = client.get("/v1/t/bench/slices/orders").await?;
    let serving: serde_json::Value = serde_json::from_str(&described)?;
    if serving["hash"] != crate::runtime::hash_of(&builds_last(&orders, SWAPS)) {
        bail!("after the swaps the server runs {}, not the last version deployed", serving["hash"]);
    }
    report.add(
        "swap_failed_requests",
        during.failed as f64,
        format!("during {SWAPS} hot swaps under 64 connections ({} commands succeeded; target 0)", during.ok),
    );

    // One hot consistency boundary over HTTP.
    let courses_path = slices.join("courses.wasm");
    let courses = std::fs::read(&courses_path).with_context(|| format!("reading {} (build the slices first)", courses_path.display()))?;
    client.deploy("bench", "courses", courses).await?;
    let hot = hot_course(&client, duration).await?;
    report.add(
        "hot_64_conflicts",
        hot.conflicts as f64,
        "subscribe-student answered 409 conflict, 64 connections on one course with room for all (target 0)",
    );
    report.add(
        "hot_64_commands_per_s",
        hot.ok as f64 / hot.elapsed.as_secs_f64(),
        format!("subscriptions decided per second on that one course over HTTP, {}", if embedded { "durable" } else { "on the FoundationDB cluster" }),
    );
    server.stop()?;

    if embedded {
        reads::full_reads(&scratch.join("reads"), limits, &mut report).await?;
    }

    // Memory: 100 tenants × 10 slices, idle.
    let data = scratch.join("tenants");
    let tenants: Vec<(String, String)> = (0..TENANTS).map(|i| (format!("t{i:03}"), String::new())).collect();
    let server = Server::start(&data, &(config(&data, &tenants) + &stores.next()))?;
    let client = Http::new(&server.address);
    let components: Vec<(String, Vec<u8>)> =
        generated.iter().map(|(name, path)| Ok((name.clone(), std::fs::read(path)?))).collect::<anyhow::Result<_>>()?;
    let components = Arc::new(components);
    let next = Arc::new(AtomicU64::new(0));
    let deployers: Vec<_> = (0..4)
        .map(|_| {
            let (client, components, next, tenants) = (client.clone(), components.clone(), next.clone(), tenants.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= TENANTS * SLICES_PER_TENANT {
                        return anyhow::Ok(());
                    }
                    let (name, wasm) = &components[i % SLICES_PER_TENANT];
                    client.deploy(&tenants[i / SLICES_PER_TENANT].0, name, wasm.clone()).await?;
                }
            })
        })
        .collect();
    for deployer in deployers {
        deployer.await??;
    }
    let metrics = client.get("/metrics").await?;
    let deployed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("counterpoint_deployed_slices "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    if deployed as usize != TENANTS * SLICES_PER_TENANT {
        bail!("the server reports {deployed} deployed slices, not {}", TENANTS * SLICES_PER_TENANT);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // idle
    let rss = server.rss_mb()?;
    report.add(
        "rss_mb_1000_slices",
        rss,
        format!("{TENANTS} tenants x {SLICES_PER_TENANT} distinct slices, idle (target <= 4096)"),
    );
    server.stop()?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

/// The `[store]` section of each server's configuration: none for the embedded store; on
/// FoundationDB, the cluster and a fresh prefix per server, cleared at the end.
struct StoreSections {
    backend: Backend,
    prefixes: Vec<String>,
}

impl StoreSections {
    fn next(&mut self) -> String {
        match self.backend {
            Backend::Embedded => String::new(),
            Backend::Fdb => {
                let prefix = fresh_prefix();
                let cluster = std::env::var("FDB_CLUSTER_FILE").unwrap_or_default();
                self.prefixes.push(prefix.clone());
                format!("[store]\nkind = \"fdb\"\ncluster_file = {cluster:?}\nprefix = {prefix:?}\n")
            }
        }
    }

    async fn clear(&self) -> anyhow::Result<()> {
        #[cfg(feature = "fdb")]
        for prefix in &self.prefixes {
            let mut options = crate::store::FdbOptions::new(prefix.clone());
            options.cluster_file = std::env::var_os("FDB_CLUSTER_FILE").map(PathBuf::from);
            crate::store::FdbStore::open(options)?.clear().await?;
        }
        Ok(())
    }
}

fn config(data: &Path, tenants: &[(String, String)]) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmin_token_sha256 = \"{}\"\n",
        data.display().to_string(),
        hash_token(ADMIN)
    );
    for (name, limits) in tenants {
        text += &format!("[tenants.{name}]\ntokens_sha256 = [\"{}\"]\n[tenants.{name}.limits]\n{limits}\n", hash_token(TOKEN));
    }
    text
}

/// `counterpoint serve` as a child process.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(data: &Path, config: &str) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let config_path = data.with_extension("toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(counterpoint_binary()?)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("COUNTERPOINT_LISTEN")
            .env_remove("COUNTERPOINT_DATA")
            .env_remove("COUNTERPOINT_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting counterpoint serve")?;
        // The server says where it listens on stderr; the rest of its stderr is drained (the
        // last lines kept, for an error message).
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let tail_writer = tail.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("counterpoint serving on http://") {
                    let _ = tx.send(address.trim().to_string());
                }
                let mut tail = tail_writer.lock().expect("tail");
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => Ok(Server { child, address }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("counterpoint serve did not start: {}", tail.lock().expect("tail").join("\n"))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kb / 1024.0)
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(mut self) -> anyhow::Result<()> {
        let sent = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        if !sent.success() {
            bail!("could not signal the server");
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the server exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// This binary when it is `counterpoint`; otherwise (an example, a test) the `counterpoint` next
/// to it or one directory up.
fn counterpoint_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "counterpoint") {
        return Ok(exe);
    }
    let dir = exe.parent().context("the executable's directory")?;
    [dir.join("counterpoint"), dir.join("../counterpoint")]
        .into_iter()
        .find(|p| p.is_file())
        .context("no counterpoint binary next to this executable: build it (cargo build --release)")
}

#[derive(Clone)]
struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new(address: &str) -> Http {
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(CONNECTIONS * 2).build_http();
        Http { base: format!("http://{address}"), client }
    }

    async fn send(&self, method: Method, path: &str, token: &str, body: Vec<u8>) -> anyhow::Result<(u16, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body)))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn deploy(&self, tenant: &str, name: &str, wasm: Vec<u8>) -> anyhow::Result<()> {
        let (status, body) = self.send(Method::PUT, &format!("/v1/t/{tenant}/slices/{name}"), ADMIN, wasm).await?;
        if status != 200 {
            bail!("deploying {name} for {tenant}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    /// `events/read` of tenant `bench`, answered in `accept`: the whole body.
    async fn read(&self, accept: &str, body: &serde_json::Value) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.read_frames(accept, body, |frame| {
            all.extend_from_slice(frame);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// `events/read` of tenant `bench`, streamed in `accept`: each frame to `frame` as it comes
    /// (an error from it ends the read); the bytes received.
    async fn read_frames(
        &self,
        accept: &str,
        body: &serde_json::Value,
        mut frame: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/t/bench/events/read", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", accept)
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.into_body().collect().await?.to_bytes();
            bail!("events/read as {accept}: {status} {}", String::from_utf8_lossy(&body));
        }
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(next) = body.frame().await {
            if let Ok(data) = next?.into_data() {
                bytes += data.len() as u64;
                frame(&data)?;
            }
        }
        Ok(bytes)
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let (_, body) = self.send(Method::GET, path, ADMIN, Vec::new()).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

struct Measured {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn p99_ms(&mut self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * 0.99).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i].as_secs_f64() * 1e3
    }
}

/// 64 tasks placing distinct orders for `duration`, or while `running` is set.
async fn load(client: &Http, duration: Duration, running: Option<Arc<AtomicBool>>) -> anyhow::Result<Measured> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|task| {
            let (client, running) = (client.clone(), running.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
                let mut i = 0u64;
                loop {
                    let go_on = match &running {
                        Some(running) => running.load(Ordering::Relaxed) && start.elapsed() < duration,
                        None => start.elapsed() < duration,
                    };
                    if !go_on {
                        break;
                    }
                    let body = json!({"order_id": format!("r{run}-{task}-{i}"), "customer_id": "c"}).to_string().into_bytes();
                    i += 1;
                    let t = Instant::now();
                    match client.send(Method::POST, "/v1/t/bench/slices/orders/commands/place-order", TOKEN, body).await {
                        Ok((200, _)) => {
                            ok += 1;
                            latencies.push(t.elapsed());
                        }
                        Ok((status, body)) => {
                            failed += 1;
                            if failed <= 3 {
                                eprintln!("bench http: {status} {}", String::from_utf8_lossy(&body));
                            }
                        }
                        Err(err) => {
                            failed += 1;
                            if failed <= 3 {
                                eprintln!("bench http: {err:#}");
                            }
                        }
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut measured = Measured { ok: 0, failed: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for task in tasks {
        let (ok, failed, latencies) = task.await?;
        measured.ok += ok;
        measured.failed += failed;
        measured.latencies.extend(latencies);
    }
    measured.elapsed = start.elapsed();
    Ok(measured)
}

struct Hot {
    ok: u64,
    conflicts: u64,
    elapsed: Duration,
}

/// 64 connections subscribing distinct students to one course, defined with room for all of
/// them, for `duration`: every request must succeed or be a `409 conflict` (counted); anything
/// else fails the bench, since no subscription here can be rejected.
async fn hot_course(client: &Http, duration: Duration) -> anyhow::Result<Hot> {
    let course = format!("hot-{:08x}", fastrand::u32(..));
    let define = json!({"course_id": course, "capacity": 10_000_000}).to_string().into_bytes();
    let (status, body) = client.send(Method::POST, "/v1/t/bench/slices/courses/commands/define-course", TOKEN, define).await?;
    if status != 200 {
        bail!("define-course: {status} {}", String::from_utf8_lossy(&body));
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|task| {
            let (client, course) = (client.clone(), course.clone());
            tokio::spawn(async move {
                let (mut ok, mut conflicts) = (0u64, 0u64);
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let body = json!({"course_id": course, "student_id": format!("s{task}-{i}")}).to_string().into_bytes();
                    i += 1;
                    let (status, body) = client.send(Method::POST, "/v1/t/bench/slices/courses/commands/subscribe-student", TOKEN, body).await?;
                    match status {
                        200 => ok += 1,
                        409 if error_code(&body) == Some("conflict") => conflicts += 1,
                        _ => bail!("subscribe-student on the hot course: {status} {}", String::from_utf8_lossy(&body)),
                    }
                }
                anyhow::Ok((ok, conflicts))
            })
        })
        .collect();
    let mut hot = Hot { ok: 0, conflicts: 0, elapsed: Duration::ZERO };
    for task in tasks {
        let (ok, conflicts) = task.await??;
        hot.ok += ok;
        hot.conflicts += conflicts;
    }
    hot.elapsed = start.elapsed();
    Ok(hot)
}

/// The `error.code` of an error body, if it is one.
fn error_code(body: &[u8]) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        error: Error<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Error<'a> {
        code: &'a str,
    }
    serde_json::from_slice::<Body>(body).ok().map(|b| b.error.code)
}

/// The version deployed by swap `n`: orders itself when even, the second build when odd.
fn builds_last(orders: &[u8], n: usize) -> Vec<u8> {
    if n.is_multiple_of(2) { orders.to_vec() } else { with_custom_section(orders, "bench-second-build") }
}

/// `wasm` with a custom section appended: the same component, behaviour and name, but other
/// bytes and so another hash — a second build of the slice, as a build that stamps a build id
/// would produce. The hot-swap benchmark and tests swap between such builds.
pub fn with_custom_section(wasm: &[u8], content: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"build-id";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(content.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Ten distinct slices (`bench-slice-0` … `-9`): `counterpoint new` scaffolds, built for
/// wasm32-wasip2 and kept under `<target>/bench-slices` (`slices` is `<target>/wasm32-wasip2/release`);
/// cargo is asked every time, a no-op when they are up to date.
fn generated_slices(slices: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    // `slices` is <target>/wasm32-wasip2/release.
    let slices = std::fs::canonicalize(slices).with_context(|| format!("{} is missing", slices.display()))?;
    let target = slices.parent().and_then(Path::parent).context("slices is <target>/wasm32-wasip2/release")?;
    let root = target.join("bench-slices");
    let build_target = root.join("target");
    let mut out = Vec::new();
    for i in 0..SLICES_PER_TENANT {
        let name = format!("bench-slice-{i}");
        let wasm = build_target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
        let dir = root.join(&name);
        if !dir.join("Cargo.toml").is_file() {
            let _ = std::fs::remove_dir_all(&dir);
            crate::scaffold::new_slice(&name, &dir)?;
            eprintln!("bench http: building {name} (kept in {})", root.display());
        }
        // Always asked, so a changed SDK is picked up; a no-op when up to date.
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &build_target)
            .status()
            .context("running cargo to build the generated slices")?;
        if !status.success() || !wasm.is_file() {
            bail!("building {} failed", dir.display());
        }
        out.push((name, wasm));
    }
    Ok(out)
}
