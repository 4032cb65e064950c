//! What only a real FoundationDB cluster shows: the event count behind the log quota, appends
//! too large for one transaction, conditions that need more index entries examined than one
//! transaction should, and append ids that expire by the cluster's version.
//!
//! The conformance suite and the racing tests run on FoundationDB too (`conformance!(fdb, ..)`);
//! these cases are about the backend itself. Each runs where `tests/fdb.sh` found FoundationDB
//! and is reported as ignored elsewhere.

macro_rules! fdb_cases {
    ($($case:ident),* $(,)?) => {$(
        #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            #[cfg(feature = "fdb")]
            cases::$case().await;
            #[cfg(not(feature = "fdb"))]
            super::without_fdb();
        }
    )*};
}

fdb_cases!(
    the_log_quota_counts_events_not_positions,
    an_append_too_large_for_one_transaction_is_refused_as_too_large,
    conditions_too_large_for_one_transaction_are_refused_as_too_large,
    a_condition_over_more_entries_than_one_transaction_examines_is_answered,
    racing_appends_whose_condition_spans_many_transactions_admit_one,
    append_ids_are_kept_by_the_cluster_version_not_a_clock,
);

#[cfg(feature = "fdb")]
mod cases {
    use std::sync::Arc;

    use counterpoint::store::{AppendCondition, Event, EventStore, Query, QueryItem, ReadOptions, StoreError, Tenant};
    use serde_json::json;

    use crate::api::{token, Http, ADMIN};

    fn acme() -> Tenant {
        Tenant::new("acme").unwrap()
    }

    fn tagged(event_type: &str, tags: &[&str]) -> Event {
        Event { tags: tags.iter().map(|t| t.to_string()).collect(), ..Event::new(event_type) }
    }

    /// On FoundationDB positions are versionstamps, far above the number of events: the quota
    /// must count events (every append after the first was refused when it compared the head).
    pub async fn the_log_quota_counts_events_not_positions() {
        let (_store, prefix, _cleared) = crate::store::fdb_store();
        let dir = tempfile::tempdir().unwrap();
        let config = counterpoint::tenants::Config::parse(&format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmin_token_sha256 = \"{}\"\n[store]\nkind = \"fdb\"\nprefix = \"{prefix}\"\n[tenants.acme]\ntokens_sha256 = [\"{}\"]\n[tenants.acme.limits]\nmax_log_events = 3\n",
            dir.path().display().to_string(),
            counterpoint::tenants::hash_token(ADMIN),
            counterpoint::tenants::hash_token(&token("acme")),
        ))
        .unwrap();
        let server = counterpoint::api::spawn_server(&config).await.unwrap();
        let http = Http::new(server.address);
        let append = json!({"events": [{"type": "Noted", "tags": ["n:1"]}]});
        for i in 0..3 {
            let reply = http.post("/v1/t/acme/events/append", Some(&token("acme")), &append).await;
            assert_eq!(reply.status.as_u16(), 200, "append {i} of 3 is within the quota: {:?}", reply.json);
        }
        let refused = http.post("/v1/t/acme/events/append", Some(&token("acme")), &append).await;
        refused.error(403, "quota_exceeded");
        let read = http.post("/v1/t/acme/events/read", Some(&token("acme")), &json!({"query": {"items": []}})).await.ok();
        assert_eq!(read["events"].as_array().unwrap().len(), 3);
        server.shutdown().await.unwrap();
    }

    /// 120 events with 64 long tags each, every tag its own: 5 MB of keys, but three times
    /// that in FDB's accounting (each versionstamped key's write conflict range is two keys
    /// long, merged only for keys of one prefix). FDB refused it at commit (2101), which came
    /// back as "unavailable".
    pub async fn an_append_too_large_for_one_transaction_is_refused_as_too_large() {
        let (store, _, _cleared) = crate::store::fdb_store();
        let tagged = |n: usize| -> Vec<Event> {
            (0..n).map(|e| Event { tags: (0..64).map(|i| format!("{e:03}-{i:02}-{}", "t".repeat(236))).collect(), ..Event::new("Tagged") }).collect()
        };
        let err = store.append(&acme(), tagged(120), vec![]).await.unwrap_err();
        assert!(matches!(err, StoreError::LimitExceeded { .. }), "{err}");
        assert!(err.to_string().contains("transaction"), "{err}");
        assert_eq!(store.event_count(&acme()).await.unwrap(), 0);
        // What fits still goes through, and so do many events sharing their tags (their
        // conflict ranges merge).
        assert_eq!(store.append(&acme(), tagged(20), vec![]).await.unwrap().len(), 20);
        let shared: Vec<Event> = (0..120).map(|_| tagged(1).remove(0)).collect();
        assert_eq!(store.append(&acme(), shared, vec![]).await.unwrap().len(), 120);
    }

    /// One small event under thousands of condition items with long names: the probes' read
    /// conflict ranges alone are over FDB's transaction limit.
    pub async fn conditions_too_large_for_one_transaction_are_refused_as_too_large() {
        let (store, _, _cleared) = crate::store::fdb_store();
        let long = |i: usize, what: &str| format!("{what}-{i:04}-{}", "x".repeat(240));
        let conditions: Vec<AppendCondition> = (0..40)
            .map(|c| {
                let items = (0..256).map(|i| QueryItem::types([long(c * 256 + i, "type")]).with_tag(long(i, "tag"))).collect();
                AppendCondition::new(Query { items }, None)
            })
            .collect();
        let err = store.append(&acme(), vec![Event::new("Small")], conditions).await.unwrap_err();
        assert!(matches!(err, StoreError::LimitExceeded { .. }), "{err}");
        assert_eq!(store.event_count(&acme()).await.unwrap(), 0);
    }

    /// A store whose append transaction examines at most 8 index entries per condition range.
    fn small_probes() -> (counterpoint::store::FdbStore, Box<dyn std::any::Any + Send + Sync>) {
        let (store, _, cleared) = crate::store::fdb_store_with(|options| options.probe_cap = 8);
        (store, cleared)
    }

    /// 300 events carry tag `a` or `b`, never both: a condition on both tags examines every
    /// one of them. It was refused past the cap; now it gets the answer every backend gives.
    pub async fn a_condition_over_more_entries_than_one_transaction_examines_is_answered() {
        let (store, _cleared) = small_probes();
        let t = acme();
        for chunk in 0..3 {
            let events = (0..100).map(|i| tagged("Noted", &[if (chunk + i) % 2 == 0 { "a" } else { "b" }])).collect();
            store.append(&t, events, vec![]).await.unwrap();
        }
        let both = || Query::item(QueryItem::tags(["a", "b"]));
        // No event has both tags: the append goes through.
        let first = store.append(&t, vec![tagged("Both", &["a", "b"])], vec![AppendCondition::new(both(), None)]).await.unwrap()[0];
        // Now one has: the same condition fails, naming it.
        let err = store.append(&t, vec![tagged("Both", &["a", "b"])], vec![AppendCondition::new(both(), None)]).await.unwrap_err();
        assert!(matches!(err, StoreError::ConditionFailed { condition: 0, position } if position == first), "{err}");
        // After it, 300 more non-matching entries, and the condition holds again.
        for chunk in 0..3 {
            let events = (0..100).map(|i| tagged("Noted", &[if (chunk + i) % 2 == 0 { "a" } else { "b" }])).collect();
            store.append(&t, events, vec![]).await.unwrap();
        }
        store.append(&t, vec![tagged("Other", &["c"])], vec![AppendCondition::new(both(), Some(first))]).await.unwrap();
        let (events, _) = store.read(&t, both(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        assert_eq!(events.len(), 1, "exactly the one event with both tags");
        assert_eq!(store.event_count(&t).await.unwrap(), 602);
    }

    /// Eight writers append a matching event under the same condition while 400 non-matching
    /// entries make every check span several transactions, and writers of non-matching events
    /// keep adding to the range: exactly one matching append wins.
    pub async fn racing_appends_whose_condition_spans_many_transactions_admit_one() {
        let (store, _cleared) = small_probes();
        let store = Arc::new(store);
        let t = acme();
        let events = (0..400).map(|i| tagged("Noted", &[if i % 2 == 0 { "a" } else { "b" }])).collect();
        let before = *store.append(&t, events, vec![]).await.unwrap().last().unwrap();
        let noise = {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    store.append(&t, vec![tagged("Noted", &[if i % 2 == 0 { "a" } else { "b" }])], vec![]).await.unwrap();
                }
            })
        };
        let racers: Vec<_> = (0..8)
            .map(|w| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    let condition = AppendCondition::new(QueryItem::tags(["a", "b"]), Some(before));
                    store.append(&t, vec![tagged("Both", &["a", "b", &format!("writer:{w}")])], vec![condition]).await
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert!(e.is_condition_failed(), "a loser fails its condition: {e}"),
            }
        }
        noise.await.unwrap();
        assert_eq!(won, 1);
        let (events, _) = store.read(&t, Query::item(QueryItem::tags(["a", "b"])), ReadOptions::default()).await.unwrap().collect().await.unwrap();
        assert_eq!(events.len(), 1);
    }

    /// An append's id (which tells a retry after `commit_unknown_result` whether the append
    /// committed) is kept for an hour of the cluster's versions. Keyed by a host's clock, a
    /// host whose clock ran ahead cleared ids other hosts still needed, and their retried
    /// appends were written twice.
    pub async fn append_ids_are_kept_by_the_cluster_version_not_a_clock() {
        use foundationdb::tuple::Subspace;
        let (store, prefix, _cleared) = crate::store::fdb_store();
        let db = store.database();
        let version = || async { db.create_trx().unwrap().get_read_version().await.unwrap() as u64 };
        let before = version().await;
        store.append(&acme(), vec![Event::new("Noted")], vec![]).await.unwrap();
        let after = version().await;
        let ids = Subspace::from(("counterpoint", prefix.as_str())).subspace(&"acme").into_bytes();
        let (ids, end) = ([ids.as_slice(), b"i"].concat(), [ids.as_slice(), b"j"].concat());
        let range = || foundationdb::RangeOption::from((ids.clone(), end.clone()));
        let kept = db.create_trx().unwrap().get_range(&range(), 1, true).await.unwrap();
        assert_eq!(kept.len(), 1, "one append, one id");
        let key = kept[0].key();
        let at = u64::from_be_bytes(key[ids.len()..ids.len() + 8].try_into().unwrap());
        assert!((before..=after).contains(&at), "the id is keyed by the cluster version {at}, read between {before} and {after}");
        // Appends go on; the id stays until an hour of versions has passed.
        for _ in 0..3 {
            store.append(&acme(), vec![Event::new("Noted")], vec![]).await.unwrap();
        }
        let still = db.create_trx().unwrap().get_range(&range(), 1, true).await.unwrap();
        assert_eq!(still.len(), 4);
        assert_eq!(still[0].key(), key);
    }
}
