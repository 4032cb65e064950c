//! Leases, which let several hosts on one cluster run each background worker exactly once:
//! one holder at a time under contention, a dead holder's lease taken over and a live one's
//! not, a holder told when it has lost its lease, and two hosts' worth of read-model and
//! automation workers of which only one follows the log while the other waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use counterpoint::leases::{LeaseStore, LeaseValue, Leases, MemoryLeases};

fn leases(store: &Arc<MemoryLeases>, holder: &str, ttl_ms: u64) -> Leases {
    Leases::new(store.clone() as Arc<dyn LeaseStore>, holder, Duration::from_millis(ttl_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_under_contention() {
    let store = Arc::new(MemoryLeases::default());
    let holding = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let hosts: Vec<_> = (0..4)
        .map(|i| {
            let (leases, holding, taken) = (leases(&store, &format!("host-{i}"), 60), holding.clone(), taken.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let lease = leases.acquire("automation/acme/inventory/reserve").await.unwrap();
                    assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    taken.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(lease); // gives it up
                }
            })
        })
        .collect();
    for host in hosts {
        tokio::time::timeout(Duration::from_secs(60), host).await.expect("every host gets its turns").unwrap();
    }
    assert_eq!(taken.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_is_taken_over_and_a_live_ones_is_not() {
    let store = Arc::new(MemoryLeases::default());
    let (a, b) = (leases(&store, "a", 200), leases(&store, "b", 200));
    let held = a.acquire("readmodel/acme/inventory/stock-levels").await.unwrap();
    // While `a` renews, `b` waits, however long.
    let waiting = tokio::time::timeout(Duration::from_millis(1_000), b.acquire("readmodel/acme/inventory/stock-levels")).await;
    assert!(waiting.is_err(), "b took a lease that a renews");
    assert_eq!(store.get("readmodel/acme/inventory/stock-levels").await.unwrap().unwrap().holder, "a");
    // `a` dies without giving the lease up: `b` takes it once it has been silent for its time to live.
    held.abandon();
    let taken = tokio::time::timeout(Duration::from_secs(10), b.acquire("readmodel/acme/inventory/stock-levels")).await;
    assert!(taken.is_ok(), "b takes over a dead holder's lease");
    assert_eq!(store.get("readmodel/acme/inventory/stock-levels").await.unwrap().unwrap().holder, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_learns_that_it_lost_its_lease() {
    let store = Arc::new(MemoryLeases::default());
    let mut lease = leases(&store, "a", 150).acquire("x").await.unwrap();
    // Someone else's value lands (say, a host that thought `a` dead): `a`'s next renewal fails.
    let current = store.get("x").await.unwrap();
    let other = LeaseValue { holder: "b".into(), nonce: 1 };
    assert!(store.swap("x", current.as_ref(), Some(&other)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), lease.lost()).await.expect("the holder is told");
    drop(lease);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.get("x").await.unwrap(), Some(other), "a lost lease is not cleared by its old holder");
}
