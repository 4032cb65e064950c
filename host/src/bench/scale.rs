//! `bench scale`: the embedded store on a big log — how long a fresh process takes to open it,
//! the memory it holds, and reads, condition checks and appends on it.
//!
//! The log (`--log-events`, default 100,000,000) is built in `<data dir>/bench-scale/<N>/` with a
//! progress bar: appends of 10,000 events of four types, each event tagged with one of N / 10
//! keys (about 10 events per tag) and 64 bytes of data. A finished log is kept (a `BUILT` file
//! says so) and reused by the next run of the same size, since building 100 M events takes a
//! while. The measuring process works on a copy of it (`<N>.measured`, hard links but for the
//! open segment: [`WorkingCopy`]), so its appends do not grow the log that later runs measure.
//!
//! Everything after the build runs in a fresh child process (this binary again, told by
//! `COUNTERPOINT_BENCH_SCALE_CHILD`), so that `open_s` includes nothing cached in this one and the
//! memory figures (`VmRSS`) are the store's alone: open and answer one tag read (`open_s`,
//! `rss_mb_after_open`; the store was closed cleanly, so the open segment's index is in a file,
//! and a first child measures the same open without that file, as after a crash before the
//! running store's first checkpoint of it, the worst case: `open_after_crash_s`,
//! `rss_mb_after_crash_open`), random 128-byte reads of the log's files (`random_log_read_per_s`: the
//! page cache's own speed in this run), 100,000 random tag reads (`tag_read_per_s`,
//! `rss_mb_after_reads`; then by two readers at once, `tag_read_2_readers_per_s`; and
//! `tag_read_vs_10_log_reads`, against the ten random reads of its events alone),
//! 64 writers each reading a random old tag and appending under the condition that nothing
//! matching it came after the read (`condition_check_per_s`), 64 writers appending on their
//! own tags (`append_64w_per_s`), and one full read (`full_read_events_per_s`). It also says
//! what the indexes hold: `sealed_segments` (each with its index file), `bloom_mb` (the bloom
//! filters held in memory), `search_parts` (the runs
//! of merged index files and the segments left over, which a search goes through),
//! `events_in_memory` (the open segment's, indexed in memory) and `index_cache_mb` after the
//! reads. Before the child starts, the store is opened once and left to merge the index files
//! that are due (`index_merge_s`: 0 unless the log was built before runs), and the files of
//! the store that its reads use are read twice (`page_cache_warm_s`): the log, the runs and the
//! index files no run covers, not the covered ones, which searches skip. The child then starts
//! with what its reads use in the page cache, as a restarted host does on a machine whose memory
//! holds it (a page read twice is on the kernel's active list, which other files read once do
//! not evict first). Without it, the figures are the disk's and whatever else the machine last
//! read.
//!
//! Last, the child drops every file of the store from the page cache (`posix_fadvise`
//! `DONTNEED`), as on a machine whose memory does not hold the log, and measures random 128-byte
//! reads of the log's files again (`uncached_log_read_per_s`: the disk's speed for reads that
//! miss) and up to [`UNCACHED_TAG_READS`] random tag reads by one reader for `--seconds`
//! (`tag_read_uncached_per_s`; `tag_read_uncached_vs_10_log_reads` against the ten reads of its
//! events alone, waiting one after another), then, out of the page cache again, one full read
//! (`full_read_uncached_events_per_s`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{fsync_per_s, Backend, Report};
use crate::store::{AppendCondition, EmbeddedStore, Event, EventStore, Position, Query, QueryItem, ReadOptions, Tenant};

/// Set in the child process to the store's directory.
const CHILD_VAR: &str = "COUNTERPOINT_BENCH_SCALE_CHILD";
/// Set in a child process that measures the open alone.
const OPEN_ONLY_VAR: &str = "COUNTERPOINT_BENCH_SCALE_OPEN_ONLY";
const TAG_READS: u64 = 100_000;
/// Tag reads of the store out of the page cache: at most this many, at most `--seconds` long.
const UNCACHED_TAG_READS: u64 = 20_000;
const LOAD_BATCH: u64 = 10_000;

/// Runs the benchmark on a log of `log_events` events kept under `dir`; each timed append case
/// runs for `seconds`. In the child process, measures the store it is pointed at instead.
pub async fn scale(dir: &Path, seconds: f64, log_events: u64) -> anyhow::Result<Report> {
    Backend::embedded_only("scale")?;
    let duration = Duration::from_secs_f64(seconds);
    if let Some(store_dir) = std::env::var_os(CHILD_VAR) {
        return measure(Path::new(&store_dir), log_events, duration).await;
    }
    anyhow::ensure!(log_events >= 10, "--log-events must be at least 10");
    let store_dir = dir.join(log_events.to_string());
    let mut report = Report::new("scale");
    report.add("log_events", log_events as f64, "events in the log before the measured appends");
    let (store, built) = build(&store_dir, log_events).await?;
    report.add("build_s", built, "building the log (0: reused from an earlier run)");
    let merge_s = settle_indexes(&store).await;
    drop(store);
    report.add("index_merge_s", merge_s, "waiting for index files to be merged into runs (a log from before runs)");
    report.add("disk_bytes_per_event", disk_bytes(&store_dir)? as f64 / log_events as f64, "every file of the store");
    report.add("fsync_per_s", fsync_per_s(dir, duration)?, "raw 4 KiB append + fdatasync, this disk, this run");
    report.add("page_cache_warm_s", read_files_reads_use(&store_dir)?, "reading the files reads use twice, so that the child finds them in the page cache");

    // As after a crash before the open segment's first checkpoint: no index file describes it.
    let after_crash = run_child(dir, &store_dir, log_events, seconds, Child::OpenAfterCrash)?;
    for (key, child_key, note) in [
        ("open_after_crash_s", "open_s", "the same without the open segment's index file, as after a crash before its first checkpoint: the open scans the whole open segment (the worst case; a running store writes one each time the segment has grown 8 MiB, 2 s apart)"),
        ("rss_mb_after_crash_open", "rss_mb_after_open", "the process's resident memory then"),
    ] {
        let value = after_crash.get(child_key).and_then(serde_json::Value::as_f64).with_context(|| format!("the child reported no {child_key}"))?;
        report.add(key, value, note);
    }
    let child = run_child(dir, &store_dir, log_events, seconds, Child::Measure)?;
    let fsync = report.get("fsync_per_s");
    for (key, note) in [
        ("open_s", "a fresh process opens the store (closed cleanly) and answers one tag read (target <= 1 at 100 M)".to_string()),
        ("rss_mb_after_open", "the process's resident memory then".into()),
        ("rss_mb_after_reads", format!("after {TAG_READS} random tag reads (target <= 512 at 100 M)")),
        ("tag_read_per_s", "~10 events by one random tag, one reader (target >= 50,000)".into()),
        ("tag_read_2_readers_per_s", "the same, two readers at once".into()),
        ("random_log_read_per_s", "random 128-byte reads of the log's files, page cache, one thread (a tag read makes ~10)".into()),
        ("condition_check_per_s", "64 writers: read a random old tag, append under a condition on it".into()),
        ("condition_conflicts", "of those, appends refused by their condition".into()),
        ("append_64w_per_s", format!("64 writers on their own tags (target >= {:.0})", (32.0 * fsync).min(50_000.0))),
        ("full_read_events_per_s", "one forward read of the whole log (target >= 5,000,000)".into()),
        ("sealed_segments", "sealed log segments, each read through its index file".into()),
        ("search_parts", "index files a search of the sealed segments goes through: runs and segments".into()),
        ("bloom_mb", "bloom filters held in memory: the runs' and the uncovered segments' (covered segments hold none)".into()),
        ("events_in_memory", "events indexed in memory after the open (the open segment's)".into()),
        ("index_cache_mb", "index-file blocks cached after the tag reads".into()),
        ("uncached_log_read_per_s", "random 128-byte reads of the log's files out of the page cache (the disk), one thread".into()),
        ("tag_read_uncached_per_s", "~10 events by one random tag, one reader, the store out of the page cache".into()),
        ("full_read_uncached_events_per_s", "one forward read of the whole log, out of the page cache".into()),
    ] {
        let value = child.get(key).and_then(serde_json::Value::as_f64).with_context(|| format!("the child reported no {key}"))?;
        report.add(key, value, note);
    }
    report.add(
        "tag_read_vs_10_log_reads",
        report.get("tag_read_per_s") * 10.0 / report.get("random_log_read_per_s"),
        "tag reads against the random log reads their ~10 events alone would allow (1 = only those)",
    );
    report.add(
        "tag_read_uncached_vs_10_log_reads",
        report.get("tag_read_uncached_per_s") * 10.0 / report.get("uncached_log_read_per_s"),
        "the same out of the page cache: above 1 where a read's events are fetched from the disk at once",
    );

    Ok(report)
}

/// What a child process measures.
#[derive(Clone, Copy, PartialEq)]
enum Child {
    /// Everything after the build, on the store as a clean close left it.
    Measure,
    /// Only the open, without the open segment's index that a clean close writes.
    OpenAfterCrash,
}

/// Runs a fresh process of this binary on a working copy of the store in `store_dir`; its report.
fn run_child(dir: &Path, store_dir: &Path, log_events: u64, seconds: f64, child: Child) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let child_out = dir.join("child-report");
    let _ = std::fs::remove_dir_all(&child_out);
    let work_dir = WorkingCopy::of(store_dir, &dir.join(format!("{log_events}.measured")), child == Child::Measure)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(["bench", "scale", "--log-events", &log_events.to_string(), "--seconds", &seconds.to_string(), "--out"])
        .arg(&child_out)
        .env(CHILD_VAR, &work_dir.0)
        .stdout(std::process::Stdio::null());
    if child == Child::OpenAfterCrash {
        command.env(OPEN_ONLY_VAR, "1");
    }
    let status = command.status().context("starting the measuring process")?;
    drop(work_dir);
    anyhow::ensure!(status.success(), "the measuring process failed: {status}");
    let path = child_out.join("scale-child.json");
    let report = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let _ = std::fs::remove_dir_all(&child_out);
    Ok(report)
}

/// A copy of the store in `built` for the measuring process, whose appends then leave the built
/// log as it was built: every run measures a log of `--log-events` events, not one grown by the
/// runs before it (and searching more loose segments each time). Removed when dropped.
struct WorkingCopy(PathBuf);

impl WorkingCopy {
    /// The store appends only to its open segment, the highest-numbered one: that is copied, and
    /// synced, so that the first measured flush does not write the copy. The other segments,
    /// index files and runs are never written in place (replaced by a rename, removed by an
    /// unlink), so they are hard-linked: instant at any size, and read through the same pages of
    /// the page cache. Any other file is copied; the lock and the `BUILT` marker are left out.
    /// Without `with_close_index`, the open segment's checkpoint files (from a clean close) are left out.
    fn of(built: &Path, work: &Path, with_close_index: bool) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let copy = WorkingCopy(work.to_path_buf());
        let names: Vec<String> = std::fs::read_dir(built)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        let segment = |name: &str| name.strip_suffix(".log").and_then(|number| number.parse::<u32>().ok());
        let open_segment = names.iter().filter_map(|name| segment(name)).max();
        // The open segment's checkpoint files: `<segment>.idx` and `<segment>+<from>.idx`.
        let checkpoint = |name: &str| open_segment.is_some_and(|number| name.strip_prefix(&format!("{number:010}")).is_some_and(|rest| rest == ".idx" || rest.starts_with('+')));
        let left_out = |name: &String| matches!(name.as_str(), "LOCK" | "BUILT") || name.ends_with(".tmp") || (!with_close_index && checkpoint(name));
        for name in names.iter().filter(|name| !left_out(name)) {
            let (from, to) = (built.join(name), work.join(name));
            let sealed = segment(name).is_some_and(|number| Some(number) != open_segment);
            if sealed || name.ends_with(".idx") || name.ends_with(".run") {
                std::fs::hard_link(&from, &to).with_context(|| format!("linking {} to {}", from.display(), to.display()))?;
            } else {
                std::fs::copy(&from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
                std::fs::File::open(&to).and_then(|file| file.sync_data()).with_context(|| format!("syncing {}", to.display()))?;
            }
        }
        Ok(copy)
    }
}

impl Drop for WorkingCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log in `dir`, open, built first unless a finished one of `log_events` events is there;
/// the seconds spent building.
async fn build(dir: &Path, log_events: u64) -> anyhow::Result<(EmbeddedStore, f64)> {
    let marker = dir.join("BUILT");
    let tenant = Tenant::new("bench")?;
    if std::fs::read_to_string(&marker).is_ok_and(|text| text.trim() == log_events.to_string()) {
        let store = EmbeddedStore::open(dir)?;
        let head = store.head(&tenant).await?.dense();
        if head == log_events {
            eprintln!("reusing the log of {log_events} events in {}", dir.display());
            return Ok((store, 0.0));
        }
        // Measured by a build from before the working copy, which appended to it.
        eprintln!("the kept log in {} holds {head} events, not {log_events}: building it again", dir.display());
    }
    let _ = std::fs::remove_dir_all(dir);
    let start = Instant::now();
    let store = EmbeddedStore::open(dir)?;
    let keys = keys(log_events);
    let bar = indicatif::ProgressBar::new(log_events).with_style(
        indicatif::ProgressStyle::with_template("building the log [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}")?
            .progress_chars("=> "),
    );
    let mut loaded = 0;
    let mut rng = fastrand::Rng::with_seed(log_events);
    // The next batch is encoded while the previous one is written.
    let mut pending: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    while loaded < log_events {
        let n = (log_events - loaded).min(LOAD_BATCH);
        let events: Vec<Event> = (loaded..loaded + n)
            .map(|i| Event::new(format!("Type{}", i % 4)).tag(format!("key:{}", rng.u64(0..keys))).data(vec![1u8; 64]))
            .collect();
        if let Some(previous) = pending.take() {
            previous.await??;
        }
        let (store, tenant) = (store.clone(), tenant.clone());
        pending = Some(tokio::spawn(async move { store.append(&tenant, events, vec![]).await.map(drop).map_err(Into::into) }));
        loaded += n;
        bar.set_position(loaded);
    }
    if let Some(previous) = pending {
        previous.await??;
    }
    bar.finish();
    std::fs::write(&marker, format!("{log_events}\n"))?;
    Ok((store, start.elapsed().as_secs_f64()))
}

/// Waits until `store` has indexed every sealed segment and merged the index files that are due
/// into runs, as a store that has run a while has; the seconds spent. Its sealer writes nothing
/// more then.
async fn settle_indexes(store: &EmbeddedStore) -> f64 {
    let start = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner().with_message("merging index files into runs");
    while store.index_memory().indexing {
        spinner.tick();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spinner.finish_and_clear();
    start.elapsed().as_secs_f64()
}

/// The keys the log's events are tagged with: about ten events each.
fn keys(log_events: u64) -> u64 {
    (log_events / 10).max(1)
}

/// Reads the files of the store in `dir` that its reads use twice, with a progress bar; the
/// seconds spent. Pages read once stay on the kernel's inactive list, the first to go when the
/// machine reads anything else.
fn read_files_reads_use(dir: &Path) -> anyhow::Result<f64> {
    use std::io::Read;
    const PASSES: u64 = 2;
    let start = Instant::now();
    let files = files_reads_use(dir)?;
    let bytes: u64 = files.iter().map(|path| path.metadata().map_or(0, |m| m.len())).sum();
    let bar = indicatif::ProgressBar::new(PASSES * bytes).with_style(
        indicatif::ProgressStyle::with_template("reading the store into the page cache [{bar:40}] {bytes}/{total_bytes}, {bytes_per_sec}")?
            .progress_chars("=> "),
    );
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..PASSES {
        for path in &files {
            let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bar.inc(n as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok(start.elapsed().as_secs_f64())
}

/// The store's files that its reads go to, by name: every one but the index files of segments
/// a run covers (searches go through the run; no read of this benchmark asks those files).
fn files_reads_use(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let skipped = crate::store::embedded_check::covered_index_files(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| !skipped.contains(path))
        .collect();
    files.sort();
    Ok(files)
}

fn disk_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Random positioned 128-byte reads of the log's segment files, one thread, for about a second:
/// the limit a tag read's event reads meet, measured in the same run, since it moves with the
/// machine's load and with how much of the store the page cache holds.
fn random_log_reads_per_s(dir: &Path) -> anyhow::Result<f64> {
    use std::os::unix::fs::FileExt;
    const READ: u64 = 128;
    // Each file with where its positions start in all of them, so that a read lands on a byte
    // chosen evenly over the log (the short open segment gets its share, no more).
    let (mut files, mut total) = (Vec::new(), 0);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "log") {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let len = file.metadata()?.len();
            if len > READ {
                files.push((total, file));
                total += len - READ;
            }
        }
    }
    anyhow::ensure!(!files.is_empty(), "no log segment in {}", dir.display());
    let mut buf = [0u8; READ as usize];
    let (start, mut reads) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1_000 {
            let at = fastrand::u64(0..total);
            let (first, file) = &files[files.partition_point(|(first, _)| *first <= at) - 1];
            file.read_exact_at(&mut buf, at - first)?;
        }
        reads += 1_000;
    }
    Ok(reads as f64 / start.elapsed().as_secs_f64())
}

/// The process's resident memory, in MiB.
fn rss_mb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb / 1024.0)
}

fn tag(key: u64) -> Query {
    Query::item(QueryItem::tags([format!("key:{key}")]))
}

/// The child's measurements on the store in `dir`.
async fn measure(dir: &Path, log_events: u64, duration: Duration) -> anyhow::Result<Report> {
    let mut report = Report::new("scale-child");
    let keys = keys(log_events);
    let tenant = Tenant::new("bench")?;

    let start = Instant::now();
    let store = Arc::new(EmbeddedStore::open(dir)?);
    let (events, _) = store.read(&tenant, tag(fastrand::u64(0..keys)), ReadOptions::default()).await?.collect().await?;
    anyhow::ensure!(!events.is_empty(), "a tag read found nothing: is {} the benchmark's log?", dir.display());
    report.add("open_s", start.elapsed().as_secs_f64(), "");
    report.add("rss_mb_after_open", rss_mb()?, "");
    let memory = store.index_memory();
    report.add("sealed_segments", memory.sealed_segments as f64, "");
    report.add("events_in_memory", memory.events_in_memory as f64, "");
    report.add("search_parts", memory.search_parts as f64, "");
    report.add("bloom_mb", memory.bloom_bytes as f64 / (1 << 20) as f64, "");
    if std::env::var_os(OPEN_ONLY_VAR).is_some() {
        return Ok(report);
    }
    report.add("random_log_read_per_s", random_log_reads_per_s(dir)?, "");

    let start = Instant::now();
    let mut seen = 0;
    for _ in 0..TAG_READS {
        let (events, _) = store.read(&tenant, tag(fastrand::u64(0..keys)), ReadOptions::default()).await?.collect().await?;
        seen += events.len() as u64;
    }
    report.add("tag_read_per_s", TAG_READS as f64 / start.elapsed().as_secs_f64(), "");
    report.add("rss_mb_after_reads", rss_mb()?, "");
    report.add("index_cache_mb", store.index_memory().cache_bytes as f64 / (1 << 20) as f64, "");
    anyhow::ensure!(seen > TAG_READS, "tag reads found {seen} events in {TAG_READS} reads");

    // The same reads by two tasks at once: what a host on this 2-core machine serves.
    let start = Instant::now();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                for _ in 0..TAG_READS / 2 {
                    store.read(&tenant, tag(fastrand::u64(0..keys)), ReadOptions::default()).await?.collect().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for reader in readers {
        reader.await??;
    }
    report.add("tag_read_2_readers_per_s", TAG_READS as f64 / start.elapsed().as_secs_f64(), "");

    let (checked, conflicts) = writers(&store, &tenant, duration, move |store, tenant, _, _| async move {
        let query = tag(fastrand::u64(0..keys));
        let read = store.read(&tenant, query.clone(), ReadOptions::default()).await?;
        let (_, after) = read.collect().await?;
        let event = Event::new("Checked").tag(format!("key:{}", fastrand::u64(0..keys))).data(vec![2u8; 64]);
        Ok((vec![event], AppendCondition::new(query, Some(after))))
    })
    .await?;
    anyhow::ensure!(checked > 0.0, "no conditional append succeeded");
    report.add("condition_check_per_s", checked, "");
    report.add("condition_conflicts", conflicts as f64, "");

    let (appends, _) = writers(&store, &tenant, duration, |_, _, w, last| async move {
        let stream = format!("stream:{w}");
        let event = Event::new("Deposited").tag(stream.clone()).data(vec![7u8; 48]);
        Ok((vec![event], AppendCondition::new(Query::item(QueryItem::tags([stream])), last)))
    })
    .await?;
    anyhow::ensure!(appends > 0.0, "no append of the 64 writers succeeded");
    report.add("append_64w_per_s", appends, "");

    report.add("full_read_events_per_s", full_read(&store, &tenant, log_events).await?, "");

    // Out of memory: what a host whose machine cannot hold the log in its page cache reads.
    drop_from_page_cache(dir)?;
    report.add("uncached_log_read_per_s", random_log_reads_per_s(dir)?, "");
    drop_from_page_cache(dir)?;
    let (start, mut reads) = (Instant::now(), 0u64);
    while reads < UNCACHED_TAG_READS && start.elapsed() < duration {
        store.read(&tenant, tag(fastrand::u64(0..keys)), ReadOptions::default()).await?.collect().await?;
        reads += 1;
    }
    report.add("tag_read_uncached_per_s", reads as f64 / start.elapsed().as_secs_f64(), "");
    drop_from_page_cache(dir)?;
    report.add("full_read_uncached_events_per_s", full_read(&store, &tenant, log_events).await?, "");
    Ok(report)
}

/// One forward read of the whole log: events a second.
async fn full_read(store: &EmbeddedStore, tenant: &Tenant, log_events: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut stream = store.read(tenant, Query::all(), ReadOptions::default()).await?;
    let mut total = 0u64;
    while let Some(batch) = stream.next_batch().await? {
        total += batch.len() as u64;
    }
    anyhow::ensure!(total >= log_events, "the full read returned {total} of at least {log_events} events");
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Asks the kernel to drop every file of the store in `dir` from the page cache (`posix_fadvise`
/// `DONTNEED`: pages not yet written back, or mapped, stay).
fn drop_from_page_cache(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let file = std::fs::File::open(entry.path()).with_context(|| format!("opening {}", entry.path().display()))?;
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
                .with_context(|| format!("dropping {} from the page cache", entry.path().display()))?;
        }
    }
    Ok(())
}

/// 64 writers, each appending what `next` makes (given the writer's number and its last
/// position) for `duration`; the successful appends per second and the appends refused by
/// their condition.
async fn writers<F, Fut>(store: &Arc<EmbeddedStore>, tenant: &Tenant, duration: Duration, next: F) -> anyhow::Result<(f64, u64)>
where
    F: Fn(Arc<EmbeddedStore>, Tenant, usize, Option<Position>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<Event>, AppendCondition)>> + Send,
{
    let (done, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|w| {
            let (store, tenant, next, done, refused) = (store.clone(), tenant.clone(), next.clone(), done.clone(), refused.clone());
            tokio::spawn(async move {
                // From the head: a reused log holds earlier runs' appends on the same tags.
                let mut last = Some(store.head(&tenant).await?);
                while start.elapsed() < duration {
                    let (events, condition) = next(store.clone(), tenant.clone(), w, last).await?;
                    match store.append(&tenant, events, vec![condition]).await {
                        Ok(positions) => {
                            last = positions.last().copied();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_condition_failed() => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), refused.load(Ordering::Relaxed)))
}

/// Where the CLI keeps the benchmark's logs: beside the other benchmarks' scratch directory,
/// which they empty.
pub fn scale_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("bench-scale")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::store::EmbeddedOptions;

    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap() != "LOCK")
            .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
            .collect()
    }

    async fn open(dir: &Path) -> EmbeddedStore {
        let options = EmbeddedOptions { segment_bytes: 16 << 10, checkpoint_min_bytes: 0, ..Default::default() };
        let store = EmbeddedStore::open_with(dir, options).unwrap();
        settle_indexes(&store).await;
        store
    }

    async fn events(store: &EmbeddedStore, tenant: &Tenant) -> usize {
        store.read(tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap().0.len()
    }

    async fn append_batches(store: &EmbeddedStore, tenant: &Tenant, batches: std::ops::Range<u64>) {
        for batch in batches {
            let events = (0..50).map(|i| Event::new("Type0").tag(format!("key:{}", batch * 50 + i)).data(vec![1u8; 64])).collect();
            store.append(tenant, events, vec![]).await.unwrap();
        }
        settle_indexes(store).await;
    }

    /// The copy is measured as the benchmark does, long enough to seal segments, index them and
    /// merge them into a run over the linked ones.
    #[tokio::test]
    async fn the_measured_appends_leave_the_built_log_as_it_was_built() {
        let scratch = tempfile::tempdir().unwrap();
        let (built, work) = (scratch.path().join("2000"), scratch.path().join("2000.measured"));
        let tenant = Tenant::new("bench").unwrap();
        let store = open(&built).await;
        append_batches(&store, &tenant, 0..40).await;
        let memory = store.index_memory();
        assert!(memory.sealed_segments > 8 && memory.search_parts < memory.sealed_segments, "segments, and a run over some");
        drop(store);
        let before = files(&built);
        assert!(before.keys().any(|name| name.ends_with(".run")));

        let copy = WorkingCopy::of(&built, &work, true).unwrap();
        // Sealed segments, index files and runs are shared, not copied; the open segment is the copy's own.
        let inode = |dir: &Path, name: &str| std::fs::metadata(dir.join(name)).unwrap().ino();
        let segments: Vec<&String> = before.keys().filter(|name| name.ends_with(".log")).collect();
        let (open_segment, sealed) = segments.split_last().unwrap();
        assert!(sealed.iter().all(|name| inode(&built, name) == inode(&work, name)));
        assert!(before.keys().filter(|name| name.ends_with(".idx") || name.ends_with(".run")).all(|name| inode(&built, name) == inode(&work, name)));
        assert_ne!(inode(&built, open_segment), inode(&work, open_segment));

        let store = open(&work).await;
        assert_eq!(events(&store, &tenant).await, 2000, "the copy holds the built log");
        let parts = store.index_memory().search_parts;
        append_batches(&store, &tenant, 40..80).await;
        assert_eq!(events(&store, &tenant).await, 4000);
        assert!(store.index_memory().search_parts <= parts, "the copy's new segments were merged into runs too");
        drop(store);

        assert_eq!(files(&built), before, "the built log's files are as they were, byte for byte");
        assert_eq!(events(&open(&built).await, &tenant).await, 2000);
        drop(copy);
        assert!(!work.exists(), "the copy is removed when dropped");

        // A copy as a crash before any checkpoint leaves it: none of the open segment's files.
        let number = open_segment.strip_suffix(".log").unwrap();
        assert!(before.keys().any(|name| name.starts_with(number) && name.ends_with(".idx")), "the close checkpointed the open segment");
        let _copy = WorkingCopy::of(&built, &work, false).unwrap();
        assert!(files(&work).keys().all(|name| !(name.starts_with(number) && name.ends_with(".idx"))), "{:?}", files(&work).keys());
    }
}
