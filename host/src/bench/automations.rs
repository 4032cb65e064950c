//! `bench automations`: how fast a trivial automation follows the log, and how far behind it
//! runs while appends arrive at a steady rate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::automations::{AutomationId, Automations, RetryPolicy};
use crate::deploy::Registry;
use crate::readmodels::{EmbeddedState, ReadModelId, ReadModels};
use crate::runner::CommandRunner;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{EmbeddedStore, Event, Position, SharedStore, Tenant};
use crate::tenants::Tenants;

use super::{fsync_per_s, Report};

pub async fn automations(scratch: &Path, slices: &Path, seconds: f64) -> anyhow::Result<Report> {
    super::Backend::embedded_only("automations")?;
    let _ = std::fs::remove_dir_all(scratch);
    let mut report = Report::new("automations");
    let fsync = fsync_per_s(scratch, Duration::from_secs_f64(seconds.min(2.0)))?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");

    let tenant = Tenant::new("bench")?;
    let store: SharedStore = Arc::new(EmbeddedStore::open(scratch.join("events"))?);
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(scratch.join("cache")), ..Default::default() })?;
    let registry = Arc::new(Registry::open(runtime, scratch, Arc::new(Tenants::single(&tenant))).await?);
    // The `hostile` test slice carries `tick`, an automation that reacts to `Ticked` with nothing.
    registry.deploy(&tenant, std::fs::read(slices.join("hostile.wasm"))?, Some("hostile")).await?;
    let tick = |i: u64| Event::new("Ticked").tag(format!("n:{i}"));

    // Throughput: a backlog of events, then the time until the checkpoint has passed them all.
    let backlog = 50_000u64;
    for chunk in 0..backlog / 5_000 {
        store.append(&tenant, (0..5_000).map(|i| tick(chunk * 5_000 + i)).collect(), vec![]).await?;
    }
    let last = store.head(&tenant).await?;
    let automations = Automations::new(store.clone(), registry.clone(), CommandRunner::default(), RetryPolicy::default());
    let started = Instant::now();
    automations.start();
    wait_until(&automations, &tenant, last, Duration::from_secs(300)).await?;
    let rate = backlog as f64 / started.elapsed().as_secs_f64();
    report.add("automation_events_per_s", rate, "a trivial automation catching up on 50,000 events (target >= 20000)");

    // Read models: the inventory slice's `stock-levels` (a read and a write of its state per
    // event) catching up on a backlog; each batch commits its writes and checkpoint durably.
    registry.deploy(&tenant, std::fs::read(slices.join("inventory.wasm"))?, Some("inventory")).await?;
    let received = |i: u64| {
        let sku = format!("sku-{}", i % 100);
        let mut event = Event::new("StockReceived").tag(format!("sku:{sku}"));
        event.data = crate::codec::json_to_msgpack(&serde_json::json!({"sku": sku, "qty": 1 + i % 7}));
        event
    };
    for chunk in 0..backlog / 5_000 {
        store.append(&tenant, (0..5_000).map(|i| received(chunk * 5_000 + i)).collect(), vec![]).await?;
    }
    let state = Arc::new(EmbeddedState::open(scratch.join("readmodels.redb"))?);
    let read_models = ReadModels::new(store.clone(), state, registry.clone());
    let id = ReadModelId { tenant: tenant.clone(), slice: "inventory".into(), name: "stock-levels".into() };
    let started = Instant::now();
    read_models.catch_up(&id).await?;
    let rate = backlog as f64 / started.elapsed().as_secs_f64();
    let answer = read_models.query(&id, &crate::codec::json_to_msgpack(&serde_json::json!({})), None, Duration::ZERO).await?;
    let levels = crate::codec::msgpack_to_json(&answer).unwrap_or_default();
    let received: u64 = levels.as_array().into_iter().flatten().filter_map(|l| l["received"].as_u64()).sum();
    anyhow::ensure!(received == (0..backlog).map(|i| 1 + i % 7).sum::<u64>(), "the read model did not apply every event once");
    report.add("readmodel_events_per_s", rate, "stock-levels catching up on 50,000 events, durable commits (target >= 20000)");
    drop(read_models);

    // Lag: 1,000 appends per second for `seconds`; per event, the time from its append being
    // acknowledged to the automation's durable checkpoint passing it.
    let id = AutomationId { tenant: tenant.clone(), slice: "hostile".into(), name: "tick".into() };
    let rate_per_s = 1_000u64;
    let total = (seconds * rate_per_s as f64) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (automations, id, stop) = (automations.clone(), id.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: Vec<(Instant, Position)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some(progress) = automations.progress(&id)
                    && seen.last().is_none_or(|(_, p)| *p != progress.checkpoint)
                {
                    seen.push((Instant::now(), progress.checkpoint));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if let Some(progress) = automations.progress(&id) {
                seen.push((Instant::now(), progress.checkpoint));
            }
            seen
        })
    };
    let mut appended: Vec<(Position, Instant)> = Vec::new();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_micros(i * 1_000_000 / rate_per_s);
        tokio::time::sleep_until(due.into()).await;
        let position = store.append(&tenant, vec![tick(backlog + i)], vec![]).await?[0];
        appended.push((position, Instant::now()));
    }
    let last = appended.last().map(|(p, _)| *p).unwrap_or_default();
    wait_until(&automations, &tenant, last, Duration::from_secs(60)).await?;
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.await?;
    let mut lags: Vec<f64> = appended
        .iter()
        .filter_map(|(position, at)| {
            let (when, _) = seen.iter().find(|(_, checkpoint)| checkpoint >= position)?;
            Some(when.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    anyhow::ensure!(lags.len() == appended.len(), "the automation's progress was not observed for every event");
    lags.sort_by(f64::total_cmp);
    let p99 = lags[(lags.len() * 99 / 100).min(lags.len() - 1)];
    report.add("lag_ms_p99", p99, format!("{rate_per_s} appends/s for {seconds} s: append acknowledged -> checkpoint past it (target <= 100)"));
    automations.stop().await;
    drop((automations, registry, store));
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

async fn wait_until(automations: &Automations, tenant: &Tenant, position: Position, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let id = AutomationId { tenant: tenant.clone(), slice: "hostile".into(), name: "tick".into() };
    loop {
        if automations.progress(&id).is_some_and(|p| p.checkpoint >= position) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the automation did not catch up within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
