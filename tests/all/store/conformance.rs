//! The conformance suite: the DCB semantics every backend must have, written once.
//!
//! `conformance!(backend, fixture)` instantiates every case for one backend (attributes after
//! the fixture go on every case). A new backend plugs in with one line at the bottom of this file.
//!
//! Positions are opaque: the embedded and in-memory stores count 1, 2, 3, ..., the FoundationDB
//! store uses versionstamps. The cases name events by their ordinal in the tenant's log
//! ([`at`], [`ordinals`]) and assume nothing else about positions.

use counterpoint::store::{
    AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SequencedEvent, SharedStore, StoreError,
    Tenant, READ_BATCH,
};

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn ev(event_type: &str, tags: &[&str]) -> Event {
    let mut event = Event::new(event_type);
    event.tags = tags.iter().map(|t| t.to_string()).collect();
    event.data = format!("{event_type}/{}", tags.join(",")).into_bytes();
    event
}

fn item(types: &[&str], tags: &[&str]) -> QueryItem {
    QueryItem { types: types.iter().map(|t| t.to_string()).collect(), tags: tags.iter().map(|t| t.to_string()).collect() }
}

async fn append(store: &SharedStore, t: &Tenant, events: Vec<Event>) -> Vec<Position> {
    store.append(t, events, vec![]).await.expect("unconditional append")
}

async fn read(store: &SharedStore, t: &Tenant, query: Query, options: ReadOptions) -> (Vec<SequencedEvent>, Position) {
    store.read(t, query, options).await.expect("read").collect().await.expect("read stream")
}

/// Every position of the tenant's log, in order.
async fn log(store: &SharedStore, t: &Tenant) -> Vec<Position> {
    read(store, t, Query::all(), ReadOptions::default()).await.0.iter().map(|e| e.position).collect()
}

/// The position of the `n`-th event of the tenant's log (1-based; 0: `Position::ZERO`).
async fn at(store: &SharedStore, t: &Tenant, n: usize) -> Position {
    if n == 0 {
        return Position::ZERO;
    }
    log(store, t).await[n - 1]
}

/// A position after `p` and before any later event: no event can sit there.
fn just_after(p: Position) -> Position {
    Position::from_u128(p.get() + 1)
}

/// The ordinals (1-based) of `positions` in the tenant's log.
async fn ordinals(store: &SharedStore, t: &Tenant, positions: &[Position]) -> Vec<usize> {
    let log = log(store, t).await;
    positions.iter().map(|p| log.binary_search(p).expect("a position of the log") + 1).collect()
}

/// The read's events, named by their ordinals in the log.
async fn positions(store: &SharedStore, t: &Tenant, query: Query, options: ReadOptions) -> Vec<usize> {
    let events: Vec<Position> = read(store, t, query, options).await.0.iter().map(|e| e.position).collect();
    ordinals(store, t, &events).await
}

/// Seeds the log used by the query cases:
/// 1 A[x]  2 B[x,y]  3 C[y]  4 A[x,y]  5 B[]  6 A[z]
async fn seed(store: &SharedStore, t: &Tenant) {
    append(store, t, vec![ev("A", &["x"]), ev("B", &["x", "y"]), ev("C", &["y"])]).await;
    append(store, t, vec![ev("A", &["x", "y"]), ev("B", &[]), ev("A", &["z"])]).await;
}

pub async fn types_or_within_an_item(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let q = Query::item(item(&["A", "C"], &[]));
    assert_eq!(positions(&store, &t, q, ReadOptions::default()).await, vec![1, 3, 4, 6]);
}

pub async fn tags_and_within_an_item(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let q = Query::item(item(&[], &["x", "y"]));
    assert_eq!(positions(&store, &t, q, ReadOptions::default()).await, vec![2, 4]);
    let q = Query::item(item(&["A"], &["x", "y"]));
    assert_eq!(positions(&store, &t, q, ReadOptions::default()).await, vec![4]);
    let q = Query::item(item(&[], &["x", "nope"]));
    assert!(positions(&store, &t, q, ReadOptions::default()).await.is_empty());
}

pub async fn items_are_ored_and_matches_come_once(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    // Event 4 matches both items; event 2 matches both: each comes once, in order.
    let q = Query::item(item(&["A"], &[])).or(item(&[], &["y"]));
    assert_eq!(positions(&store, &t, q.clone(), ReadOptions::default()).await, vec![1, 2, 3, 4, 6]);
    assert_eq!(positions(&store, &t, q, ReadOptions::default().backwards()).await, vec![6, 4, 3, 2, 1]);
    let q = Query::item(item(&["Nope"], &[])).or(item(&["B"], &[]));
    assert_eq!(positions(&store, &t, q, ReadOptions::default()).await, vec![2, 5]);
}

pub async fn empty_query_reads_every_event_with_its_content(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let (events, position) = read(&store, &t, Query::all(), ReadOptions::default()).await;
    let all: Vec<Position> = events.iter().map(|e| e.position).collect();
    assert_eq!(ordinals(&store, &t, &all).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(position, at(&store, &t, 6).await);
    assert_eq!(events[1].event.event_type, "B");
    assert_eq!(events[1].event.tags, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(events[1].event.data, b"B/x,y".to_vec());
    // An item with neither types nor tags also matches everything.
    let q = Query::item(item(&[], &[]));
    assert_eq!(positions(&store, &t, q, ReadOptions::default()).await.len(), 6);
}

pub async fn metadata_and_tags_round_trip(store: SharedStore) {
    let t = tenant("t");
    let mut event = ev("M", &["b", "a", "b"]);
    event.metadata = vec![("causation".into(), "cmd-1".into()), ("user".into(), "ann".into())];
    event.data = (0..=255u8).collect();
    append(&store, &t, vec![event.clone()]).await;
    let (events, _) = read(&store, &t, Query::all(), ReadOptions::default()).await;
    assert_eq!(events[0].event.tags, vec!["a".to_string(), "b".to_string()], "tags are a set");
    assert_eq!(events[0].event.metadata, event.metadata);
    assert_eq!(events[0].event.data, event.data);
}

pub async fn after_is_exclusive_and_limit_cuts(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let all = Query::all();
    let (p1, p4, p6) = (at(&store, &t, 1).await, at(&store, &t, 4).await, at(&store, &t, 6).await);
    assert_eq!(positions(&store, &t, all.clone(), ReadOptions::default().after(p4)).await, vec![5, 6]);
    assert_eq!(positions(&store, &t, all.clone(), ReadOptions::default().limit(2)).await, vec![1, 2]);
    assert_eq!(positions(&store, &t, all.clone(), ReadOptions::default().after(p1).limit(2)).await, vec![2, 3]);
    assert!(positions(&store, &t, all.clone(), ReadOptions::default().after(p6)).await.is_empty());
    // Positions are opaque 128-bit values: one past anything this log holds selects nothing.
    let beyond = Position::from_u128(u128::MAX);
    assert!(positions(&store, &t, all.clone(), ReadOptions::default().after(beyond)).await.is_empty());
    assert!(positions(&store, &t, all.clone(), ReadOptions::default().after(beyond).backwards()).await.is_empty());
    store.append(&t, vec![ev("Z", &[])], vec![AppendCondition::new(all, Some(beyond))]).await.expect("nothing after beyond");
}

pub async fn backwards_alone_with_limit_with_after(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let a = Query::item(item(&["A"], &[]));
    assert_eq!(positions(&store, &t, a.clone(), ReadOptions::default().backwards()).await, vec![6, 4, 1]);
    assert_eq!(positions(&store, &t, a.clone(), ReadOptions::default().backwards().limit(2)).await, vec![6, 4]);
    let (p1, p3) = (at(&store, &t, 1).await, at(&store, &t, 3).await);
    assert_eq!(positions(&store, &t, a.clone(), ReadOptions::default().backwards().after(p1)).await, vec![6, 4]);
    assert_eq!(positions(&store, &t, a, ReadOptions::default().backwards().after(p3).limit(1)).await, vec![6]);
}

pub async fn consistency_position_of_each_read_kind(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let a = Query::item(item(&["A"], &[]));
    // A complete forward read: the head at the snapshot, though the last match is 6 and head is 6.
    append(&store, &t, vec![ev("Other", &[])]).await; // head 7, matches nothing of `a`
    let (p4, p7) = (at(&store, &t, 4).await, at(&store, &t, 7).await);
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default()).await;
    assert_eq!(p, p7, "complete forward read: head");
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default().backwards()).await;
    assert_eq!(p, p7, "complete backwards read: head");
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default().limit(2)).await;
    assert_eq!(p, p4, "forward read cut by limit: the last delivered event");
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default().limit(3)).await;
    assert_eq!(p, p7, "forward read whose limit was not reached: complete, so the head");
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default().backwards().limit(1)).await;
    assert_eq!(p, p7, "backwards read cut by limit: head (it saw everything newer)");
    let (_, p) = read(&store, &t, a, ReadOptions::default().after(just_after(p7))).await;
    assert_eq!(p, p7, "a read after the head: the head");
    let (_, p) = read(&store, &tenant("empty"), Query::all(), ReadOptions::default()).await;
    assert_eq!(p, Position::ZERO, "an empty log");
}

pub async fn recorded_positions_guard_appends_correctly(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let a = Query::item(item(&["A"], &[]));
    // "The last N" backwards, then append guarded by it: must succeed (the known bug would fail it).
    let (_, p) = read(&store, &t, a.clone(), ReadOptions::default().backwards().limit(1)).await;
    store.append(&t, vec![ev("A", &["new"])], vec![AppendCondition::new(a.clone(), Some(p))]).await.expect("guarded by head");
    // Forward cut by limit: an unseen later match must fail the append. The read's own
    // condition (how a command's read guards its append) is its query after that position.
    let mut stream = store.read(&t, a.clone(), ReadOptions::default().limit(1)).await.expect("read");
    while stream.next_batch().await.expect("read stream").is_some() {}
    let p = stream.consistency_position();
    let condition = stream.into_condition();
    assert_eq!(condition, AppendCondition::new(a, Some(p)), "the read's query, after its position");
    let err = store.append(&t, vec![ev("A", &[])], vec![condition]).await.unwrap_err();
    assert!(err.is_condition_failed(), "{err}");
}

pub async fn conditions(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let x = Query::item(item(&[], &["x"]));
    let z = Query::item(item(&[], &["z"]));
    let none = Query::item(item(&["Never"], &[]));

    let p = |n| at(&store, &t, n);
    let (p3, p4, p5, p6) = (p(3).await, p(4).await, p(5).await, p(6).await);
    // `after` is exclusive: the last x is 4.
    let ok = store.append(&t, vec![ev("D", &[])], vec![AppendCondition::new(x.clone(), Some(p4))]).await;
    assert_eq!(ordinals(&store, &t, &ok.unwrap()).await, vec![7]);
    let err = store.append(&t, vec![ev("D", &[])], vec![AppendCondition::new(x.clone(), Some(p3))]).await;
    match err {
        Err(StoreError::ConditionFailed { condition: 0, position }) => assert_eq!(position, p4),
        other => panic!("expected condition 0 to fail at 4, got {other:?}"),
    }
    // Without `after`, any match ever fails; a query that never matched passes.
    assert!(store.append(&t, vec![ev("D", &[])], vec![AppendCondition::new(z.clone(), None)]).await.unwrap_err().is_condition_failed());
    store.append(&t, vec![ev("D", &[])], vec![AppendCondition::new(none.clone(), None)]).await.unwrap();

    // Several conditions: all must hold; the error names the one that failed.
    let conds = vec![AppendCondition::new(none.clone(), None), AppendCondition::new(z.clone(), Some(p5))];
    match store.append(&t, vec![ev("D", &[])], conds).await {
        Err(StoreError::ConditionFailed { condition: 1, position }) => assert_eq!(position, p6),
        other => panic!("expected condition 1 to fail, got {other:?}"),
    }
    let conds = vec![AppendCondition::new(none.clone(), None), AppendCondition::new(z, Some(p6))];
    store.append(&t, vec![ev("D", &[])], conds).await.unwrap();

    // A condition matched only by the append's own events does not fail it.
    let own = Query::item(item(&["Own"], &[]));
    store.append(&t, vec![ev("Own", &[]), ev("Own", &["x"])], vec![AppendCondition::new(own.clone(), None)]).await.unwrap();
    // ...but the next one with the same condition does.
    assert!(store.append(&t, vec![ev("Own", &[])], vec![AppendCondition::new(own, None)]).await.unwrap_err().is_condition_failed());
}

pub async fn failed_append_writes_nothing(store: SharedStore) {
    let t = tenant("t");
    seed(&store, &t).await;
    let head = store.head(&t).await.unwrap();
    let x = Query::item(item(&[], &["x"]));
    let err = store
        .append(&t, vec![ev("E", &["fresh"]), ev("E", &["fresh"])], vec![AppendCondition::new(x, None)])
        .await
        .unwrap_err();
    assert!(err.is_condition_failed());
    assert_eq!(store.head(&t).await.unwrap(), head);
    assert!(positions(&store, &t, Query::item(item(&[], &["fresh"])), ReadOptions::default()).await.is_empty());
    // The next successful append is the log's 7th event: nothing was half-written.
    let next = append(&store, &t, vec![ev("E", &[])]).await;
    assert!(next[0] > head);
    assert_eq!(ordinals(&store, &t, &next).await, vec![7]);
}

pub async fn positions_strictly_increase_and_match_reads(store: SharedStore) {
    let t = tenant("t");
    let mut returned = Vec::new();
    for i in 0..20 {
        let events = (0..(i % 4) + 1).map(|k| ev("P", &[&format!("i:{i}"), &format!("k:{k}")])).collect();
        returned.extend(append(&store, &t, events).await);
    }
    assert!(returned.windows(2).all(|w| w[0] < w[1]), "{returned:?}");
    let (events, head) = read(&store, &t, Query::all(), ReadOptions::default()).await;
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), returned);
    assert_eq!(head, *returned.last().unwrap());
    assert_eq!(store.head(&t).await.unwrap(), head);
}

pub async fn tenants_are_isolated(store: SharedStore) {
    let (a, b) = (tenant("alpha"), tenant("beta"));
    append(&store, &a, vec![ev("A", &["x"]), ev("A", &["x"])]).await;
    let first_of_b = append(&store, &b, vec![ev("A", &["x"])]).await;
    assert_eq!(ordinals(&store, &b, &first_of_b).await, vec![1], "logs are per tenant");
    assert_eq!(positions(&store, &b, Query::all(), ReadOptions::default()).await, vec![1]);
    assert_eq!(store.head(&a).await.unwrap(), at(&store, &a, 2).await);
    // A condition in one tenant never sees another tenant's events.
    let x = Query::item(item(&[], &["x"]));
    store.append(&tenant("gamma"), vec![ev("A", &[])], vec![AppendCondition::new(x, None)]).await.unwrap();
}

pub async fn every_limit_is_enforced_and_writes_nothing(store: SharedStore) {
    let t = tenant("t");
    append(&store, &t, vec![ev("Seed", &[])]).await;
    let limits = store.limits().clone();
    let long = |n: usize| "a".repeat(n);
    let too_many_tags: Vec<String> = (0..=limits.max_tags_per_event).map(|i| format!("t{i}")).collect();
    let cases: Vec<(&str, Vec<Event>, bool)> = vec![
        ("type too long", vec![Event::new(long(limits.max_type_len + 1))], false),
        ("tag too long", vec![Event::new("T").tag(long(limits.max_tag_len + 1))], false),
        ("too many tags", vec![Event { tags: too_many_tags, ..Event::new("T") }], false),
        ("event too big", vec![Event::new("T").data(vec![0u8; limits.max_event_bytes + 1])], false),
        ("too many events", (0..=limits.max_events_per_append).map(|_| Event::new("T")).collect(), false),
        (
            "append too big",
            (0..(limits.max_append_bytes / limits.max_event_bytes) + 1)
                .map(|_| Event::new("T").data(vec![0u8; limits.max_event_bytes]))
                .collect(),
            false,
        ),
        ("empty type", vec![Event::new("")], true),
        ("empty tag", vec![Event::new("T").tag("")], true),
        ("no events", vec![], true),
    ];
    for (name, events, is_invalid_input) in cases {
        let err = store.append(&t, events, vec![]).await.expect_err(name);
        match (&err, is_invalid_input) {
            (StoreError::InvalidInput(_), true) | (StoreError::LimitExceeded { .. }, false) => {}
            _ => panic!("{name}: unexpected error {err:?}"),
        }
        assert!(!err.to_string().is_empty());
    }
    // The largest allowed event is fine.
    append(&store, &t, vec![Event::new(long(limits.max_type_len)).data(vec![7u8; limits.max_event_bytes])]).await;
    assert_eq!(log(&store, &t).await.len(), 2, "nothing refused was written");
    assert_eq!(store.head(&t).await.unwrap(), at(&store, &t, 2).await);

    let err = store.read(&t, Query::all(), ReadOptions::default().limit(0)).await.err().expect("limit 0");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let err = store.read(&t, Query::item(item(&[""], &[])), ReadOptions::default()).await.err().expect("empty type");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let bad_condition = vec![AppendCondition::new(Query::item(item(&[], &[""])), None)];
    let err = store.append(&t, vec![ev("T", &[])], bad_condition).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert!(Tenant::new("").is_err() && Tenant::new("UPPER").is_err() && Tenant::new("a/b").is_err());
}

pub async fn reads_stream_in_batches_from_a_snapshot(store: SharedStore) {
    let t = tenant("t");
    let total = READ_BATCH * 3 + 7;
    for chunk in 0..4 {
        let events = (0..total / 4 + 1).map(|i| ev("S", &[&format!("n:{}", chunk * 1000 + i)])).collect();
        append(&store, &t, events).await;
    }
    let head = store.head(&t).await.unwrap();
    let mut stream = store.read(&t, Query::all(), ReadOptions::default()).await.unwrap();
    let first = stream.next_batch().await.unwrap().unwrap();
    assert!(!first.is_empty() && first.len() <= READ_BATCH);
    // Appended while the read is under way: not part of the read's snapshot.
    append(&store, &t, vec![ev("Late", &[])]).await;
    let mut count = first.len();
    let mut last = first.last().unwrap().position;
    while let Some(batch) = stream.next_batch().await.unwrap() {
        assert!(!batch.is_empty() && batch.len() <= READ_BATCH);
        assert!(batch[0].position > last);
        last = batch.last().unwrap().position;
        count += batch.len();
    }
    assert_eq!(count, 4 * (total / 4 + 1));
    assert_eq!(stream.consistency_position(), head);
}

pub async fn subscriptions_have_no_gaps_while_writers_run(store: SharedStore) {
    let t = tenant("t");
    // Some history to catch up on, then live appends from 4 writers while subscribers follow.
    for i in 0..300 {
        append(&store, &t, vec![ev("Sub", &[&format!("w:{}", i % 4), "all"]), ev("Noise", &[])]).await;
    }
    let query = Query::item(item(&["Sub"], &[]));
    let middle_at = at(&store, &t, 301).await;
    let mut from_start = store.subscribe(&t, query.clone(), None).await.unwrap();
    let mut from_middle = store.subscribe(&t, query.clone(), Some(middle_at)).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let t = t.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    store.append(&t, vec![ev("Noise", &[]), ev("Sub", &[&format!("w:{w}")])], vec![]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let expected_total = 300 + 400;
    let mut seen = Vec::new();
    while seen.len() < expected_total {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), from_start.next()).await.expect("no stall").unwrap();
        seen.push(event.position);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let (all, _) = read(&store, &t, query, ReadOptions::default()).await;
    let expected: Vec<Position> = all.iter().map(|e| e.position).collect();
    assert_eq!(seen, expected, "every matching event once, in order");
    let mut middle = Vec::new();
    while middle.len() < expected.iter().filter(|&&p| p > middle_at).count() {
        middle.push(from_middle.next().await.unwrap().position);
    }
    assert_eq!(middle, expected.into_iter().filter(|&p| p > middle_at).collect::<Vec<_>>());
}

/// Status pages count a worker's lag without holding the events: across batches, without the
/// host's own records, and no further than asked.
pub async fn counting_skips_host_records_and_stops_at_its_cap(store: SharedStore) {
    let t = tenant("count");
    for round in 0..12 {
        let mut events: Vec<Event> = (0..100).map(|_| ev("Counted", &["c"])).collect();
        events.push(ev("counterpoint.checkpoint", &[&format!("round:{round}")]));
        append(&store, &t, events).await;
    }
    let count = |cap: u64| {
        let store = store.clone();
        let t = t.clone();
        async move { store.read(&t, Query::all(), ReadOptions::default()).await.unwrap().count_slice_events(cap).await.unwrap() }
    };
    assert!(1_212 > READ_BATCH as u64, "the log spans batches");
    assert_eq!(count(u64::MAX).await, 1_200);
    assert_eq!(count(700).await, 700);
}

/// The log's size is its number of events, whatever the positions look like (they have gaps
/// on FoundationDB): the tenant quota counts this.
async fn event_count_is_the_number_of_events(store: SharedStore) {
    let t = tenant("counted");
    assert_eq!(store.event_count(&t).await.unwrap(), 0);
    append(&store, &t, vec![ev("A", &["x"]), ev("B", &[]), ev("C", &["y"])]).await;
    for _ in 0..4 {
        append(&store, &t, vec![ev("D", &["x"])]).await;
    }
    let failed = store.append(&t, vec![ev("E", &[])], vec![AppendCondition::new(Query::item(item(&["D"], &[])), None)]).await;
    assert!(failed.unwrap_err().is_condition_failed());
    assert_eq!(store.event_count(&t).await.unwrap(), 7);
    assert_eq!(store.event_count(&tenant("other")).await.unwrap(), 0);
}

#[macro_export]
macro_rules! conformance {
    ($backend:ident, $fixture:expr $(, #[$attr:meta])* $(,)?) => {
        mod $backend {
            $crate::conformance!(@cases $fixture; [$(#[$attr])*];
                types_or_within_an_item, tags_and_within_an_item, items_are_ored_and_matches_come_once,
                empty_query_reads_every_event_with_its_content, metadata_and_tags_round_trip,
                after_is_exclusive_and_limit_cuts, backwards_alone_with_limit_with_after,
                consistency_position_of_each_read_kind, recorded_positions_guard_appends_correctly,
                conditions, failed_append_writes_nothing, positions_strictly_increase_and_match_reads,
                tenants_are_isolated, every_limit_is_enforced_and_writes_nothing,
                reads_stream_in_batches_from_a_snapshot, subscriptions_have_no_gaps_while_writers_run,
                counting_skips_host_records_and_stops_at_its_cap, event_count_is_the_number_of_events);
        }
    };
    (@cases $fixture:expr; $attrs:tt; $($case:ident),* $(,)?) => {
        $( $crate::conformance!(@case $fixture; $attrs; $case); )*
    };
    (@case $fixture:expr; [$(#[$attr:meta])*]; $case:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let fixture = $fixture;
            super::$case(fixture.store.clone()).await;
        }
    };
}

conformance!(memory, crate::store::memory());
conformance!(embedded, crate::store::embedded());
conformance!(embedded_sealed, crate::store::embedded_sealed());
// Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
conformance!(fdb, crate::store::fdb(), #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]);
