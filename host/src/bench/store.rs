//! `bench store`: durable conditional appends by 1/8/64 writers, 100-event appends, tag reads
//! and a full read, on the embedded store, next to the disk's raw flush rate.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::{AppendCondition, EmbeddedStore, Event, EventStore, Position, Query, QueryItem, ReadOptions, Tenant};

use super::{fsync_per_s, Report};

/// Runs the store benchmark in `dir` (emptied first), each timed case for `seconds`, reads on a
/// log of `log_events` events.
pub async fn store(dir: &Path, seconds: f64, log_events: u64) -> anyhow::Result<Report> {
    let _ = std::fs::remove_dir_all(dir);
    let duration = Duration::from_secs_f64(seconds);
    let mut report = Report::new("store");
    let fsync = fsync_per_s(dir, duration)?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");

    let w1 = appends(&dir.join("w1"), 1, 1, duration).await?;
    report.add("append_1w_per_s", w1, format!("{:.2} x fsync (target >= 0.8)", w1 / fsync));
    let w8 = appends(&dir.join("w8"), 8, 1, duration).await?;
    report.add("append_8w_per_s", w8, format!("{:.2} x fsync", w8 / fsync));
    let w64 = appends(&dir.join("w64"), 64, 1, duration).await?;
    let target = (0.5 * 64.0 * fsync).min(50_000.0);
    report.add("append_64w_per_s", w64, format!("target >= {target:.0}"));
    let ev100 = appends(&dir.join("ev100"), 64, 100, duration).await? * 100.0;
    let target = (0.5 * 6400.0 * fsync).min(500_000.0);
    report.add("append_100ev_events_per_s", ev100, format!("target >= {target:.0}"));

    let (tag_reads, full_read) = reads(&dir.join("reads"), log_events, duration).await?;
    report.add("tag_read_per_s", tag_reads, format!("~10 events by tag, log of {log_events} events (target >= 50000)"));
    report.add("full_read_events_per_s", full_read, "full forward read (target >= 5000000)");
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

/// `writers` tasks append `events_per_append` events each time, guarded by a condition on the
/// writer's own tag after its last append; returns appends per second.
async fn appends(dir: &Path, writers: usize, events_per_append: usize, duration: Duration) -> anyhow::Result<f64> {
    let store = EmbeddedStore::open(dir)?;
    let tenant = Tenant::new("bench")?;
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, tenant, count) = (store.clone(), tenant.clone(), count.clone());
            tokio::spawn(async move {
                let stream = format!("stream:{w}");
                let query = Query::item(QueryItem::tags([stream.clone()]));
                let mut last: Option<Position> = None;
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let events = (0..events_per_append)
                        .map(|k| Event::new("Deposited").tag(stream.clone()).tag(format!("item:{w}-{i}-{k}")).data(vec![7u8; 48]))
                        .collect();
                    let condition = AppendCondition::new(query.clone(), last);
                    let positions = store.append(&tenant, events, vec![condition]).await?;
                    last = positions.last().copied();
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    drop(store);
    std::fs::remove_dir_all(dir)?;
    Ok(rate)
}

/// Loads `log_events` events (about 10 per tag), then measures tag reads and a full read.
async fn reads(dir: &Path, log_events: u64, duration: Duration) -> anyhow::Result<(f64, f64)> {
    let store = EmbeddedStore::open(dir)?;
    let tenant = Tenant::new("bench")?;
    let keys = (log_events / 10).max(1);
    let mut loaded = 0;
    while loaded < log_events {
        let n = (log_events - loaded).min(10_000);
        let events = (loaded..loaded + n)
            .map(|i| Event::new(format!("Type{}", i % 4)).tag(format!("key:{}", fastrand::u64(0..keys))).data(vec![1u8; 64]))
            .collect();
        store.append(&tenant, events, vec![]).await?;
        loaded += n;
    }

    let start = Instant::now();
    let (mut reads, mut seen) = (0u64, 0u64);
    while start.elapsed() < duration {
        let query = Query::item(QueryItem::tags([format!("key:{}", fastrand::u64(0..keys))]));
        let (events, _) = store.read(&tenant, query, ReadOptions::default()).await?.collect().await?;
        seen += events.len() as u64;
        reads += 1;
    }
    let tag_reads = reads as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(seen > 0, "tag reads found nothing");

    let start = Instant::now();
    let mut stream = store.read(&tenant, Query::all(), ReadOptions::default()).await?;
    let mut total = 0u64;
    while let Some(batch) = stream.next_batch().await? {
        total += batch.len() as u64;
    }
    let full = total as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(total == log_events, "full read returned {total} of {log_events} events");
    drop(store);
    std::fs::remove_dir_all(dir)?;
    Ok((tag_reads, full))
}
