//! `bench store`: durable conditional appends by 1/8/64 writers, 100-event appends, tag reads
//! and a full read, next to the disk's raw flush rate; on the embedded store, or on FoundationDB
//! (`just bench store --backend fdb`, see [`super::Backend`]).
//!
//! On FoundationDB the run also reports the shape of an append transaction as the cluster counted
//! it (`\xff\xff/status/json`'s workload counters, read before and after a case, with the cluster
//! idle around it): mutations and storage reads per conditional append and per event of a
//! 100-event append. Those counters are refreshed by the cluster every ~5 s, so each measured
//! case waits 6 s on either side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::{
    AppendCondition, EmbeddedStore, Event, Position, Query, QueryItem, ReadOptions, SharedStore, Tenant,
};

use super::{fsync_per_s, Backend, Report};

/// Runs the store benchmark in `dir` (emptied first), each timed case for `seconds`, reads on a
/// log of `log_events` events.
pub async fn store(dir: &Path, seconds: f64, log_events: u64) -> anyhow::Result<Report> {
    let backend = Backend::from_env()?;
    let _ = std::fs::remove_dir_all(dir);
    let duration = Duration::from_secs_f64(seconds);
    let mut report = Report::for_backend("store", backend);
    let stores = Stores::new(backend, dir)?;
    let embedded = backend == Backend::Embedded;
    // The targets are the embedded store's (README); on FoundationDB the figures are reported as
    // measured, with what they cannot say in docs/fdb.md.
    let target = |text: String| if embedded { text } else { String::new() };
    let fsync = fsync_per_s(dir, duration)?;
    let fsync_note = if embedded {
        "raw 4 KiB append + fdatasync, this disk, this run"
    } else {
        "raw 4 KiB append + fdatasync, this disk (the cluster's log is on it), this run"
    };
    report.add("fsync_per_s", fsync, fsync_note);

    let before = stores.counters().await?;
    let w1 = appends(&stores, "w1", 1, 1, duration).await?;
    report.add("append_1w_per_s", w1.rate, target(format!("{:.2} x fsync (target >= 0.8)", w1.rate / fsync)));
    stores.shape(&mut report, "append_1w", before, w1.appends, "per conditional 1-event append (2 tags)").await?;
    let w8 = appends(&stores, "w8", 8, 1, duration).await?;
    report.add("append_8w_per_s", w8.rate, format!("{:.2} x fsync", w8.rate / fsync));
    let w64 = appends(&stores, "w64", 64, 1, duration).await?;
    report.add("append_64w_per_s", w64.rate, target(format!("target >= {:.0}", (0.5 * 64.0 * fsync).min(50_000.0))));
    let before = stores.counters().await?;
    let ev100 = appends(&stores, "ev100", 64, 100, duration).await?;
    report.add(
        "append_100ev_events_per_s",
        ev100.rate * 100.0,
        target(format!("target >= {:.0}", (0.5 * 6400.0 * fsync).min(500_000.0))),
    );
    stores.shape(&mut report, "event_100ev", before, ev100.appends * 100, "per event of a 100-event append").await?;

    let (tag_reads, full_read) = reads(&stores, &mut report, log_events, duration).await?;
    let tag_target = if embedded { " (target >= 50000)" } else { "" };
    report.add("tag_read_per_s", tag_reads, format!("~10 events by tag, log of {log_events} events{tag_target}"));
    report.add("full_read_events_per_s", full_read, format!("full forward read{}", target(" (target >= 5000000)".into())));
    stores.finish().await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

/// The store each case runs on: a fresh embedded store in its own directory, or the FDB store
/// under this run's prefix, cleared after each case (the one-process cluster keeps everything in
/// memory).
enum Stores {
    Embedded(PathBuf),
    #[cfg(feature = "fdb")]
    Fdb(crate::store::FdbStore),
}

impl Stores {
    fn new(backend: Backend, dir: &Path) -> anyhow::Result<Stores> {
        Ok(match backend {
            Backend::Embedded => Stores::Embedded(dir.to_path_buf()),
            #[cfg(feature = "fdb")]
            Backend::Fdb => {
                let mut options = crate::store::FdbOptions::new(super::fresh_prefix());
                options.cluster_file = std::env::var_os("FDB_CLUSTER_FILE").map(PathBuf::from);
                Stores::Fdb(crate::store::FdbStore::open(options)?)
            }
            #[cfg(not(feature = "fdb"))]
            Backend::Fdb => unreachable!("Backend::from_env refuses fdb without the feature"),
        })
    }

    fn open(&self, case: &str) -> anyhow::Result<SharedStore> {
        Ok(match self {
            Stores::Embedded(dir) => Arc::new(EmbeddedStore::open(dir.join(case))?),
            #[cfg(feature = "fdb")]
            Stores::Fdb(store) => Arc::new(store.clone()),
        })
    }

    /// After a case, its store handle dropped.
    async fn done(&self, case: &str) -> anyhow::Result<()> {
        match self {
            Stores::Embedded(dir) => std::fs::remove_dir_all(dir.join(case))?,
            #[cfg(feature = "fdb")]
            Stores::Fdb(store) => store.clear().await?,
        }
        Ok(())
    }

    async fn finish(&self) -> anyhow::Result<()> {
        match self {
            Stores::Embedded(_) => Ok(()),
            #[cfg(feature = "fdb")]
            Stores::Fdb(store) => Ok(store.clear().await?),
        }
    }

    /// The cluster's cumulative workload counters once they have settled (`None` on the
    /// embedded store).
    async fn counters(&self) -> anyhow::Result<Option<Counters>> {
        match self {
            Stores::Embedded(_) => Ok(None),
            #[cfg(feature = "fdb")]
            Stores::Fdb(store) => {
                tokio::time::sleep(Duration::from_secs(6)).await;
                Ok(Some(Counters::read(store).await?))
            }
        }
    }

    /// After a bulk load, waits until the storage server has applied every version (reads at a
    /// newer version wait for it), and reports how long that took.
    #[cfg_attr(not(feature = "fdb"), allow(unused_variables))]
    async fn settle(&self, report: &mut Report) -> anyhow::Result<()> {
        match self {
            Stores::Embedded(_) => Ok(()),
            #[cfg(feature = "fdb")]
            Stores::Fdb(store) => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(300) {
                    let status = status(store).await?;
                    let lag = status["cluster"]["qos"]["worst_data_lag_storage_server"]["seconds"].as_f64().unwrap_or(0.0);
                    if lag < 0.1 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                report.add(
                    "fdb.settle_s",
                    start.elapsed().as_secs_f64(),
                    "after the load, until the storage server's data lag was under 0.1 s (reads wait for it)",
                );
                Ok(())
            }
        }
    }

    /// Reports what the cluster did per `unit` (appends or events) since `before`.
    async fn shape(&self, report: &mut Report, key: &str, before: Option<Counters>, units: u64, what: &str) -> anyhow::Result<()> {
        let (Some(before), Some(after)) = (before, self.counters().await?) else {
            return Ok(());
        };
        let per = |a: f64, b: f64| (a - b) / units.max(1) as f64;
        report.add(&format!("fdb.mutations_per_{key}"), per(after.writes, before.writes), format!("keys set, atomic ops and clears {what}"));
        report.add(&format!("fdb.reads_per_{key}"), per(after.reads, before.reads), format!("storage-server reads (point or range) {what}"));
        report.add(&format!("fdb.bytes_written_per_{key}"), per(after.bytes_written, before.bytes_written), format!("bytes committed {what}"));
        report.add(&format!("fdb.transactions_per_{key}"), per(after.started, before.started), format!("read versions taken {what}"));
        report.add(
            &format!("fdb.conflicts_per_{key}"),
            per(after.conflicted, before.conflicted),
            format!("transactions failed by FDB's conflict check {what}"),
        );
        Ok(())
    }
}

/// `cluster.workload` of FDB's status document: cumulative since the cluster started.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "fdb"), allow(dead_code))]
struct Counters {
    writes: f64,
    reads: f64,
    bytes_written: f64,
    started: f64,
    conflicted: f64,
}

/// The cluster's status document (what `fdbcli --exec "status json"` prints).
#[cfg(feature = "fdb")]
async fn status(store: &crate::store::FdbStore) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let trx = store.database().create_trx()?;
    let status = trx.get(b"\xff\xff/status/json", false).await?.context("the cluster returned no status")?;
    Ok(serde_json::from_slice(&status)?)
}

#[cfg(feature = "fdb")]
impl Counters {
    async fn read(store: &crate::store::FdbStore) -> anyhow::Result<Counters> {
        use anyhow::Context;
        let status = status(store).await?;
        let workload = &status["cluster"]["workload"];
        let counter = |path: &[&str]| -> anyhow::Result<f64> {
            let mut value = workload;
            for key in path {
                value = &value[key];
            }
            value["counter"].as_f64().with_context(|| format!("no cluster.workload.{}.counter in the status", path.join(".")))
        };
        Ok(Counters {
            writes: counter(&["operations", "writes"])?,
            reads: counter(&["operations", "reads"])?,
            bytes_written: counter(&["bytes", "written"])?,
            started: counter(&["transactions", "started"])?,
            conflicted: counter(&["transactions", "conflicted"])?,
        })
    }
}

struct Appended {
    appends: u64,
    rate: f64,
}

/// `writers` tasks append `events_per_append` events each time, guarded by a condition on the
/// writer's own tag after its last append; returns the appends made and their rate per second.
async fn appends(stores: &Stores, case: &str, writers: usize, events_per_append: usize, duration: Duration) -> anyhow::Result<Appended> {
    let store = stores.open(case)?;
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
    let appends = count.load(Ordering::Relaxed);
    let rate = appends as f64 / start.elapsed().as_secs_f64();
    drop(store);
    stores.done(case).await?;
    Ok(Appended { appends, rate })
}

/// Loads `log_events` events (about 10 per tag), then measures tag reads and a full read.
async fn reads(stores: &Stores, report: &mut Report, log_events: u64, duration: Duration) -> anyhow::Result<(f64, f64)> {
    let store = stores.open("reads")?;
    let loading = Instant::now();
    let tenant = Tenant::new("bench")?;
    let keys = (log_events / 10).max(1);
    match stores {
        // One writer, appends of 10,000 events.
        Stores::Embedded(_) => {
            let mut loaded = 0;
            while loaded < log_events {
                let n = (log_events - loaded).min(10_000);
                store.append(&tenant, load_batch(loaded..loaded + n, keys), vec![]).await?;
                loaded += n;
            }
        }
        // FDB prefers transactions under 1 MB: appends of 1,000 events (~0.5 MB), 8 at a time.
        #[cfg(feature = "fdb")]
        Stores::Fdb(_) => {
            let next = Arc::new(AtomicU64::new(0));
            let loaders: Vec<_> = (0..8)
                .map(|_| {
                    let (store, tenant, next) = (store.clone(), tenant.clone(), next.clone());
                    tokio::spawn(async move {
                        loop {
                            let from = next.fetch_add(1_000, Ordering::Relaxed);
                            if from >= log_events {
                                return anyhow::Ok(());
                            }
                            store.append(&tenant, load_batch(from..(from + 1_000).min(log_events), keys), vec![]).await?;
                        }
                    })
                })
                .collect();
            for loader in loaders {
                loader.await??;
            }
        }
    }

    if !matches!(stores, Stores::Embedded(_)) {
        report.add("fdb.load_events_per_s", log_events as f64 / loading.elapsed().as_secs_f64(), "loading the read cases' log: appends of 1,000 events, 8 at a time");
    }
    stores.settle(report).await?;

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
    drop(stream);
    drop(store);
    stores.done("reads").await?;
    Ok((tag_reads, full))
}

/// The events `range` of the read cases' log: four types, one of `keys` tags each, 64 bytes.
fn load_batch(range: std::ops::Range<u64>, keys: u64) -> Vec<Event> {
    range
        .map(|i| Event::new(format!("Type{}", i % 4)).tag(format!("key:{}", fastrand::u64(0..keys))).data(vec![1u8; 64]))
        .collect()
}
