//! The embedded store holds every log segment and its index file open. A log of more segments
//! than the process's soft open-files limit allows still opens (the store raises the soft limit
//! to the hard one); one beyond the hard limit is refused with an error that says which limit to
//! raise. The child is `crash-writer`, which says `READY` once the store is open (its appends
//! after that are not looked at), started under `ulimit` by a shell.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use counterpoint::store::{EmbeddedOptions, EmbeddedStore, Event, EventStore, Tenant};
use counterpoint_tests::crash::SEGMENT_BYTES;

/// Sealed segments in the store: with their index files, well over the limit the child gets.
const SEGMENTS: u64 = 80;
const LIMIT: u32 = 64;

async fn store_of_many_segments(dir: &Path) {
    let store = EmbeddedStore::open_with(dir, EmbeddedOptions { segment_bytes: SEGMENT_BYTES, ..Default::default() }).unwrap();
    let tenant = Tenant::new("crash").unwrap();
    let mut batch = 0u64;
    while store.index_memory().sealed_segments < SEGMENTS {
        let events = (0..16).map(|i| Event::new("Filled").tag(format!("fill:{batch}:{i}")).data(vec![7u8; 1024])).collect();
        store.append(&tenant, events, vec![]).await.unwrap();
        batch += 1;
    }
    while store.index_memory().indexing {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs the child on `dir` after the shell's `ulimit_commands`: Ok once it is open, else what it
/// printed on stderr.
fn open_in_child(dir: &Path, ulimit_commands: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{ulimit_commands} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(dir)
        .arg("1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crash-writer under ulimit");
    let ready = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok).any(|line| line.starts_with("READY"));
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    if ready { Ok(()) } else { Err(stderr) }
}

#[tokio::test]
async fn a_log_of_more_segments_than_the_soft_open_files_limit_opens() {
    let dir = tempfile::tempdir().unwrap();
    store_of_many_segments(dir.path()).await;
    let opened = open_in_child(dir.path(), &format!("ulimit -S -n {LIMIT}"));
    assert_eq!(opened, Ok(()), "{SEGMENTS} segments and their index files under a soft limit of {LIMIT} files");
}

#[tokio::test]
async fn a_hard_open_files_limit_too_low_for_the_log_is_refused_with_what_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    store_of_many_segments(dir.path()).await;
    let err = open_in_child(dir.path(), &format!("ulimit -S -n {LIMIT} && ulimit -H -n {LIMIT}")).expect_err("opened under the hard limit");
    assert!(err.contains("open-files limit") && err.contains(&format!("at most {LIMIT}")), "unexpected error: {err}");
}
