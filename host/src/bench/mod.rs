//! Benchmarks: `counterpoint bench NAME` (or `just bench NAME`) prints a table and writes
//! `target/bench/NAME.json`. Durable throughput is stated next to `fsync_per_s`, the raw flush
//! rate of the same disk measured in the same run, because flush times swing widely.
//!
//! `store` and `http` also run on FoundationDB: `just bench store --backend fdb` starts a
//! one-process cluster (`tests/fdb.sh run`), builds with `--features fdb` and runs the bench with
//! `COUNTERPOINT_BENCH_BACKEND=fdb` and `FDB_CLUSTER_FILE` naming that cluster; the report is
//! then `NAME-fdb` (`target/bench/store-fdb.json`), with `"backend": "fdb"` in it.

mod http;
mod polyglot;
mod automations;
mod contention;
mod migrate;
mod runtime;
mod scale;
mod store;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use http::{http, http_reads, with_custom_section};
pub use polyglot::polyglot;
pub use automations::automations;
pub use contention::contention;
pub use migrate::migrate;
pub use runtime::runtime;
pub use scale::{scale, scale_dir};
pub use store::store;

/// A benchmark's results: named numbers, in the order they were measured. A key with dots,
/// `group.name`, is written to the JSON as `name` inside the object `group`.
pub struct Report {
    name: String,
    /// Text fields (`backend`), first in the table and the JSON.
    labels: Vec<(String, String)>,
    rows: Vec<(String, f64, String)>,
}

impl Report {
    pub fn new(name: &str) -> Self {
        Report { name: name.into(), labels: Vec::new(), rows: Vec::new() }
    }

    /// A report for `bench` on `backend`: named `bench` on the embedded store and
    /// `bench-<backend>` otherwise, with `"backend"` in it either way.
    pub fn for_backend(bench: &str, backend: Backend) -> Self {
        let mut report = Report::new(&backend.report_name(bench));
        report.label("backend", backend.name());
        report
    }

    pub fn label(&mut self, key: &str, value: &str) {
        println!("  {key:<28} {value:>14}");
        self.labels.push((key.into(), value.into()));
    }

    pub fn add(&mut self, key: &str, value: f64, note: impl Into<String>) {
        let note = note.into();
        println!("  {key:<28} {value:>14.1}  {note}");
        self.rows.push((key.into(), value, note));
    }

    pub fn get(&self, key: &str) -> f64 {
        self.rows.iter().find(|r| r.0 == key).map_or(f64::NAN, |r| r.1)
    }

    /// Prints the table and writes `<out_dir>/<name>.json`.
    pub fn finish(&self, out_dir: &Path) -> anyhow::Result<PathBuf> {
        println!("\n{:<28} {:>14}  note", format!("bench {}", self.name), "value");
        println!("{}", "-".repeat(78));
        for (key, value) in &self.labels {
            println!("{key:<28} {value:>14}");
        }
        for (key, value, note) in &self.rows {
            println!("{key:<28} {value:>14.1}  {note}");
        }
        std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let path = out_dir.join(format!("{}.json", self.name));
        std::fs::write(&path, serde_json::to_string_pretty(&self.to_json()?)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
        Ok(path)
    }

    /// The rows as one JSON object, a dotted key nested (`python.command_us` is
    /// `{"python": {"command_us": ..}}`); NaN is `null`.
    fn to_json(&self) -> anyhow::Result<serde_json::Value> {
        let mut root = serde_json::Map::new();
        for (key, value) in &self.labels {
            root.insert(key.clone(), value.clone().into());
        }
        for (key, value, _) in &self.rows {
            let mut groups: Vec<&str> = key.split('.').collect();
            let name = groups.pop().unwrap_or_default();
            let mut object = &mut root;
            for group in groups {
                object = object
                    .entry(group)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()))
                    .as_object_mut()
                    .with_context(|| format!("report key {key:?}: {group:?} is both a number and a group"))?;
            }
            if object.insert(name.into(), serde_json::json!(value)).is_some_and(|old| old.is_object()) {
                anyhow::bail!("report key {key:?} is also a group");
            }
        }
        Ok(root.into())
    }
}

/// Where a benchmark's events live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store in the scratch directory (the default).
    Embedded,
    /// The FoundationDB cluster `FDB_CLUSTER_FILE` names, under a fresh key prefix that is
    /// cleared afterwards.
    Fdb,
}

/// The variable `just bench NAME --backend fdb` sets (the CLI's `bench` has no such flag).
pub const BACKEND_VAR: &str = "COUNTERPOINT_BENCH_BACKEND";

impl Backend {
    /// The backend `COUNTERPOINT_BENCH_BACKEND` asks for (`embedded` when unset), checked: this
    /// binary must have the `fdb` feature and a cluster must be named.
    pub fn from_env() -> anyhow::Result<Backend> {
        let backend = match std::env::var(BACKEND_VAR).unwrap_or_default().as_str() {
            "" | "embedded" => return Ok(Backend::Embedded),
            "fdb" => Backend::Fdb,
            other => anyhow::bail!("{BACKEND_VAR}={other:?} is not a backend; use \"embedded\" or \"fdb\""),
        };
        if !cfg!(feature = "fdb") {
            anyhow::bail!(
                "this counterpoint was built without FoundationDB support: run `just bench NAME --backend fdb`, \
                 which builds with `--features fdb` (needs libfdb_c 7.3 and a FoundationDB server: point \
                 COUNTERPOINT_FDB_DIR at a directory with bin/fdbserver, bin/fdbcli and lib/libfdb_c.so)"
            );
        }
        if std::env::var_os("FDB_CLUSTER_FILE").is_none_or(|f| f.is_empty()) {
            anyhow::bail!(
                "FDB_CLUSTER_FILE names no cluster: run `just bench NAME --backend fdb`, which starts a \
                 one-process cluster for the run (tests/fdb.sh), or set FDB_CLUSTER_FILE to your own"
            );
        }
        Ok(backend)
    }

    /// For the benchmarks that only run on the embedded store.
    pub fn embedded_only(bench: &str) -> anyhow::Result<()> {
        match std::env::var(BACKEND_VAR).unwrap_or_default().as_str() {
            "" | "embedded" => Ok(()),
            other => anyhow::bail!("bench {bench} runs on the embedded store only; `--backend {other}` works with: store, http"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Fdb => "fdb",
        }
    }

    /// `store` on the embedded store, `store-fdb` on FoundationDB: a run on one backend never
    /// overwrites the other's figures.
    pub fn report_name(self, bench: &str) -> String {
        match self {
            Backend::Embedded => bench.into(),
            other => format!("{bench}-{}", other.name()),
        }
    }
}

/// A key prefix no other run uses (`bench-<64 random bits>`).
fn fresh_prefix() -> String {
    format!("bench-{:016x}", fastrand::u64(..))
}

/// The disk's raw durable-append rate: 4 KiB appended and `fdatasync`ed, repeatedly, in `dir`.
pub fn fsync_per_s(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let block = vec![0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration || n < 20 {
        file.write_all_at(&block, n * 4096)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let _ = std::io::stdout().flush();
    Ok(rate)
}

/// The processor time this process has used so far, all its threads together: a bench divides
/// it by the work done, which varies less between runs on a busy machine than work per second.
pub fn process_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    let done = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if done != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn dotted_keys_are_nested_objects() {
        let mut report = Report::new("t");
        report.add("fsync_per_s", 2.0, "");
        report.add("python.command_us", 1.5, "");
        report.add("python.size_kb", f64::NAN, "");
        report.add("js.command_us", 3.0, "");
        let expected = serde_json::json!({"fsync_per_s": 2.0, "python": {"command_us": 1.5, "size_kb": null}, "js": {"command_us": 3.0}});
        assert_eq!(report.to_json().unwrap(), expected);

        report.add("python", 1.0, "");
        assert!(report.to_json().is_err());
    }

    #[test]
    fn labels_are_strings_and_backends_name_their_reports() {
        let mut report = Report::for_backend("store", super::Backend::Fdb);
        report.add("append_1w_per_s", 2.0, "");
        assert_eq!(report.name, "store-fdb");
        assert_eq!(report.to_json().unwrap(), serde_json::json!({"backend": "fdb", "append_1w_per_s": 2.0}));
        assert_eq!(Report::for_backend("store", super::Backend::Embedded).name, "store");
    }
}
