//! Commands through the CommandRunner: appends, rejections, races and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use counterpoint::runtime::InvokeError;
use counterpoint::store::{
    AppendCondition, Event, EventStore, Limits, MemoryStore, Position, Query, ReadOptions, ReadStream, SharedStore,
    StoreError, Subscription, Tenant,
};
use serde_json::json;
use tokio::sync::Barrier;

use super::Host;

#[tokio::test]
async fn a_command_appends_its_events_with_their_tags() {
    let host = Host::new();
    let (receipt, out) = host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.unwrap();
    assert_eq!(receipt["status"], "placed");
    assert_eq!(out.attempts, 1);
    assert_eq!(out.positions, vec![Position::new(1)]);
    let (events, _) = host.store.read(&host.tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    assert_eq!(events[0].event.event_type, "OrderPlaced");
    assert_eq!(events[0].event.tags, vec!["customer_id:c-1".to_string(), "order_id:o-1".to_string()]);
    let data = counterpoint::codec::msgpack_to_json(&events[0].event.data).unwrap();
    assert_eq!(data, json!({"order_id": "o-1", "customer_id": "c-1"}), "MessagePack with named fields");
}

#[tokio::test]
async fn a_rejected_command_appends_nothing() {
    let host = Host::new();
    host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-1"})).await.unwrap();
    let err = host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c-2"})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("already placed")), "{err:?}");
    let err = host.run("orders", "confirm-order", json!({"order_id": "o-1"})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(m) if m.contains("no items")), "{err:?}");
    assert_eq!(host.event_types().await, vec!["OrderPlaced"]);
}

#[tokio::test]
async fn bad_input_and_unknown_commands_are_specific_errors() {
    let host = Host::new();
    let err = host.run("orders", "place-order", json!({"order_id": 5})).await.unwrap_err();
    assert!(matches!(err, InvokeError::InvalidInput(_)), "{err:?}");
    let err = host.run("orders", "launch-rocket", json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::NotFound(_)), "{err:?}");
    assert!(host.event_types().await.is_empty());
}

/// A store that makes the first `n` reads wait for each other before returning, so the
/// commands that made them race to append; it counts reads to tell how often commands ran.
struct Rendezvous {
    inner: MemoryStore,
    barrier: Barrier,
    waiting: AtomicUsize,
    reads: AtomicUsize,
    /// When set, every read is followed by an append that breaks the reader's boundary.
    interfere: Option<Event>,
}

impl Rendezvous {
    fn new(n: usize, interfere: Option<Event>) -> Arc<Self> {
        Arc::new(Rendezvous {
            inner: MemoryStore::new(),
            barrier: Barrier::new(n),
            waiting: AtomicUsize::new(n),
            reads: AtomicUsize::new(0),
            interfere,
        })
    }
}

#[async_trait]
impl EventStore for Rendezvous {
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let stream = self.inner.read(tenant, query, options).await;
        if self.waiting.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| w.checked_sub(1)).is_ok() {
            self.barrier.wait().await;
        }
        if let Some(event) = &self.interfere {
            self.inner.append(tenant, vec![event.clone()], vec![]).await?;
        }
        stream
    }
    async fn append(&self, tenant: &Tenant, events: Vec<Event>, conditions: Vec<AppendCondition>) -> Result<Vec<Position>, StoreError> {
        self.inner.append(tenant, events, conditions).await
    }
    async fn head(&self, tenant: &Tenant) -> Result<Position, StoreError> {
        self.inner.head(tenant).await
    }
    async fn event_count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        self.inner.event_count(tenant).await
    }
    async fn subscribe(&self, tenant: &Tenant, query: Query, after: Option<Position>) -> Result<Subscription, StoreError> {
        self.inner.subscribe(tenant, query, after).await
    }
    fn limits(&self) -> &Limits {
        self.inner.limits()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_boundary_two_commands_the_loser_reruns_and_sees_the_winner() {
    let store = Rendezvous::new(2, None);
    let host = Arc::new(Host::on(store.clone() as SharedStore));
    let place = |customer: &'static str| {
        let host = host.clone();
        tokio::spawn(async move { host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": customer})).await })
    };
    let (a, b) = (place("c-a"), place("c-b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let (winner, loser) = match (&a, &b) {
        (Ok(_), Err(_)) => (a.unwrap(), b.unwrap_err()),
        (Err(_), Ok(_)) => (b.unwrap(), a.unwrap_err()),
        other => panic!("exactly one must win: {other:?}"),
    };
    assert_eq!(winner.1.attempts, 1);
    // The loser's append failed its condition, it ran again, read the winner's event, and said no.
    assert!(matches!(&loser, InvokeError::Rejected(m) if m.contains("already placed")), "{loser:?}");
    assert_eq!(store.reads.load(Ordering::SeqCst), 3, "two first runs and one re-run");
    assert_eq!(host.event_types().await, vec!["OrderPlaced"]);
}

#[tokio::test]
async fn a_boundary_that_never_settles_is_a_conflict_at_the_deadline() {
    // Every read is followed by an event on the same order: the boundary always moves.
    let noise = Event::new("ItemAdded").tag("order_id:o-9").tag("sku:noise").data(counterpoint::codec::json_to_msgpack(
        &json!({"order_id": "o-9", "sku": "noise", "qty": 1, "price": 0}),
    ));
    let store = Rendezvous::new(0, Some(noise));
    let mut host = Host::on(store.clone() as SharedStore);
    host.runner.deadline = std::time::Duration::from_millis(300);
    let err = host.run("orders", "place-order", json!({"order_id": "o-9", "customer_id": "c"})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Conflict(m) if m.contains("deadline")), "{err:?}");
    assert!(store.reads.load(Ordering::SeqCst) >= 3, "it ran again and again until the deadline");
    assert!(!host.event_types().await.contains(&"OrderPlaced".to_string()), "nothing of the command was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_disjoint_boundaries_never_retry() {
    const N: usize = 32;
    let store = Rendezvous::new(N, None);
    let host = Arc::new(Host::on(store.clone() as SharedStore));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                host.run("orders", "place-order", json!({"order_id": format!("o-{i}"), "customer_id": "c"})).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().1.attempts, 1);
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), N);
}

#[tokio::test]
async fn a_boundary_across_two_slices() {
    let host = Host::new();
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 5})).await.unwrap();
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 2})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Rejected(_)), "no such order yet: {err:?}");
    host.run("orders", "place-order", json!({"order_id": "o-1", "customer_id": "c"})).await.unwrap();
    let (reservation, _) = host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 2})).await.unwrap();
    assert_eq!(reservation["available"], 3);
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-1", "sku": "apple", "qty": 1})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Rejected(_)), "already reserved for this order: {err:?}");
    host.run("orders", "place-order", json!({"order_id": "o-2", "customer_id": "c"})).await.unwrap();
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-2", "sku": "apple", "qty": 4})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(_)), "only 3 left: {err:?}");
    host.run("orders", "cancel-order", json!({"order_id": "o-2", "reason": "changed mind"})).await.unwrap();
    let err = host.run("inventory", "reserve-stock", json!({"order_id": "o-2", "sku": "apple", "qty": 1})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Rejected(_)), "cancelled order: {err:?}");
    let level = host.query("inventory", "stock-level", json!({"sku": "apple"})).await.unwrap();
    assert_eq!((level["received"].clone(), level["reserved"].clone(), level["available"].clone()), (json!(5), json!(2), json!(3)));
}

/// 64 commands on one boundary at once (items added to one order), on the durable store:
/// every one is decided (here: succeeds), none ends in `conflict`, and the order holds all 64
/// items. Before the runner queued re-runs on hot boundaries, several gave up after four
/// attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_commands_on_one_boundary_are_all_decided() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(counterpoint::store::EmbeddedStore::open(dir.path()).unwrap());
    let host = Arc::new(Host::on(store.clone()));
    host.run("orders", "place-order", json!({"order_id": "hot", "customer_id": "c"})).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { host.run("orders", "add-item", json!({"order_id": "hot", "sku": format!("sku-{i}"), "qty": 1, "price": 1})).await })
        })
        .collect();
    let mut reran = 0;
    for task in tasks {
        let (_, out) = task.await.unwrap().expect("every command on the hot boundary succeeds");
        reran += usize::from(out.attempts > 1);
    }
    assert!(reran > 0, "the commands did race (else this test proves nothing)");
    let added = host.event_types().await.iter().filter(|t| *t == "ItemAdded").count();
    assert_eq!(added, 64);
}
