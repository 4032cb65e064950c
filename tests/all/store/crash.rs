//! Durability under `kill -9`: a child process appends under concurrent load and reports each
//! acknowledged append; we kill it at random moments, reopen, and check that every acknowledged
//! append is there in full, nothing is torn, positions increase, and appending goes on.
//!
//! `CRASH_CYCLES` sets the number of cycles (20 by default; `just soak` runs many more).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use counterpoint::store::{EmbeddedStore, Event, EventStore, Query, ReadOptions, Tenant};
use counterpoint_tests::crash::{append_tag, event_data, parse_data};

struct Ack {
    tag: String,
    first: u64,
    count: usize,
    seq: u64,
}

fn run_and_kill(dir: &std::path::Path, cycle: u64) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(dir)
        .arg(cycle.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start crash-writer");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                let _ = ready_tx.send(());
                continue;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            // A line cut by the kill is not an acknowledgement we can rely on having seen whole.
            if fields.len() != 6 || fields[0] != "ACK" {
                continue;
            }
            let parse = |i: usize| fields[i].parse::<u64>().expect("number");
            let (writer, seq) = (parse(2) as usize, parse(3));
            acks.push(Ack { tag: append_tag(parse(1), writer, seq), first: parse(4), count: parse(5) as usize, seq });
        }
        acks
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("crash-writer became ready");
    std::thread::sleep(Duration::from_millis(fastrand::u64(5..250)));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let cycles: u64 = std::env::var("CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenant = Tenant::new("crash").unwrap();
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let acks = run_and_kill(dir.path(), cycle);
        total_acked += acks.len();
        runtime.block_on(async {
            let store = EmbeddedStore::open(dir.path()).expect("reopen after kill -9");
            let (events, head) =
                store.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
            // Positions are dense and increasing; every event is intact and belongs to a whole append.
            let mut appends: HashMap<String, Vec<(u64, usize, usize)>> = HashMap::new();
            for (i, event) in events.iter().enumerate() {
                assert_eq!(event.position.dense(), i as u64 + 1, "positions increase without holes");
                if event.event.event_type == "AfterCrash" {
                    continue; // appended by this test after the previous cycle's recovery
                }
                let (tag, j, count) = parse_data(&event.event.data).unwrap_or_else(|| panic!("torn event at {}", event.position));
                assert_eq!(event.event.tags, vec![tag.clone()]);
                appends.entry(tag).or_default().push((event.position.dense(), j, count));
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
            assert_eq!(head.dense(), events.len() as u64);
            // Appending goes on after recovery.
            let next = store.append(&tenant, vec![Event::new("AfterCrash")], vec![]).await.unwrap();
            assert_eq!(next[0].dense(), head.dense() + 1);
        });
    }
    assert!(total_acked > 0, "the child acknowledged nothing: the test proved nothing");
}
