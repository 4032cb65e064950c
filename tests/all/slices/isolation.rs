//! Hostile slices: each misbehaviour fails its own invocation, and a well-behaved slice keeps
//! answering throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use counterpoint::runtime::InvokeError;
use serde_json::json;

use super::Host;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_command_fails_alone_while_others_keep_answering() {
    let host = Arc::new(Host::new());
    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (host, done, served) = (host.clone(), done.clone(), served.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let (count, _) = host.run("hostile", "ok", json!({"stream": "bystander"})).await.expect("the well-behaved command");
                assert_eq!(count["count"], served.fetch_add(1, Ordering::SeqCst) + 1);
                tokio::task::yield_now().await;
            }
        })
    };

    let hostile = |command: &'static str, payload: serde_json::Value| {
        let host = host.clone();
        tokio::spawn(async move { host.run("hostile", command, payload).await.unwrap_err() })
    };
    let spin = hostile("spin", json!({}));
    let hog = hostile("hog", json!({}));
    let recurse = hostile("recurse", json!({}));
    let trap = hostile("trap", json!({}));
    let flood = hostile("flood", json!({}));

    let err = spin.await.unwrap();
    assert!(matches!(&err, InvokeError::Timeout { stage: "execute", .. }), "spin: {err:?}");
    let err = hog.await.unwrap();
    assert!(matches!(&err, InvokeError::OutOfMemory { .. }), "hog: {err:?}");
    let err = recurse.await.unwrap();
    // Rust keeps big frames on a shadow stack in linear memory: running off it is an
    // out-of-bounds access; running off the wasm stack is a stack overflow. Either fails alone.
    assert!(
        matches!(&err, InvokeError::Trapped { detail, .. } if detail.contains("stack overflow") || detail.contains("out of bounds")),
        "recurse: {err:?}"
    );
    let err = trap.await.unwrap();
    assert!(matches!(&err, InvokeError::Trapped { .. }), "trap: {err:?}");
    let err = flood.await.unwrap();
    assert!(
        matches!(&err, InvokeError::OutOfMemory { .. } | InvokeError::StoreFailed(_) | InvokeError::InvalidInput(_)),
        "flood: {err:?}"
    );
    // A flood that fits in memory but not in the store's limits is refused when staged.
    let err = host.run("hostile", "flood", json!({"events": 40, "size": 1 << 20})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::InvalidInput(m) if m.contains("over the limit")), "flood 40 MiB: {err:?}");

    let before = served.load(Ordering::SeqCst);
    assert!(before > 0, "the bystander was served while the hostile commands ran");
    // ...and still is afterwards.
    while served.load(Ordering::SeqCst) < before + 5 {
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::SeqCst);
    bystander.await.unwrap();
    let types = host.event_types().await;
    assert!(types.iter().all(|t| t == "Pinged"), "no hostile command appended anything: {types:?}");
}

/// A guest that spins gives its worker thread up once it has held it for an epoch tick: on a
/// runtime with a single thread, a well-behaved command is served again and again while it
/// spins (were the spin to keep the thread, nothing else would run until its deadline).
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_gives_a_single_worker_thread_up_while_it_spins() {
    let host = Arc::new(Host::new());
    host.run("hostile", "ok", json!({"stream": "bystander"})).await.expect("the slice is loaded");
    let spin = {
        let host = host.clone();
        tokio::spawn(async move { host.run("hostile", "spin", json!({})).await.unwrap_err() })
    };
    tokio::task::yield_now().await; // the spin starts
    let mut served_while_spinning = 0;
    while !spin.is_finished() {
        host.run("hostile", "ok", json!({"stream": "bystander"})).await.expect("the well-behaved command");
        served_while_spinning += 1;
    }
    let err = spin.await.unwrap();
    assert!(matches!(&err, InvokeError::Timeout { stage: "execute", .. }), "spin: {err:?}");
    assert!(served_while_spinning >= 10, "only {served_while_spinning} commands were served in the spin's second");
}

#[tokio::test]
async fn a_slice_gets_no_environment_files_or_network() {
    // Something to find, were the sandbox leaky.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = Host::new();
    let address = listener.local_addr().unwrap().to_string();
    let (escaped, _) = host.run("hostile", "escape", json!({"connect": address})).await.unwrap();
    assert_eq!(escaped, json!({"env": [], "files": [], "network": []}), "the slice reached something");
    drop(listener);
}

#[tokio::test]
async fn an_instance_never_sees_what_a_previous_one_wrote() {
    // Instances reuse pooled memory slots: a reset must restore every page the last instance
    // dirtied — here several hundred disjoint runs, across the memory image and past it.
    let host = Host::new();
    for round in 0..40 {
        let (scribbled, _) = host.run("hostile", "scribble", json!({})).await.unwrap();
        assert_eq!(scribbled["pages"], 240, "round {round}: {scribbled}");
        assert_eq!(scribbled["leftovers"], 0, "round {round}: a fresh instance found a previous one's writes");
    }
}

/// A slice cannot write the host's own records (`counterpoint.*`): a forged checkpoint would
/// make an automation skip events, a forged idempotency record answer for a command that never
/// ran. The command fails as invalid input and appends nothing.
#[tokio::test]
async fn a_slice_cannot_forge_the_hosts_records() {
    let host = Host::new();
    for forged in ["counterpoint.checkpoint", "counterpoint.idempotency"] {
        let err = host.run("hostile", "flood", json!({"events": 1, "size": 8, "event_type": forged})).await.unwrap_err();
        assert!(matches!(&err, InvokeError::InvalidInput(m) if m.contains("reserved")), "{err:?}");
    }
    assert!(host.event_types().await.is_empty(), "nothing was appended");
    // The same command with a type of its own appends.
    host.run("hostile", "flood", json!({"events": 1, "size": 8})).await.unwrap();
    assert_eq!(host.event_types().await, vec!["Flooded"]);
}
