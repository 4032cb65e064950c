//! `bench runtime`: instantiation, one command end to end, commands under load on the durable
//! store, and how contention on one boundary resolves.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::codec::json_to_msgpack;
use crate::runner::CommandRunner;
use crate::runtime::{Access, ReadAppender, Runtime, RuntimeConfig, Slice};
use crate::store::{EmbeddedStore, MemoryStore, SharedStore, Tenant};

use super::{fsync_per_s, Report};

pub async fn runtime(scratch: &Path, slices: &Path, seconds: f64) -> anyhow::Result<Report> {
    super::Backend::embedded_only("runtime")?;
    let _ = std::fs::remove_dir_all(scratch);
    let duration = Duration::from_secs_f64(seconds);
    let mut report = Report::new("runtime");
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(scratch.join("cache")), ..Default::default() })?;
    let wasm = slices.join("orders.wasm");
    let orders = Arc::new(runtime.load_file(&wasm).await.with_context(|| format!("loading {}", wasm.display()))?);
    let tenant = Tenant::new("bench")?;
    let memory: SharedStore = Arc::new(MemoryStore::new());

    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration.min(Duration::from_secs(2)) || samples.len() < 1000 {
        let io = ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly);
        let t = Instant::now();
        let instance = orders.instantiate(io).await?;
        samples.push(t.elapsed());
        instance.finish();
    }
    let instantiate = median_us(&mut samples);
    report.add("instantiate_us", instantiate, format!("median of {} fresh instances (target <= 15)", samples.len()));

    let runner = CommandRunner::default();
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < duration.min(Duration::from_secs(2)) || samples.len() < 1000 {
        let payload = json_to_msgpack(&json!({"order_id": format!("o-{i}"), "customer_id": "c"}));
        i += 1;
        let t = Instant::now();
        runner.run(&orders, &memory, &tenant, "place-order", &payload).await?;
        samples.push(t.elapsed());
    }
    let command = median_us(&mut samples);
    report.add("command_us", command, "median place-order: fresh instance, 1 read, 1 append, in memory (target <= 20)");

    let fsync = fsync_per_s(scratch, duration)?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");

    let durable: SharedStore = Arc::new(EmbeddedStore::open(scratch.join("store"))?);
    let rate = load(&orders, &durable, &tenant, 64, duration).await?;
    let target = (0.4 * 64.0 * fsync).min(20_000.0);
    report.add("commands_per_s_embedded_64", rate, format!("place-order, 64 concurrent, durable (target >= {target:.0})"));

    let pct = contention(&orders, &memory, &tenant, 16, 20).await?;
    report.add("contention_success_pct", pct, "16 concurrent add-item on one order, each re-run until decided");
    drop(durable);
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

fn median_us(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// `concurrency` tasks placing distinct orders for `duration`; commands per second.
async fn load(slice: &Arc<Slice>, store: &SharedStore, tenant: &Tenant, concurrency: usize, duration: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (slice, store, tenant, done) = (slice.clone(), store.clone(), tenant.clone(), done.clone());
            tokio::spawn(async move {
                let runner = CommandRunner::default();
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let payload = json_to_msgpack(&json!({"order_id": format!("load-{task}-{i}"), "customer_id": "c"}));
                    runner.run(&slice, &store, &tenant, "place-order", &payload).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// `rounds` rounds of `concurrency` add-item commands racing on one order; % that succeeded.
async fn contention(slice: &Arc<Slice>, store: &SharedStore, tenant: &Tenant, concurrency: usize, rounds: usize) -> anyhow::Result<f64> {
    let (mut ok, mut total) = (0usize, 0usize);
    for round in 0..rounds {
        let order = format!("hot-{round}");
        let runner = CommandRunner::default();
        runner.run(slice, store, tenant, "place-order", &json_to_msgpack(&json!({"order_id": order, "customer_id": "c"}))).await?;
        let tasks: Vec<_> = (0..concurrency)
            .map(|k| {
                let (slice, store, tenant, runner) = (slice.clone(), store.clone(), tenant.clone(), runner.clone());
                let payload = json_to_msgpack(&json!({"order_id": order, "sku": format!("s{k}"), "qty": 1, "price": 1}));
                tokio::spawn(async move { runner.run(&slice, &store, &tenant, "add-item", &payload).await.is_ok() })
            })
            .collect();
        for task in tasks {
            ok += task.await? as usize;
            total += 1;
        }
    }
    Ok(100.0 * ok as f64 / total as f64)
}
