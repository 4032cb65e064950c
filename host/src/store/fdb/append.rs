//! An append: FDB's limits checked up front, then one transaction that probes every condition
//! and writes the events, their index entries and the head with versionstamped keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use foundationdb::options::MutationType;
use foundationdb::FdbBindingError;

use super::index::{self, Probe, Verdict};
use super::keys::{complete, position, versionstamped_key, versionstamped_value, TenantKeys, CHUNK, MAX_KEY, VS_LEN};
use super::{abort, binding, Inner};
use crate::store::embedded::log::{encode_event, event_len};
use crate::store::{AppendCondition, Event, Position, StoreError};

/// FDB refuses a transaction over 10,000,000 bytes: its mutations (keys and values), its write
/// conflict ranges (a versionstamped key's covers every key it could become: twice the key)
/// and its read conflict ranges (the condition probes').
const FDB_TRANSACTION_LIMIT: usize = 10_000_000;
/// What an append may be estimated at, leaving room for the probes' further pages.
pub(super) const MAX_TRANSACTION_BYTES: usize = 9_000_000;
const TRANSACTION_BYTES: &str = "bytes of one append's FoundationDB transaction (events, index entries, keys and conflict ranges)";
/// FDB's error code for a transaction over its size limit.
const TRANSACTION_TOO_LARGE: i32 = 2101;
/// The user version of a versionstamp is 2 bytes: the events of one append are numbered in it.
const MAX_EVENTS: usize = 1 << 16;
/// How long an append's id is kept, in cluster versions (FDB advances about 1,000,000 a
/// second): an hour, far longer than any retry loop runs (the transaction timeout bounds it).
const ID_TTL_VERSIONS: u64 = 3_600 * 1_000_000;

/// Everything an append writes, prepared (and checked against FDB's limits) before any
/// transaction starts.
pub(super) struct Plan {
    /// Versionstamped keys (with their placeholder offset) and their values.
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index entry counts to add, and the log's event count.
    counts: BTreeMap<Vec<u8>, i64>,
    events: u16,
    /// The transaction's estimated size.
    bytes: usize,
}

impl Plan {
    pub fn new(keys: &TenantKeys, events: &[Event], conditions: &[AppendCondition]) -> Result<Self, StoreError> {
        if events.is_empty() {
            return Err(StoreError::InvalidInput("an append needs at least one event".into()));
        }
        if events.len() > MAX_EVENTS {
            return Err(StoreError::LimitExceeded {
                what: "events in one append on FoundationDB",
                limit: MAX_EVENTS as u64,
                actual: events.len() as u64,
            });
        }
        let event_prefix = keys.events();
        let mut writes = Vec::new();
        let mut counts = BTreeMap::new();
        // The distinct prefixes of versionstamped keys: FDB merges the write conflict ranges
        // of keys with one prefix (each spans every versionstamp the key could get).
        let mut prefixes = BTreeSet::from([event_prefix.clone()]);
        let mut record = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let index = u16::try_from(i).expect("checked above");
            record.clear();
            record.reserve(event_len(event));
            encode_event(&mut record, event);
            // At most 100 kB per value: larger records are split into numbered chunks.
            for (chunk, bytes) in record.chunks(CHUNK).enumerate() {
                let chunk = u16::try_from(chunk).map_err(|_| StoreError::LimitExceeded {
                    what: "event size in bytes on FoundationDB",
                    limit: (CHUNK * usize::from(u16::MAX)) as u64,
                    actual: record.len() as u64,
                })?;
                writes.push((versionstamped_key(&event_prefix, index, &chunk.to_be_bytes()), bytes.to_vec()));
            }
            let mut entry = |prefix: Vec<u8>| -> Result<(), StoreError> {
                check_key(prefix.len() + VS_LEN)?;
                writes.push((versionstamped_key(&prefix, index, &[]), Vec::new()));
                prefixes.insert(prefix);
                Ok(())
            };
            entry(keys.by_type(&event.event_type))?;
            for tag in &event.tags {
                entry(keys.by_tag(tag))?;
                entry(keys.by_type_tag(&event.event_type, tag))?;
            }
            *counts.entry(keys.type_count(&event.event_type)).or_insert(0) += 1;
            for tag in &event.tags {
                *counts.entry(keys.tag_count(tag)).or_insert(0) += 1;
            }
        }
        counts.insert(keys.count(), events.len() as i64);
        let bytes = estimate(keys, &writes, &prefixes, &counts, conditions);
        if bytes > MAX_TRANSACTION_BYTES {
            return Err(StoreError::LimitExceeded { what: TRANSACTION_BYTES, limit: MAX_TRANSACTION_BYTES as u64, actual: bytes as u64 });
        }
        let events = u16::try_from(events.len() - 1).expect("checked above");
        Ok(Plan { writes, counts, events, bytes })
    }
}

/// The append transaction's size as FDB counts it: each mutation's key and value, its write
/// conflict ranges (a plain key's is the key and its successor; a versionstamped key's spans
/// every key it could become, and FDB merges those of one prefix), and the read conflict
/// range of one page per index range a condition probes (an upper bound: the longest type
/// and tag of the item).
fn estimate(
    keys: &TenantKeys,
    writes: &[(Vec<u8>, Vec<u8>)],
    prefixes: &BTreeSet<Vec<u8>>,
    counts: &BTreeMap<Vec<u8>, i64>,
    conditions: &[AppendCondition],
) -> usize {
    let range = |key: usize| 2 * key + 1;
    let mut bytes = writes.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    // Event keys end in a 2-byte chunk number after the versionstamp.
    bytes += prefixes.iter().map(|p| range(p.len() + VS_LEN + 2)).sum::<usize>();
    bytes += counts.keys().map(|k| k.len() + 8 + range(k.len())).sum::<usize>();
    // The head and the id (versionstamped values), the expired ids' clear.
    let (head, id) = (keys.head().len(), keys.append_id(0, 0).len());
    bytes += head + 16 + range(head) + id + 16 + range(id) + 4 * id;
    for condition in conditions {
        for item in &condition.query.items {
            let longest = |names: &[String]| names.iter().map(String::as_str).max_by_key(|n| n.len()).unwrap_or("").to_string();
            let prefix = keys.by_type_tag(&longest(&item.types), &longest(&item.tags)).len();
            bytes += item.types.len().max(1) * range(prefix + VS_LEN);
        }
        bytes += range(keys.events().len() + VS_LEN);
    }
    bytes
}

fn check_key(len: usize) -> Result<(), StoreError> {
    if len > MAX_KEY {
        return Err(StoreError::LimitExceeded {
            what: "FoundationDB key size in bytes (an event type or tag is too long)",
            limit: MAX_KEY as u64,
            actual: len as u64,
        });
    }
    Ok(())
}

/// What one append transaction did.
enum Outcome<F> {
    /// It wrote the events.
    Written(F),
    /// An earlier attempt had written them (found by the append's id).
    Earlier([u8; 10]),
    /// A condition needs more index entries examined than one transaction should: nothing was
    /// written; the probes' progress is saved and the rest is examined outside the transaction.
    /// Every probe's progress, and which of them stopped short of their range's end.
    Unfinished(Vec<Probe>, Vec<usize>),
}

/// What the attempts of one append share.
#[derive(Default)]
struct Progress {
    /// The append's id key, made at the first attempt from the cluster's read version.
    id_key: Option<Vec<u8>>,
    /// Where each condition's ranges have been examined up to (`None` until the first attempt
    /// chose the ranges).
    probes: Option<Vec<Probe>>,
}

/// Runs the append transaction in the crate's retry loop and returns the events' positions.
///
/// A condition whose ranges hold more than `probe_cap` entries to examine is checked in
/// several steps: what the append transaction could not finish is examined by read-only
/// transactions (snapshot reads) up to the range's end, then the append transaction runs
/// again and examines only what was added since (see [`Probe`] for why that is enough).
pub(super) async fn append(
    inner: &Inner,
    keys: &TenantKeys,
    plan: &Plan,
    conditions: &[AppendCondition],
) -> Result<Vec<Position>, StoreError> {
    let id = fastrand::u128(..);
    let head_key = keys.head();
    let progress = Mutex::new(Progress::default());
    // Sticky: after a `commit_unknown_result`, a later attempt may fail for another reason
    // and the one after that must still check whether the first one committed.
    let maybe_committed = AtomicBool::new(false);
    let (head_key, progress, maybe_committed) = (&head_key, &progress, &maybe_committed);
    let cap = inner.probe_cap;
    let mut rounds = 0;
    let commit: [u8; 10] = loop {
        let outcome = inner
            .db
            .run(|trx, maybe| async move {
                if bool::from(maybe) {
                    maybe_committed.store(true, Ordering::Relaxed);
                }
                let read_version = trx.get_read_version().await?;
                let read_version = u64::try_from(read_version).unwrap_or(0);
                let id_key = progress.lock().expect("progress lock").id_key.get_or_insert_with(|| keys.append_id(read_version, id)).clone();
                if maybe_committed.load(Ordering::Relaxed)
                    && let Some(value) = trx.get(&id_key, false).await?
                {
                    let commit = value.get(..10).and_then(|v| v.try_into().ok()).ok_or_else(|| {
                        abort(StoreError::Unavailable("an append id holds no versionstamp: the data is damaged".into()))
                    })?;
                    return Ok(Outcome::Earlier(commit));
                }
                let saved = progress.lock().expect("progress lock").probes.clone();
                let mut probes = match saved {
                    Some(probes) => probes,
                    None => index::probes(&trx, keys, conditions).await?,
                };
                let mut unfinished = Vec::new();
                for (i, probe) in probes.iter_mut().enumerate() {
                    match probe.run(&trx, keys, cap, false).await? {
                        // Never retried here: the command runner re-runs the whole command.
                        Verdict::Match(position) => {
                            return Err(abort(StoreError::ConditionFailed { condition: probe.condition, position }));
                        }
                        Verdict::Clear => {}
                        Verdict::Unfinished => unfinished.push(i),
                    }
                }
                if !unfinished.is_empty() {
                    return Ok(Outcome::Unfinished(probes, unfinished));
                }
                for (key, value) in &plan.writes {
                    trx.atomic_op(key, value, MutationType::SetVersionstampedKey);
                }
                for (key, n) in &plan.counts {
                    trx.atomic_op(key, &n.to_le_bytes(), MutationType::Add);
                }
                // Every append changes the head: watchers on every host wake up.
                trx.atomic_op(head_key, &versionstamped_value(plan.events), MutationType::SetVersionstampedValue);
                // Ids expire by the cluster's version (about a million a second), never by a
                // host's clock: every host expires them alike, whatever its clock says.
                let expired = keys.append_id(read_version.saturating_sub(ID_TTL_VERSIONS), 0);
                trx.clear_range(&keys.append_ids(), &expired);
                trx.atomic_op(&id_key, &versionstamped_value(0), MutationType::SetVersionstampedValue);
                Ok(Outcome::Written(trx.get_versionstamp()))
            })
            .await
            .map_err(|e| append_error(e, plan))?;
        match outcome {
            Outcome::Earlier(commit) => break commit,
            Outcome::Written(versionstamp) => {
                let stamp = versionstamp.await.map_err(|e| super::unavailable("cannot get the append's versionstamp", e))?;
                break stamp.get(..10).and_then(|v| v.try_into().ok()).ok_or_else(|| {
                    StoreError::Unavailable(format!("FoundationDB returned a {}-byte versionstamp", stamp.len()))
                })?;
            }
            Outcome::Unfinished(mut probes, unfinished) => {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(format!(
                        "the append's conditions were still being checked after {MAX_ROUNDS} rounds: matching events arrive faster than they can be examined"
                    )));
                }
                for i in unfinished {
                    examine_outside(inner, keys, &mut probes[i]).await?;
                }
                progress.lock().expect("progress lock").probes = Some(probes);
            }
        }
    };
    Ok((0..=plan.events).map(|i| position(&complete(&commit, i))).collect())
}

/// Index entries a read-only transaction examines for a condition before the next one takes
/// over (each stays well inside FDB's 5 s).
const EXAMINED_PER_READ: usize = 20_000;
/// Append transactions one append may run while its conditions are being examined.
const MAX_ROUNDS: usize = 16;

/// Examines a probe's range to its current end with snapshot reads, in as many transactions
/// as it takes; a match there fails the append (the event is committed, so it is after the
/// condition's position whatever happens next).
async fn examine_outside(inner: &Inner, keys: &TenantKeys, probe: &mut Probe) -> Result<(), StoreError> {
    loop {
        let start = probe.clone();
        let start = &start;
        let (verdict, advanced) = inner
            .db
            .run(|trx, _| async move {
                let mut probe = start.clone();
                let verdict = probe.run(&trx, keys, EXAMINED_PER_READ, true).await?;
                Ok((verdict, probe))
            })
            .await
            .map_err(|e| binding("checking an append condition failed", e))?;
        *probe = advanced;
        match verdict {
            Verdict::Match(position) => return Err(StoreError::ConditionFailed { condition: probe.condition, position }),
            Verdict::Clear => return Ok(()),
            Verdict::Unfinished => {}
        }
    }
}

/// An append transaction's error: FDB's "transaction too large" (2101) is the append being
/// too large, as the estimate in [`Plan::new`] should have said; anything else as usual.
fn append_error(err: FdbBindingError, plan: &Plan) -> StoreError {
    if err.get_fdb_error().is_some_and(|e| e.code() == TRANSACTION_TOO_LARGE) {
        return StoreError::LimitExceeded { what: TRANSACTION_BYTES, limit: FDB_TRANSACTION_LIMIT as u64, actual: plan.bytes as u64 };
    }
    binding("append failed", err)
}
