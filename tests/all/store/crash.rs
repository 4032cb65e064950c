//! Durability under `kill -9`: a child process appends under concurrent load and reports each
//! acknowledged (and each refused) append; we kill it at random moments, sometimes while it is
//! still recovering the store, reopen, and check that every acknowledged append is there in
//! full, no refused or torn one is, positions are dense, every racer's condition held, and
//! appending goes on. Segments are small, so kills land during segment rolls too.
//!
//! SIGKILL leaves the page cache alone: this test cannot tell whether the store syncs (a
//! fault-injecting disk must). `CRASH_CYCLES` sets the number of cycles (20 by default; `just
//! soak` runs many more, starting over in a fresh directory before the log outgrows the
//! open-files limit: [`segments_per_directory`]).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use counterpoint::store::{EmbeddedStore, Event, EventStore, Query, ReadOptions, Tenant};
use counterpoint_tests::crash::{append_tag, event_data, parse_data, parse_race_data, race_tag, RACE_TAG};

struct Ack {
    tag: String,
    first: u64,
    count: usize,
    seq: u64,
}

/// What one run of the child reported before it was killed.
#[derive(Default)]
struct Run {
    acks: Vec<Ack>,
    /// Racers' acknowledged appends: tag and position.
    raced: Vec<(String, u64)>,
    /// Racers' refused appends, by tag.
    refused: Vec<String>,
    /// Whether it finished opening the store before the kill.
    ready: bool,
    /// How long its recovery took, when it said.
    open_time: Option<Duration>,
}

enum Kill {
    /// While it opens the store: after this much of the last measured recovery time.
    DuringRecovery(Duration),
    /// A random moment after its first acknowledgement.
    AfterFirstAck,
}

/// `run` numbers the child's tags: unique per child, so a tag names one append.
fn run_and_kill(dir: &Path, run: u64, kill: Kill) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(dir)
        .arg(run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crash-writer");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (signal, signals) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut run = Run::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split(' ').collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            // A line cut by the kill is not a report we can rely on having seen whole.
            match (fields[0], fields.len()) {
                ("OPENING", 1) => {
                    let _ = signal.send("OPENING");
                }
                ("READY", 2) => {
                    run.ready = true;
                    run.open_time = number(1).map(Duration::from_micros);
                }
                ("ACK", 6) => {
                    let (Some(c), Some(w), Some(seq), Some(first), Some(count)) = (number(1), number(2), number(3), number(4), number(5)) else { continue };
                    run.acks.push(Ack { tag: append_tag(c, w as usize, seq), first, count: count as usize, seq });
                    if run.acks.len() == 1 {
                        let _ = signal.send("ACK");
                    }
                }
                ("RACE", 5) => {
                    let (Some(c), Some(r), Some(seq), Some(position)) = (number(1), number(2), number(3), number(4)) else { continue };
                    run.raced.push((race_tag(c, r as usize, seq), position));
                }
                ("REFUSED", 4) => {
                    let (Some(c), Some(r), Some(seq)) = (number(1), number(2), number(3)) else { continue };
                    run.refused.push(race_tag(c, r as usize, seq));
                }
                _ => {}
            }
        }
        run
    });
    // Waits for the child to report `what`; false when it did not within a minute.
    let wait_for = |what: &str| loop {
        match signals.recv_timeout(Duration::from_secs(60)) {
            Ok(seen) if seen == what => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let reported = match kill {
        Kill::DuringRecovery(delay) => {
            let opening = wait_for("OPENING");
            std::thread::sleep(delay);
            opening
        }
        Kill::AfterFirstAck => {
            let acked = wait_for("ACK");
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..200)));
            acked
        }
    };
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    let run = reader.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(reported, "crash-writer reported nothing for a minute ({status}); stderr:\n{stderr}");
    // Killed by us, not exited by itself: a crash of its own (a failed append, a panic) is a failure.
    assert_eq!(status.signal(), Some(libc::SIGKILL), "crash-writer ended by itself ({status}); stderr:\n{stderr}");
    run
}

/// Log segments a directory holds before a soak starts over in a fresh one. The store holds
/// each segment and its index file open (and refuses a log beyond the hard open-files limit),
/// and a cycle adds about 30 segments of 64 KiB: a third of the limit leaves room for both.
fn segments_per_directory() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    hard / 3
}

fn segments_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log")).count() as u64
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let cycles: u64 = std::env::var("CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(20);
    let mut dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenant = Tenant::new("crash").unwrap();
    let options = counterpoint_tests::crash::options();
    let (mut total_acked, mut total_refused, mut total_raced, mut killed_in_recovery) = (0, 0, 0, 0);
    let mut open_time = Duration::from_millis(1);
    let mut acked_before: HashSet<String> = HashSet::new();
    let (mut segments, budget) = (0, segments_per_directory());
    for cycle in 0..cycles {
        let held = segments_in(dir.path());
        if held > budget {
            segments += held;
            dir = tempfile::tempdir().unwrap();
            acked_before.clear();
            open_time = Duration::from_millis(1);
        }
        let mut runs = Vec::new();
        // Every third cycle, first kill it while it recovers the store (killing recovery, which
        // may cut a torn tail, must leave a store that recovers again).
        if cycle % 3 == 1 {
            let delay = open_time.mul_f64(fastrand::f64());
            let run = run_and_kill(dir.path(), 2 * cycle + 1, Kill::DuringRecovery(delay));
            killed_in_recovery += usize::from(!run.ready);
            runs.push(run);
        }
        let run = run_and_kill(dir.path(), 2 * cycle, Kill::AfterFirstAck);
        assert!(!run.acks.is_empty(), "cycle {cycle}: no acknowledgement before the kill");
        open_time = run.open_time.unwrap_or(open_time).max(Duration::from_micros(100));
        runs.push(run);

        let acks: Vec<&Ack> = runs.iter().flat_map(|r| &r.acks).collect();
        let raced: Vec<&(String, u64)> = runs.iter().flat_map(|r| &r.raced).collect();
        let refused: HashSet<&String> = runs.iter().flat_map(|r| &r.refused).collect();
        total_acked += acks.len();
        total_raced += raced.len();
        total_refused += refused.len();
        runtime.block_on(async {
            let store = EmbeddedStore::open_with(dir.path(), options.clone()).expect("reopen after kill -9");
            let (events, head) =
                store.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
            // Positions are dense and increasing; every event is intact and belongs to a whole append.
            let mut appends: HashMap<String, Vec<(u64, usize, usize)>> = HashMap::new();
            let mut races: HashMap<String, u64> = HashMap::new();
            let mut last_race = 0;
            for (i, event) in events.iter().enumerate() {
                let position = event.position.dense();
                assert_eq!(position, i as u64 + 1, "positions increase without holes");
                match event.event.event_type.as_str() {
                    "AfterCrash" => {} // appended by this test after the previous cycle's recovery
                    "Race" => {
                        // Its condition held: the last race event it read is still the last one.
                        let after = parse_race_data(&event.event.data).unwrap_or_else(|| panic!("torn race event at {position}"));
                        assert_eq!(after, last_race, "race event at {position} landed although another one came after what it read");
                        last_race = position;
                        assert_eq!(event.event.tags[0], RACE_TAG);
                        races.insert(event.event.tags[1].clone(), position);
                    }
                    _ => {
                        let (tag, j, count) = parse_data(&event.event.data).unwrap_or_else(|| panic!("torn event at {position}"));
                        assert_eq!(event.event.tags, vec![tag.clone()]);
                        appends.entry(tag).or_default().push((position, j, count));
                    }
                }
            }
            for (tag, parts) in &appends {
                let count = parts[0].2;
                assert_eq!(parts.len(), count, "append {tag} is partial: {parts:?}");
                assert!(parts.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1), "{tag}: {parts:?}");
            }
            for ack in &acks {
                let parts = appends.get(&ack.tag).unwrap_or_else(|| panic!("acknowledged append {} lost", ack.tag));
                assert_eq!((parts[0].0, parts.len()), (ack.first, ack.count), "append {} moved", ack.tag);
                let data = &events[ack.first as usize - 1].event.data;
                assert_eq!(data, &event_data(&ack.tag, 0, ack.count, ack.seq));
            }
            for (tag, position) in &raced {
                assert_eq!(races.get(tag), Some(position), "acknowledged race append {tag} lost or moved");
            }
            for tag in &refused {
                assert!(!races.contains_key(*tag), "refused race append {tag} is in the log");
            }
            // What was acknowledged in earlier cycles is still there too.
            for tag in &acked_before {
                assert!(appends.contains_key(tag) || races.contains_key(tag), "{tag}, acknowledged in an earlier cycle, is gone");
            }
            assert_eq!(head.dense(), events.len() as u64);
            // Appending goes on after recovery.
            let next = store.append(&tenant, vec![Event::new("AfterCrash")], vec![]).await.unwrap();
            assert_eq!(next[0].dense(), head.dense() + 1);
        });
        acked_before.extend(acks.iter().map(|a| a.tag.clone()));
        acked_before.extend(raced.iter().map(|(tag, _)| tag.clone()));
    }
    segments += segments_in(dir.path());
    eprintln!(
        "{cycles} cycles: {total_acked} appends and {total_raced} race appends acknowledged, {total_refused} refused, \
         {killed_in_recovery} kills during recovery, {segments} segments"
    );
    assert!(total_refused > 0, "no racer was ever refused: the conditions were never put to the test");
    assert!(total_raced > 0, "no racer ever won");
    assert!(segments > cycles, "the log rolled to a new segment fewer times than there were cycles");
    if cycles >= 6 {
        assert!(killed_in_recovery > 0, "no kill landed during recovery");
    }
}
