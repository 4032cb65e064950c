//! `bench contention`: hot consistency boundaries on the durable store, with the `courses`
//! slice. Many tasks subscribe distinct students to one course with room for all of them (one
//! boundary, every command valid), while others work on boundaries of their own.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::codec::json_to_msgpack;
use crate::runner::CommandRunner;
use crate::runtime::{InvokeError, Runtime, RuntimeConfig, Slice};
use crate::store::{EmbeddedOptions, EmbeddedStore, SharedStore, Tenant};

use super::{fsync_per_s, process_cpu_time, Report};

pub async fn contention(scratch: &Path, slices: &Path, seconds: f64, group_commit_window: Duration) -> anyhow::Result<Report> {
    super::Backend::embedded_only("contention")?;
    let _ = std::fs::remove_dir_all(scratch);
    let duration = Duration::from_secs_f64(seconds);
    let mut report = Report::new("contention");
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(scratch.join("cache")), ..Default::default() })?;
    let wasm = slices.join("courses.wasm");
    let courses = Arc::new(runtime.load_file(&wasm).await.with_context(|| format!("loading {} (just slices builds it)", wasm.display()))?);
    let fsync = fsync_per_s(scratch, duration)?;
    report.add("fsync_per_s", fsync, "raw 4 KiB append + fdatasync, this disk, this run");

    let store = EmbeddedStore::open_with(scratch.join("store"), EmbeddedOptions { group_commit_window, ..Default::default() })?;
    report.add("group_commit_window_us", group_commit_window.as_micros() as f64, "the embedded store's group commit window in this run (--group-commit-window-us; none by default)");
    let bench = Bench { slice: courses, store: Arc::new(store.clone()), tenant: Tenant::new("bench")? };
    let (hot, _) = bench.measure(&hot_64(), 0, duration).await?;
    report.add("hot_64_conflicts", hot.conflicts as f64, "commands that ended in conflict, 64 tasks on one course with room for all (target 0)");
    report.add("hot_64_commands_per_s", hot.per_s, format!("subscriptions decided per second on the one course, durable (target >= 5 x fsync = {:.0})", 5.0 * fsync));
    report.add("hot_64_p99_ms", hot.p99_ms, "99th percentile of one subscription on the hot course");
    report.add("hot_64_cpu_us_per_command", hot.cpu_us_per_command, "processor time of the process (all threads) per subscription decided on the hot course");
    // The disk's pace under the hot load, beside `fsync_per_s` (a raw loop before it): a run
    // whose commands waited for slow flushes shows here.
    report.add("hot_64_flushes_per_s", hot.flushes_per_s, "flushes of the log a second while the hot course ran (fsync_per_s: the raw disk's, measured before)");
    report.add("hot_64_decisions_per_flush", hot.decisions_per_flush, "subscriptions on the one course per flush of the log, 64 tasks");
    // What bounds the one course: its turns, one after another, leave processors idle; a
    // command's processor time keeps them busy.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    report.add("hot_64_cores_busy", hot.per_s * hot.cpu_us_per_command / 1e6, format!("processors the hot course kept busy, of this machine's {cores}"));
    let beside_64 = bench.neighbours(64, duration).await?;
    report.add("cold_64_commands_per_s", beside_64.alone, "64 tasks, each subscribing students to a course of its own, durable (mean of 3 runs)");
    report.add("cold_64_cpu_us_per_command", beside_64.alone_cpu_us, "processor time of the process (all threads) per subscription decided on the cold courses (mean of 3 runs)");
    report.add("hot_64_to_cold_64", hot.per_s / beside_64.alone, "the one course's subscriptions per second / 64 courses' (1: the hot boundary costs nothing beyond the commands themselves)");
    report.add("hot_64_conflicts_during_cold", beside_64.hot_conflicts as f64, "the hot course's 64 tasks while 64 cold tasks run beside them, both runs (target 0)");
    report.add("hot_64_commands_per_s_during_cold", beside_64.hot_per_s, "subscriptions decided per second on the one course while the 64 cold tasks run");
    report.add("hot_64_p99_ms_during_cold", beside_64.hot_p99_ms, "99th percentile of one subscription on the hot course while the 64 cold tasks run (mean of the 2 runs')");
    report.add("cold_64_commands_per_s_during_hot", beside_64.beside, "64 tasks on courses of their own while the 64 hot ones run (mean of the 2 runs between those alone)");
    report.add("cold_during_hot_ratio", beside_64.beside / beside_64.alone, "cold commands per second with the hot load / without it (target >= 0.8)");
    // Fewer neighbours leave processors idle and wait mostly for their flushes: what a hot
    // boundary takes from them is the writer's processor time, not theirs.
    let beside_8 = bench.neighbours(8, duration).await?;
    report.add("cold_8_commands_per_s", beside_8.alone, "8 tasks, each on a course of its own, durable: commands that wait mostly for their flushes (mean of 3 runs)");
    report.add("cold_8_commands_per_s_during_hot", beside_8.beside, "the same 8 tasks while the 64 hot ones run (mean of the 2 runs between those alone)");
    report.add("cold_8_during_hot_ratio", beside_8.beside / beside_8.alone, "8 cold tasks' commands per second with the hot load / without it");
    report.add("hot_64_commands_per_s_during_cold_8", beside_8.hot_per_s, "subscriptions decided per second on the one course while the 8 cold tasks run");
    report.add("hot_64_p99_ms_during_cold_8", beside_8.hot_p99_ms, "99th percentile of one subscription on the hot course beside the 8 cold tasks (mean of the 2 runs')");
    report.add("hot_64_conflicts_during_cold_8", beside_8.hot_conflicts as f64, "the hot course's 64 tasks beside the 8 cold tasks, both runs (target 0)");
    let (hot, _) = bench.measure(&[Load { course: "hot".into(), tasks: 256 }], 0, duration).await?;
    report.add("hot_256_conflicts", hot.conflicts as f64, "commands that ended in conflict, 256 tasks on one course with room for all (target 0)");
    report.add("hot_256_commands_per_s", hot.per_s, "subscriptions decided per second on the one course, 256 tasks");
    report.add("hot_256_decisions_per_flush", hot.decisions_per_flush, "subscriptions on the one course per flush of the log (1 or less: one boundary held to the flush rate)");
    let exact = bench.student_limit().await?;
    report.add("student_limit_exact", if exact { 1.0 } else { 0.0 }, "8..64 concurrent subscriptions of one student to distinct courses: exactly 5 succeed, the rest rejected (1 = true)");
    // Closed first (its sealer may still be indexing a segment), then removed.
    drop((bench, store));
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

struct Bench {
    slice: Arc<Slice>,
    /// The runner's store (as [`SharedStore`] it is the same `Arc`: one store to the queues),
    /// kept concrete for its count of flushes.
    store: Arc<EmbeddedStore>,
    tenant: Tenant,
}

/// Tasks subscribing distinct students to one course.
struct Load {
    course: String,
    tasks: usize,
}

/// 64 tasks on the hot course.
fn hot_64() -> [Load; 1] {
    [Load { course: "hot".into(), tasks: 64 }]
}

/// Cold tasks alone and beside a hot course (means over the runs of each).
struct Neighbours {
    alone: f64,
    alone_cpu_us: f64,
    beside: f64,
    hot_per_s: f64,
    hot_p99_ms: f64,
    hot_conflicts: u64,
}

struct Outcome {
    per_s: f64,
    p99_ms: f64,
    conflicts: u64,
    /// Flushes of the log a second during the run (every load's together), and this load's
    /// decisions per flush.
    flushes_per_s: f64,
    decisions_per_flush: f64,
    /// The whole process's processor time during the run, per command decided by anyone.
    cpu_us_per_command: f64,
}

impl Bench {
    fn shared(&self) -> SharedStore {
        self.store.clone()
    }

    async fn define(&self, course: &str) -> anyhow::Result<()> {
        let input = json_to_msgpack(&json!({"course_id": course, "capacity": 10_000_000}));
        CommandRunner::default().run(&self.slice, &self.shared(), &self.tenant, "define-course", &input).await?;
        Ok(())
    }

    /// `loads` on their hot courses and `cold` tasks on courses of their own, for `duration`:
    /// the hot tasks' outcome (all together) and the cold ones'.
    async fn measure(&self, loads: &[Load], cold: usize, duration: Duration) -> anyhow::Result<(Outcome, Outcome)> {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let mut courses: Vec<(String, usize)> = Vec::new();
        for load in loads {
            courses.push((format!("{}-{run}", load.course), load.tasks));
        }
        let cold_courses: Vec<String> = (0..cold).map(|i| format!("cold-{run}-{i}")).collect();
        for course in courses.iter().map(|(c, _)| c).chain(&cold_courses) {
            self.define(course).await?;
        }
        let runner = CommandRunner::default();
        let (start, cpu_before, flushes_before) = (Instant::now(), process_cpu_time(), self.store.flushes());
        let mut hot = Vec::new();
        let mut cold_tasks = Vec::new();
        for (course, tasks) in &courses {
            for task in 0..*tasks {
                hot.push(self.subscriber(&runner, course.clone(), format!("h{run}-{task}"), start, duration));
            }
        }
        for (task, course) in cold_courses.into_iter().enumerate() {
            cold_tasks.push(self.subscriber(&runner, course, format!("c{run}-{task}"), start, duration));
        }
        let (hot, cold) = (collect(hot).await?, collect(cold_tasks).await?);
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = (process_cpu_time() - cpu_before).as_secs_f64();
        let flushes = self.store.flushes() - flushes_before;
        let decided = (hot.latencies.len() + cold.latencies.len()).max(1) as f64;
        let run = Run { elapsed, cpu_us_per_command: cpu * 1e6 / decided, flushes };
        Ok((hot.outcome(&run), cold.outcome(&run)))
    }

    /// `cold` tasks on courses of their own, alone and beside 64 tasks on one hot course, in turns
    /// (alone, beside, alone, beside, alone): this machine's speed drifts within a minute, and
    /// each run with the hot load then has a run without it on either side.
    async fn neighbours(&self, cold: usize, duration: Duration) -> anyhow::Result<Neighbours> {
        let (mut alone, mut beside) = (vec![self.measure(&[], cold, duration).await?.1], Vec::new());
        for _ in 0..2 {
            beside.push(self.measure(&hot_64(), cold, duration).await?);
            alone.push(self.measure(&[], cold, duration).await?.1);
        }
        let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
        Ok(Neighbours {
            alone: mean(alone.iter().map(|cold| cold.per_s).collect()),
            alone_cpu_us: mean(alone.iter().map(|cold| cold.cpu_us_per_command).collect()),
            beside: mean(beside.iter().map(|(_, cold)| cold.per_s).collect()),
            hot_per_s: mean(beside.iter().map(|(hot, _)| hot.per_s).collect()),
            hot_p99_ms: mean(beside.iter().map(|(hot, _)| hot.p99_ms).collect()),
            hot_conflicts: beside.iter().map(|(hot, _)| hot.conflicts).sum(),
        })
    }

    /// One task subscribing students `<prefix>-0`, `<prefix>-1`, ... to `course` until `duration`.
    fn subscriber(&self, runner: &CommandRunner, course: String, prefix: String, start: Instant, duration: Duration) -> tokio::task::JoinHandle<anyhow::Result<Samples>> {
        let (runner, slice, store, tenant) = (runner.clone(), self.slice.clone(), self.shared(), self.tenant.clone());
        tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut i = 0u64;
            while start.elapsed() < duration {
                let input = json!({"course_id": course, "student_id": format!("{prefix}-{i}")});
                i += 1;
                let t = Instant::now();
                match runner.run(&slice, &store, &tenant, "subscribe-student", &json_to_msgpack(&input)).await {
                    Ok(_) => samples.latencies.push(t.elapsed()),
                    Err(InvokeError::Conflict(_)) => samples.conflicts += 1,
                    Err(other) => anyhow::bail!("subscribe-student {input}: {other}"),
                }
            }
            Ok(samples)
        })
    }

    /// 8, 16, 32, 64 concurrent subscriptions of one student to distinct courses: exactly five
    /// succeed and the rest are rejected, every time.
    async fn student_limit(&self) -> anyhow::Result<bool> {
        let runner = CommandRunner::default();
        let mut exact = true;
        for (round, n) in [8usize, 16, 32, 64].into_iter().enumerate() {
            let courses: Vec<String> = (0..n).map(|i| format!("limit-{round}-{i}")).collect();
            for course in &courses {
                self.define(course).await?;
            }
            let student = format!("student-{round}");
            let tasks: Vec<_> = courses
                .into_iter()
                .map(|course| {
                    let (runner, slice, store, tenant) = (runner.clone(), self.slice.clone(), self.shared(), self.tenant.clone());
                    let input = json_to_msgpack(&json!({"course_id": course, "student_id": student}));
                    tokio::spawn(async move { runner.run(&slice, &store, &tenant, "subscribe-student", &input).await })
                })
                .collect();
            let (mut ok, mut rejected) = (0, 0);
            for task in tasks {
                match task.await? {
                    Ok(_) => ok += 1,
                    Err(InvokeError::Rejected(_)) => rejected += 1,
                    Err(_) => {}
                }
            }
            exact &= ok == 5 && rejected == n - 5;
        }
        Ok(exact)
    }
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    conflicts: u64,
}

/// What every load of one run shares.
struct Run {
    elapsed: f64,
    cpu_us_per_command: f64,
    flushes: u64,
}

impl Samples {
    fn outcome(mut self, run: &Run) -> Outcome {
        self.latencies.sort_unstable();
        let p99 = self.latencies.get(self.latencies.len() * 99 / 100).or(self.latencies.last()).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let decided = self.latencies.len() as f64;
        Outcome {
            per_s: decided / run.elapsed,
            p99_ms: p99,
            conflicts: self.conflicts,
            decisions_per_flush: decided / run.flushes.max(1) as f64,
            flushes_per_s: run.flushes as f64 / run.elapsed,
            cpu_us_per_command: run.cpu_us_per_command,
        }
    }
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Samples>>>) -> anyhow::Result<Samples> {
    let mut all = Samples::default();
    for task in tasks {
        let samples = task.await??;
        all.latencies.extend(samples.latencies);
        all.conflicts += samples.conflicts;
    }
    Ok(all)
}
