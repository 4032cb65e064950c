//! A disk that fills up under a server (a child process whose files are capped with
//! RLIMIT_FSIZE): appends fail with 503 `store_unavailable`, the store refuses every later
//! write (it cannot know what the disk kept of a failed one), reads go on, and after a restart
//! the log holds exactly the acknowledged events.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::*;

/// The child server, killed however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The positions in a log, in order.
fn positions(log: &[Value]) -> Vec<u128> {
    log.iter().map(|e| position(&e["position"])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_store_unavailable_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counterpoint.toml");
    std::fs::write(&file, config_text(dir.path(), &[("acme", "")])).unwrap();
    // Every file capped at 1 MiB: the log's segment fills after about a hundred appends.
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_full-disk-server"))
            .arg(&file)
            .arg((1u64 << 20).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start full-disk-server"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the server's first line");
    let address = line.trim().strip_prefix("LISTENING ").unwrap_or_else(|| panic!("not listening: {line:?}"));
    let http = Http::new(address.parse().unwrap());

    // Four clients append 8 KiB events until the disk refuses; each keeps what was acknowledged.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let http = http.clone();
            tokio::spawn(async move {
                let acme = token("acme");
                let mut acknowledged = Vec::new();
                for n in 0..1_000 {
                    let event = json!({"type": "Filled", "tags": [format!("client:{client}")], "data": {"json": {"n": n, "pad": "x".repeat(8 << 10)}}});
                    let reply = http.post(&t("acme", "/events/append"), Some(&acme), &json!({"events": [event]})).await;
                    if reply.status != StatusCode::OK {
                        reply.error(503, "store_unavailable");
                        return acknowledged;
                    }
                    acknowledged.push(position(&reply.json["positions"][0]));
                }
                panic!("client {client}: the disk never filled")
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    acknowledged.sort_unstable();
    assert!(acknowledged.len() >= 50, "the disk filled only after {} appends", acknowledged.len());

    // The disk has room again, but the store stays down for writes (it cannot know what the
    // disk kept of the failed one) until it is reopened; reads go on and show what was
    // acknowledged.
    writeln!(child.0.stdin.as_mut().unwrap(), "ROOM").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ROOM");
    let small = json!({"events": [{"type": "Small"}]});
    http.post(&t("acme", "/events/append"), Some(&token("acme")), &small).await.error(503, "store_unavailable");
    assert_eq!(positions(&http.log("acme").await), acknowledged);
    // Not ready: a load balancer takes it out, with the reason.
    let ready = http.get("/readyz", None).await;
    assert_eq!(ready.status.as_u16(), 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("writing the log failed"), "{:?}", ready.body);

    // Restarted with room on the disk: exactly the acknowledged events, and appends work again.
    drop(child);
    let config = Config::load(Some(&file)).unwrap();
    let running = spawn_server(&config).await.expect("the server starts again");
    let http = Http::new(running.address);
    assert_eq!(positions(&http.log("acme").await), acknowledged, "nothing acknowledged is lost, nothing else appears");
    http.post(&t("acme", "/events/append"), Some(&token("acme")), &small).await.ok();
    assert_eq!(http.get("/readyz", None).await.status.as_u16(), 200);
    running.shutdown().await.unwrap();

    // The log filled the disk: a flush that had room for its frames but not for the zeros the
    // writer writes ahead of them was written without them. What is acknowledged falls short of
    // the cap by less than the failed flush (at most one frame per client).
    let segment = dir.path().join("events").join("0000000000.log");
    let bytes = std::fs::metadata(&segment).unwrap().len();
    let frame = bytes / (acknowledged.len() as u64 + 1);
    assert!(bytes + 4 * frame >= 1 << 20, "{} appends acknowledged, {bytes} bytes of log ({frame} a frame)", acknowledged.len());
}
