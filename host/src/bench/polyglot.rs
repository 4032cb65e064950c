//! `bench polyglot`: the orders slice written in Rust, Python (componentize-py) and JavaScript
//! (componentize-qjs), side by side: component size, build time, a fresh instance, one command.
//!
//! The JSON has one object per language, `rust`, `python` and `js`, each with `size_kb`,
//! `build_s`, `instantiate_us`, `command_us` and `faults_per_command` (minor page faults per
//! command: what dominates the interpreters' time), e.g. `{"python": {"command_us": ..}, ..}`;
//! the table shows them as `python.command_us`.
//! `build_s` is the wall time `slices/polyglot.sh` and the build scripts recorded in
//! `build-times.json` next to the components (the last build: cold or warm, whichever it was);
//! NaN when none was recorded.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::codec::json_to_msgpack;
use crate::runner::CommandRunner;
use crate::runtime::{Access, ReadAppender, Runtime, RuntimeConfig};
use crate::store::{MemoryStore, SharedStore, Tenant};

use super::Report;

/// (JSON object, component file) of each language's orders slice.
const LANGUAGES: [(&str, &str); 3] = [("rust", "orders.wasm"), ("python", "orders_py.wasm"), ("js", "orders_js.wasm")];

pub async fn polyglot(scratch: &Path, slices: &Path, seconds: f64) -> anyhow::Result<Report> {
    super::Backend::embedded_only("polyglot")?;
    let _ = std::fs::remove_dir_all(scratch);
    // Each language gets a share of the time, at least 0.5 s and 200 samples per measure.
    let duration = Duration::from_secs_f64((seconds / 6.0).clamp(0.5, 2.0));
    let mut report = Report::new("polyglot");
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(scratch.join("cache")), ..Default::default() })?;
    let build_times: serde_json::Value = std::fs::read_to_string(slices.join("build-times.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let tenant = Tenant::new("bench")?;

    for (lang, file) in LANGUAGES {
        let wasm = slices.join(file);
        let size = std::fs::metadata(&wasm).with_context(|| format!("{} (build the polyglot slices first)", wasm.display()))?.len();
        report.add(&format!("{lang}.size_kb"), size as f64 / 1024.0, file.to_string());
        let build = build_times.get(lang).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        report.add(&format!("{lang}.build_s"), build, "wall time of its last build (build-times.json)");

        let orders = Arc::new(runtime.load_file(&wasm).await.with_context(|| format!("loading {}", wasm.display()))?);
        let memory: SharedStore = Arc::new(MemoryStore::new());

        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed() < duration || samples.len() < 200 {
            let io = ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly);
            let t = Instant::now();
            let instance = orders.instantiate(io).await?;
            samples.push(t.elapsed());
            instance.finish();
        }
        let instantiate = median_us(&mut samples);
        report.add(&format!("{lang}.instantiate_us"), instantiate, format!("median of {} fresh instances", samples.len()));

        let runner = CommandRunner::default();
        let mut samples = Vec::new();
        let faults_before = minor_faults();
        let start = Instant::now();
        let mut i = 0u64;
        while start.elapsed() < duration || samples.len() < 200 {
            let payload = json_to_msgpack(&json!({"order_id": format!("o-{i}"), "customer_id": "c"}));
            i += 1;
            let t = Instant::now();
            runner.run(&orders, &memory, &tenant, "place-order", &payload).await?;
            samples.push(t.elapsed());
        }
        let faults = (minor_faults() - faults_before) as f64 / samples.len() as f64;
        let command = median_us(&mut samples);
        let target = if lang == "rust" { "" } else { " (target <= 1000)" };
        report.add(
            &format!("{lang}.command_us"),
            command,
            format!("median place-order: fresh instance, 1 read, 1 append, in memory{target}"),
        );
        // A fresh instance starts from the component's memory snapshot: each page it touches
        // that the pooling allocator did not keep resident is a page fault, which dominates the
        // time of interpreters with large heaps (CPython, SpiderMonkey).
        report.add(&format!("{lang}.faults_per_command"), faults, "minor page faults per place-order (whole process)");
    }
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

/// The process's minor page faults so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    // /proc/self/stat: "pid (comm) state ..." with minflt the 10th field; comm may hold spaces.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(7)?.parse().ok()))
        .unwrap_or(0)
}

fn median_us(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}
