//! `counterpoint export` / `import` end to end: the orders and inventory slices' log, with its
//! automations' checkpoints and an idempotency record, moved from the embedded store to another
//! backend (FoundationDB, and the embedded store) and back, answering the same; an import cut
//! off after N batches (before or after its last append commits) resumes without duplicating or
//! skipping an event; damaged and foreign streams are refused and leave nothing wrong behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use counterpoint::automations::{Automations, RetryPolicy};
use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::deploy::Registry;
use counterpoint::readmodels::{EmbeddedState, ReadModelId, ReadModels};
use counterpoint::runner::{CommandRunner, IdempotencyKey};
use counterpoint::store::{
    AppendCondition, EmbeddedStore, Event, EventStore, Limits, Position, Query, ReadOptions, ReadStream, SequencedEvent, SharedStore,
    StoreError, Subscription, Tenant,
};
use counterpoint::tenants::Tenants;
use counterpoint::transfer::{self, Encoding, FormatError, ImportOptions, MappingFile, StreamReader, StreamWriter, TransferError};
use counterpoint_tests::slices::{runtime, wasm};
use serde_json::{json, Value};

use crate::store::Fixture;

/// A host on one backend: the store given, the two example slices deployed, read-model state
/// in a directory of its own.
struct Host {
    store: SharedStore,
    registry: Arc<Registry>,
    read_models: Arc<ReadModels>,
    tenant: Tenant,
    _dir: tempfile::TempDir,
}

async fn host(store: SharedStore) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("acme").unwrap();
    let registry = Arc::new(Registry::open(runtime(), dir.path(), Arc::new(Tenants::single(&tenant))).await.unwrap());
    for name in ["orders", "inventory"] {
        registry.deploy(&tenant, wasm(name), Some(name)).await.unwrap();
    }
    let state = Arc::new(EmbeddedState::open(dir.path().join("readmodels.redb")).unwrap());
    let read_models = ReadModels::new(store.clone(), state, registry.clone());
    Host { store, registry, read_models, tenant, _dir: dir }
}

impl Host {
    fn automations(&self) -> Arc<Automations> {
        Automations::new(self.store.clone(), self.registry.clone(), CommandRunner::default(), RetryPolicy::default())
    }

    async fn run(&self, slice: &str, command: &str, input: Value) {
        let slice = self.registry.get(&self.tenant, slice).unwrap();
        CommandRunner::default().run(&slice, &self.store, &self.tenant, command, &json_to_msgpack(&input)).await.unwrap();
    }

    /// Places order o-9 under the idempotency key `k-9`: its result and positions.
    async fn place_once(&self) -> (Value, Vec<Position>, u32) {
        let slice = self.registry.get(&self.tenant, "orders").unwrap();
        let key = IdempotencyKey { key: "k-9".into(), retention: Duration::from_secs(3600) };
        let input = json_to_msgpack(&json!({"order_id": "o-9", "customer_id": "c-0"}));
        let out = CommandRunner::default().run_once(&slice, &self.store, &self.tenant, "place-order", &input, &key).await.unwrap();
        (msgpack_to_json(&out.output).unwrap_or(Value::Null), out.positions, out.attempts)
    }

    async fn events(&self) -> Vec<SequencedEvent> {
        self.store.read(&self.tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap().0
    }

    /// What the slices answer: every projection the demo asks, and the stock-levels read model.
    async fn answers(&self) -> Value {
        let mut answers = serde_json::Map::new();
        let mut ask = |name: String, value: Value| answers.insert(name, value);
        for (slice, projection, params) in projections() {
            let slice = self.registry.get(&self.tenant, slice).unwrap();
            let out = counterpoint::projections::run(&slice, &self.store, &self.tenant, projection, &json_to_msgpack(&params)).await.unwrap();
            ask(format!("{projection} {params}"), msgpack_to_json(&out).unwrap_or(Value::Null));
        }
        let id = ReadModelId { tenant: self.tenant.clone(), slice: "inventory".into(), name: "stock-levels".into() };
        self.read_models.catch_up(&id).await.unwrap();
        let out = self.read_models.query(&id, &json_to_msgpack(&json!({})), None, Duration::ZERO).await.unwrap();
        ask("read model stock-levels".into(), msgpack_to_json(&out).unwrap());
        Value::Object(answers)
    }
}

fn projections() -> Vec<(&'static str, &'static str, Value)> {
    let mut asks = vec![("inventory", "stock-level", json!({"sku": "apple"})), ("inventory", "stock-level", json!({"sku": "pear"}))];
    for i in 0..7 {
        let order = if i == 6 { "o-9".to_string() } else { format!("o-{i}") };
        asks.push(("orders", "order-summary", json!({"order_id": order})));
    }
    for c in 0..3 {
        asks.push(("orders", "customer-orders", json!({"customer_id": format!("c-{c}")})));
    }
    asks
}

/// The demo's kind of log on `host`: stock received, orders placed, filled and confirmed, the
/// automations reserving stock or cancelling (their checkpoints in the log), an order placed
/// under an idempotency key. Returns once the automations have caught up and stopped.
async fn demo_log(host: &Host) {
    let automations = host.automations();
    automations.start();
    host.run("inventory", "receive-stock", json!({"sku": "apple", "qty": 10})).await;
    host.run("inventory", "receive-stock", json!({"sku": "pear", "qty": 5})).await;
    for i in 0..6 {
        let order = format!("o-{i}");
        host.run("orders", "place-order", json!({"order_id": order, "customer_id": format!("c-{}", i % 3)})).await;
        host.run("orders", "add-item", json!({"order_id": order, "sku": "apple", "qty": i % 3 + 1, "price": 120})).await;
        host.run("orders", "add-item", json!({"order_id": order, "sku": "pear", "qty": 1, "price": 80})).await;
        host.run("orders", "confirm-order", json!({"order_id": order})).await;
    }
    host.place_once().await;
    // Every confirmed order is reserved or cancelled, and every automation has checkpointed it.
    let caught_up = async {
        loop {
            let status = automations.status(&host.tenant).await.unwrap();
            let outcomes = host.events().await.iter().filter(|e| ["OrderCancelled", "StockReserved"].contains(&e.event.event_type.as_str())).count();
            if outcomes >= 6 && status.iter().all(|s| s.lag == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), caught_up).await.expect("the automations catch up within 60 s");
    automations.stop().await;
}

async fn export(store: &dyn EventStore, tenant: &Tenant, encoding: Encoding) -> Vec<u8> {
    let writer = StreamWriter::new(Vec::new(), encoding).unwrap();
    transfer::export(store, std::slice::from_ref(tenant), writer).await.unwrap().0
}

/// Imports `stream` into `store`; returns the summary (or error) and the mapping file's text.
async fn import(store: &dyn EventStore, stream: &[u8], batch: usize) -> (Result<transfer::ImportSummary, TransferError>, String) {
    let mut mapping = MappingFile::new(Vec::new()).unwrap();
    let result = match StreamReader::open(stream) {
        Ok(reader) => transfer::import(store, reader, Some(&mut mapping), &ImportOptions { batch, into: None }).await,
        Err(err) => Err(err.into()),
    };
    (result, String::from_utf8(mapping.finish().unwrap()).unwrap())
}

/// The mapping file's pairs, old to new.
fn pairs(mapping: &str) -> Vec<(Position, Position)> {
    let mut lines = mapping.lines();
    assert_eq!(lines.next(), Some(MappingFile::<Vec<u8>>::HEADER));
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "{line:?}");
            (fields[1].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect()
}

fn without_positions(events: &[SequencedEvent]) -> Vec<&Event> {
    events.iter().map(|e| &e.event).collect()
}

async fn the_demo_log_moves_and_answers_the_same(target: Fixture) {
    let source_dir = tempfile::tempdir().unwrap();
    let source = host(Arc::new(EmbeddedStore::open(source_dir.path().join("events")).unwrap())).await;
    demo_log(&source).await;
    let before = source.answers().await;
    let source_events = source.events().await;
    let checkpoints: Vec<_> = source.automations().status(&source.tenant).await.unwrap().into_iter().map(|s| (s.id.name, s.checkpoint)).collect();
    assert!(source_events.iter().any(|e| e.event.event_type == "counterpoint.checkpoint"), "the log holds checkpoints");
    assert!(source_events.iter().any(|e| e.event.event_type == "counterpoint.idempotency"), "and an idempotency record");

    let stream = export(source.store.as_ref(), &source.tenant, Encoding::Binary).await;
    let (summary, mapping) = import(target.store.as_ref(), &stream, 7).await;
    let summary = summary.unwrap();
    assert_eq!((summary.tenants, summary.appended, summary.verified), (1, source_events.len() as u64, 0));
    let moved = host(target.store.clone()).await;
    let moved_events = moved.events().await;

    // Every event, in order; positions as the mapping file says.
    let map: HashMap<Position, Position> = pairs(&mapping).into_iter().collect();
    assert_eq!(map.len(), source_events.len());
    for (old, new) in source_events.iter().zip(&moved_events) {
        assert_eq!(map[&old.position], new.position);
        if old.event.event_type != "counterpoint.checkpoint" {
            assert_eq!(old.event, new.event);
        }
    }
    assert_eq!(moved_events.len(), source_events.len());

    // The same answers from projections and the read model (rebuilt from the moved log).
    assert_eq!(moved.answers().await, before);
    // Checkpoints name the moved positions: the automations go on where they were and do
    // nothing again.
    let automations = moved.automations();
    let moved_checkpoints: Vec<_> = automations.status(&moved.tenant).await.unwrap().into_iter().map(|s| (s.id.name, s.checkpoint)).collect();
    let expected: Vec<_> = checkpoints.iter().map(|(name, old)| (name.clone(), map[old])).collect();
    assert_eq!(moved_checkpoints, expected);
    automations.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    automations.stop().await;
    assert_eq!(moved.events().await.len(), moved_events.len(), "no automation reacted again");
    // The idempotency record still answers, with the moved positions.
    let (result, positions, attempts) = moved.place_once().await;
    let (source_result, source_positions, _) = source.place_once().await;
    assert_eq!((result, attempts), (source_result, 0));
    assert_eq!(positions, source_positions.iter().map(|p| map[p]).collect::<Vec<_>>());

    // And back, as JSON lines this time, to a fresh embedded store: the very log we started with.
    let stream = export(moved.store.as_ref(), &moved.tenant, Encoding::Jsonl).await;
    let dir = tempfile::tempdir().unwrap();
    let back: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("events")).unwrap());
    let (summary, _) = import(back.as_ref(), &stream, 4096).await;
    assert_eq!(summary.unwrap().appended, source_events.len() as u64);
    let (back_events, _) = back.read(&source.tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    assert_eq!(back_events, source_events);
}

crate::backend_cases!([the_demo_log_moves_and_answers_the_same];
    embedded => crate::store::embedded();
    // Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
    fdb => crate::store::fdb(), #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
);

/// A store that stops working after `appends` appends: the last one fails before it reaches
/// the store, or (`after_commit`) once it is durable, as a crash between the append and its
/// acknowledgement would.
struct Interrupting {
    inner: SharedStore,
    appends: AtomicUsize,
    after_commit: bool,
}

#[async_trait]
impl EventStore for Interrupting {
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.inner.read(tenant, query, options).await
    }

    async fn append(&self, tenant: &Tenant, events: Vec<Event>, conditions: Vec<AppendCondition>) -> Result<Vec<Position>, StoreError> {
        let left = self.appends.fetch_sub(1, Ordering::SeqCst);
        if left == 0 {
            self.appends.store(0, Ordering::SeqCst);
            return Err(StoreError::Unavailable("interrupted (before the append)".into()));
        }
        let positions = self.inner.append(tenant, events, conditions).await?;
        if left == 1 && self.after_commit {
            return Err(StoreError::Unavailable("interrupted (after the append committed)".into()));
        }
        Ok(positions)
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

/// A log of `n` events with automation checkpoints among them, each naming the event before it.
async fn synthetic_log(n: u64) -> (SharedStore, Tenant, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("events")).unwrap());
    let tenant = Tenant::new("acme").unwrap();
    let mut appended = 0;
    while appended < n {
        let events: Vec<Event> =
            (0..97).map(|i| Event::new("Noted").tag(format!("n:{}", appended + i)).data(json_to_msgpack(&json!({"i": appended + i})))).collect();
        let head = store.append(&tenant, events, vec![]).await.unwrap();
        let mut checkpoint = Event::new("counterpoint.checkpoint").tag("automation:s/a");
        checkpoint.data = json_to_msgpack(&json!({"position": head.last().unwrap().to_string()}));
        store.append(&tenant, vec![checkpoint], vec![]).await.unwrap();
        appended += 98;
    }
    (store, tenant, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_without_duplicating_or_skipping() {
    let (source, tenant, _dir) = synthetic_log(3_000).await;
    let (source_events, _) = source.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    let stream = export(source.as_ref(), &tenant, Encoding::Binary).await;
    for after_commit in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let target: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("events")).unwrap());
        // Cut off in the fourth append, then in the third append of the resumed run.
        for appends in [3, 2] {
            let interrupting = Interrupting { inner: target.clone(), appends: AtomicUsize::new(appends), after_commit };
            let (result, _) = import(&interrupting, &stream, 200).await;
            let err = result.unwrap_err();
            assert!(err.to_string().contains("interrupted"), "{err}");
        }
        let held = target.event_count(&tenant).await.unwrap();
        assert!(held > 0 && held < source_events.len() as u64, "a part is imported: {held}");

        let (summary, mapping) = import(target.as_ref(), &stream, 200).await;
        let summary = summary.unwrap();
        assert_eq!(summary.verified, held, "after_commit {after_commit}: what was there is checked, not appended again");
        assert_eq!(summary.verified + summary.appended, source_events.len() as u64);
        let (moved, _) = target.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        // Every event once, in order (the embedded store counts positions alike on both sides,
        // so even the checkpoints' data is unchanged).
        assert_eq!(moved, source_events, "after_commit {after_commit}");
        let pairs = pairs(&mapping);
        assert_eq!(pairs.len(), source_events.len(), "the mapping covers the resumed and the appended events");
        assert!(pairs.iter().all(|(old, new)| old == new));

        // A run over a complete import changes nothing.
        let (summary, _) = import(target.as_ref(), &stream, 200).await;
        assert_eq!((summary.unwrap().appended, target.event_count(&tenant).await.unwrap()), (0, source_events.len() as u64));
    }
}

/// The same, with the import in a child process killed by SIGKILL in the middle, twice.
#[test]
fn an_import_killed_mid_way_resumes_without_duplicating_or_skipping() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (source, tenant, _source_dir) = runtime.block_on(synthetic_log(20_000));
    let source_events = runtime.block_on(async { source.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap().0 });
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream.cpx");
    std::fs::write(&stream, runtime.block_on(export(source.as_ref(), &tenant, Encoding::Binary))).unwrap();
    let target_dir = dir.path().join("target");
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_importer")).arg(&stream).arg(&target_dir).stdout(Stdio::piped()).spawn().expect("start importer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the importer's first line");
        assert_eq!(line.trim(), "READY");
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..300)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    runtime.block_on(async {
        let target: SharedStore = Arc::new(EmbeddedStore::open(target_dir.join("events")).unwrap());
        let held = target.event_count(&tenant).await.unwrap();
        assert!(held > 0 && held < source_events.len() as u64, "killed in the middle: {held} events");
        let (summary, _) = import(target.as_ref(), &std::fs::read(&stream).unwrap(), 1000).await;
        assert_eq!(summary.unwrap().verified, held);
        let (moved, _) = target.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        assert_eq!(moved, source_events, "every event once, in order");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_rewritten_to_the_new_positions() {
    // A stream from a backend with gaps between positions (FoundationDB's): events at 10, 20,
    // 30, ...; after every third one a checkpoint naming it, or a position in the gap before it.
    let tenant = Tenant::new("acme").unwrap();
    let checkpoint = |position: u128| {
        let mut event = Event::new("counterpoint.checkpoint").tag("automation:s/a");
        event.data = json_to_msgpack(&json!({"position": position.to_string()}));
        event
    };
    let mut stream_events = Vec::new();
    for k in 1..=60u128 {
        stream_events.push(SequencedEvent { position: Position::from_u128(10 * k), event: Event::new("Noted").tag(format!("k:{k}")) });
        if k % 3 == 0 {
            let named = if k % 2 == 0 { 10 * k } else { 10 * k + 5 };
            stream_events.push(SequencedEvent { position: Position::from_u128(10 * k + 7), event: checkpoint(named) });
        }
    }
    let mut writer = StreamWriter::new(Vec::new(), Encoding::Binary).unwrap();
    writer.tenant(&tenant, Position::from_u128(607)).unwrap();
    for event in &stream_events {
        writer.event(event).unwrap();
    }
    writer.done(&tenant, stream_events.len() as u64, Position::from_u128(607)).unwrap();
    let stream = writer.finish(1).unwrap();

    // Into a tenant holding other events: refused, left as it was.
    let dir = tempfile::tempdir().unwrap();
    let target: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("events")).unwrap());
    let other = Tenant::new("other").unwrap();
    target.append(&other, (0..10).map(|_| Event::new("Before")).collect(), vec![]).await.unwrap();
    let reader = StreamReader::open(&stream[..]).unwrap();
    let options = ImportOptions { batch: 16, into: Some(other.clone()) };
    let err = transfer::import(target.as_ref(), reader, None::<&mut MappingFile<Vec<u8>>>, &options).await.unwrap_err();
    assert!(matches!(err, TransferError::NotAPrefix { .. }), "a tenant with other events is refused: {err}");
    assert_eq!(target.event_count(&other).await.unwrap(), 10, "and left as it was");

    // Into an empty one: positions 1, 2, 3, ...; each checkpoint names the new position of the
    // last event at or before the one it named.
    let (summary, mapping) = import(target.as_ref(), &stream, 16).await;
    assert_eq!(summary.unwrap().appended, stream_events.len() as u64);
    let map: HashMap<Position, Position> = pairs(&mapping).into_iter().collect();
    let (moved, _) = target.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    let named = |e: &SequencedEvent| -> u128 { msgpack_to_json(&e.event.data).unwrap()["position"].as_str().unwrap().parse().unwrap() };
    let mut checkpoints = 0;
    for (i, (old, new)) in stream_events.iter().zip(&moved).enumerate() {
        assert_eq!((map[&old.position], new.position), (Position::new(i as u64 + 1), Position::new(i as u64 + 1)));
        if old.event.is_host_record() {
            let was = named(old);
            let event_before = Position::from_u128(was - was % 10);
            assert_eq!(Position::from_u128(named(new)), map[&event_before], "checkpoint at {}", old.position);
            checkpoints += 1;
        } else {
            assert_eq!(old.event, new.event);
        }
    }
    assert_eq!((checkpoints, moved.len()), (20, stream_events.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_streams_are_refused_and_append_nothing_wrong() {
    let (source, tenant, _dir) = synthetic_log(20_000).await;
    let (source_events, _) = source.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    let binary = export(source.as_ref(), &tenant, Encoding::Binary).await;
    let jsonl = export(source.as_ref(), &tenant, Encoding::Jsonl).await;
    let mut flipped = binary.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let mut future = binary.clone();
    future[11] = 9;
    // The 5000th event's type is not a string.
    let mut bad_line = String::from_utf8(jsonl.clone()).unwrap();
    let at = bad_line.match_indices("\"type\":\"Noted\"").nth(5000).unwrap().0;
    bad_line.replace_range(at..at + 14, "\"type\":7");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("binary cut in a block", binary[..binary.len() * 2 / 3].to_vec(), "the stream is truncated"),
        ("binary cut before its end record", binary[..binary.len() - 1].to_vec(), "the stream is truncated"),
        ("a flipped bit", flipped, "damaged: its checksum does not match"),
        ("a future version", future, "format version 9"),
        ("JSON lines cut short", jsonl[..jsonl.len() / 2].to_vec(), "the stream is truncated"),
        ("a malformed JSON line", bad_line.into_bytes(), "not an event"),
        ("not an export", b"position,type\n1,Noted\n".to_vec(), "not a Counterpoint export"),
    ];
    for (what, stream, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let target: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("events")).unwrap());
        let (result, _) = import(target.as_ref(), &stream, 1000).await;
        let err = result.expect_err(what);
        assert!(err.to_string().contains(says), "{what}: {err}");
        if what.contains("version") || what.contains("not an export") {
            assert!(matches!(err, TransferError::Format(FormatError::UnsupportedVersion { .. } | FormatError::NotAnExport(_))));
        }
        // Whatever was appended is the start of the log, each event once; an intact stream then
        // completes it.
        let (held, _) = target.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        assert_eq!(without_positions(&held), without_positions(&source_events[..held.len()]), "{what}");
        let (summary, _) = import(target.as_ref(), &binary, 1000).await;
        assert_eq!(summary.unwrap().verified, held.len() as u64, "{what}");
        let (all, _) = target.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        assert_eq!(all, source_events, "{what}");
    }
}

/// An export of a tenant nobody configured or created and whose log is empty is refused (a
/// misspelt name would otherwise export nothing without a word); a known tenant exports even
/// when empty, and a log with events exports whatever the configuration says.
#[tokio::test]
async fn an_export_of_an_unknown_empty_tenant_is_refused() {
    let (store, tenant, _dir) = synthetic_log(3).await;
    let misspelt = Tenant::new("acmee").unwrap();
    let refused = transfer::check_exportable(store.as_ref(), &misspelt, &[]).await;
    assert!(matches!(&refused, Err(TransferError::UnknownTenant { tenant }) if *tenant == misspelt), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("no tenant acmee"));
    transfer::check_exportable(store.as_ref(), &misspelt, std::slice::from_ref(&misspelt)).await.expect("a configured tenant, empty");
    transfer::check_exportable(store.as_ref(), &tenant, &[]).await.expect("a log with events");
}
