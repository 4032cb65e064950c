//! `bench migrate`: `counterpoint export` and `import` on the embedded store: a log of
//! `log_events` order-like events exported as the binary stream to a file, and that file imported
//! into a fresh store (durable batches of 4096), next to the disk's raw flush rate.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{fsync_per_s, Backend, Report};
use crate::store::{EmbeddedStore, Event, EventStore, SharedStore, Tenant};
use crate::transfer::{self, Encoding, ImportOptions, MappingFile, StreamReader, StreamWriter};

pub async fn migrate(dir: &Path, seconds: f64, log_events: u64) -> anyhow::Result<Report> {
    Backend::embedded_only("migrate")?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut report = Report::new("migrate");
    let fsync = fsync_per_s(dir, Duration::from_secs_f64(seconds))?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");

    let tenant = Tenant::new("bench")?;
    let source: SharedStore = Arc::new(EmbeddedStore::open(dir.join("source"))?);
    load(source.as_ref(), &tenant, log_events).await?;

    let stream = dir.join("export.bin");
    let start = Instant::now();
    let writer = StreamWriter::new(BufWriter::with_capacity(1 << 20, File::create(&stream)?), Encoding::Binary)?;
    let (file, summary) = transfer::export(source.as_ref(), std::slice::from_ref(&tenant), writer).await?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let export = start.elapsed().as_secs_f64();
    anyhow::ensure!(summary.events == log_events, "exported {} events of {log_events}", summary.events);
    report.add("export_events_per_s", log_events as f64 / export, format!("binary stream to a file, {log_events} events (target >= 500000)"));
    let bytes = std::fs::metadata(&stream)?.len();
    report.add("export_bytes_per_event", bytes as f64 / log_events as f64, "binary stream");

    let start = Instant::now();
    let writer = StreamWriter::new(std::io::sink(), Encoding::Jsonl)?;
    transfer::export(source.as_ref(), std::slice::from_ref(&tenant), writer).await?;
    report.add("export_jsonl_events_per_s", log_events as f64 / start.elapsed().as_secs_f64(), "JSON lines, written nowhere");
    drop(source);

    let target: SharedStore = Arc::new(EmbeddedStore::open(dir.join("target"))?);
    let start = Instant::now();
    let reader = StreamReader::open(BufReader::with_capacity(1 << 20, File::open(&stream)?))?;
    let mut mapping = MappingFile::new(BufWriter::with_capacity(1 << 20, File::create(dir.join("mapping.tsv"))?))?;
    let summary = transfer::import(target.as_ref(), reader, Some(&mut mapping), &ImportOptions::default()).await?;
    mapping.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let import = start.elapsed().as_secs_f64();
    anyhow::ensure!(summary.appended == log_events, "imported {} events of {log_events}", summary.appended);
    report.add(
        "import_events_per_s",
        log_events as f64 / import,
        format!("into the embedded store, {} durable appends, with the mapping file (target >= 200000)", summary.appends),
    );
    report.add("migrate_s", export + import, format!("export + import of {log_events} events"));
    drop(target);
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

/// `n` events like the demo's: an order's item added, two tags, ~50 bytes of MessagePack data and
/// the command's name as metadata.
async fn load(store: &dyn EventStore, tenant: &Tenant, n: u64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < n {
        let events: Vec<Event> = (done..n.min(done + 4096))
            .map(|i| {
                let data = rmp_serde::to_vec_named(&serde_json::json!({"order_id": format!("o-{}", i / 4), "sku": format!("sku-{}", i % 97), "qty": i % 5 + 1, "price": 120}))
                    .expect("JSON encodes");
                let mut event = Event::new("ItemAdded").tag(format!("order_id:o-{}", i / 4)).tag(format!("sku:sku-{}", i % 97)).data(data);
                event.metadata = vec![("command".into(), "add-item".into())];
                event
            })
            .collect();
        done += events.len() as u64;
        store.append(tenant, events, vec![]).await.context("loading the log")?;
    }
    Ok(())
}
