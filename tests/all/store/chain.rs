//! Chains of appends, each decided on the one before it while that one may not be durable yet
//! (`read_accepted`, as commands read, see DESIGN.md): killed with SIGKILL mid-chain, and on a
//! disk that fills up mid-chain. Nothing acknowledged is lost, nothing decided on a lost link
//! is acknowledged, and the chain in the log never skips or repeats a link.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use counterpoint::store::{EmbeddedStore, EventStore, Position, Query, QueryItem, ReadOptions, Tenant};
use counterpoint_tests::chain::{parse_link, CHAIN_TAG};

/// The child process, killed however the test ends; its stdout lines arrive on `lines`.
struct Child {
    process: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn start(dir: &std::path::Path, cap: Option<u64>) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chain-writer"));
        command.arg(dir).stdout(Stdio::piped());
        if let Some(cap) = cap {
            command.arg(cap.to_string());
        }
        let mut process = command.spawn().expect("start chain-writer");
        let stdout = process.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Child { process, lines }
    }

    fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(60)).ok()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// What the child said: links acknowledged (number → position) and links lost.
#[derive(Default)]
struct Said {
    acked: BTreeMap<u64, Position>,
    lost: Vec<u64>,
}

impl Said {
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["ACK", n, position] => {
                let before = self.acked.insert(n.parse().unwrap(), position.parse().unwrap());
                assert!(before.is_none(), "link {n} acknowledged twice");
            }
            ["LOST", n] => self.lost.push(n.parse().unwrap()),
            _ => {}
        }
    }
}

/// The chain in the log, after the child is gone: every link in position order, checked to be
/// 1, 2, 3, ... (each decided on exactly the link before it). Returns their positions.
async fn chain_in_log(dir: &std::path::Path) -> Vec<Position> {
    let store = EmbeddedStore::open(dir).expect("reopen the store");
    let query = Query::item(QueryItem::tags([CHAIN_TAG]));
    let tenant = Tenant::new("chain").unwrap();
    let (events, _) = store.read(&tenant, query, ReadOptions::default()).await.unwrap().collect().await.unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(parse_link(&event.event.data), Some(i as u64 + 1), "the chain skips or repeats a link at {}", event.position);
    }
    events.iter().map(|e| e.position).collect()
}

fn check_acknowledged(said: &Said, chain: &[Position]) {
    for (&n, &position) in &said.acked {
        assert!(n as usize <= chain.len(), "link {n} was acknowledged but the log ends at link {}", chain.len());
        assert_eq!(chain[n as usize - 1], position, "link {n} is not where it was acknowledged");
    }
}

#[tokio::test]
async fn a_chain_decided_on_accepted_links_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut said = Said::default();
    for cycle in 0..6 {
        let child = Child::start(dir.path(), None);
        assert_eq!(child.next_line().as_deref(), Some("READY"), "cycle {cycle}: the child did not start");
        // Killed only once the chain has moved in this cycle.
        let mut acked_now = 0;
        while acked_now < 20 + cycle * 10 {
            let line = child.next_line().unwrap_or_else(|| panic!("cycle {cycle}: the chain stopped moving"));
            acked_now += usize::from(line.starts_with("ACK"));
            said.take(&line);
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..5_000)));
        let mut child = child;
        child.process.kill().unwrap();
        let status = child.process.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "cycle {cycle}: the child ended on its own: {status}");
        while let Ok(line) = child.lines.recv_timeout(Duration::from_secs(5)) {
            said.take(&line);
        }
        let chain = chain_in_log(dir.path()).await;
        check_acknowledged(&said, &chain);
    }
}

#[tokio::test]
async fn after_a_failed_write_nothing_decided_on_a_lost_link_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Every file capped at 256 KiB: the log fills after a few thousand links.
    let child = Child::start(dir.path(), Some(256 << 10));
    let mut said = Said::default();
    loop {
        let line = child.next_line().expect("the child neither finished nor said anything for a minute");
        if line == "DONE" {
            break;
        }
        said.take(&line);
    }
    let mut child = child;
    assert!(child.process.wait().unwrap().success());
    let chain = chain_in_log(dir.path()).await;
    check_acknowledged(&said, &chain);
    assert!(!said.lost.is_empty(), "links were in flight when the disk filled up, and lost");
    for &n in &said.lost {
        assert!(n as usize > chain.len(), "link {n} was reported lost but is in the log");
    }
    // Links decided on a link that was accepted but never durable: the chain went on during a
    // flush (a read of published events only could not have), and none of them was acknowledged.
    let on_lost = said.lost.iter().filter(|&&n| n as usize > chain.len() + 1).count();
    eprintln!("{} links durable, {} lost ({on_lost} decided on a lost link)", chain.len(), said.lost.len());
    assert!(on_lost > 0, "no link was decided on an accepted, not yet durable one");
}
