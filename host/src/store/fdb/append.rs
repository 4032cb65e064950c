//! An append: FDB's limits checked up front, then one transaction that probes every condition
//! and writes the events, their index entries and the head with versionstamped keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use foundationdb::options::MutationType;

use super::index::first_match;
use super::keys::{complete, position, versionstamped_key, versionstamped_value, TenantKeys, CHUNK, MAX_KEY};
use super::{abort, binding, Inner};
use crate::store::embedded::log::{encode_event, event_len};
use crate::store::{AppendCondition, Event, Position, StoreError};

/// FDB refuses transactions over 10,000,000 bytes (keys, values and conflict ranges); the
/// writes of one append stay below this, leaving room for the probes' conflict ranges.
pub(super) const MAX_WRITE_BYTES: usize = 9_000_000;
/// The user version of a versionstamp is 2 bytes: the events of one append are numbered in it.
const MAX_EVENTS: usize = 1 << 16;
/// How long an append's id is kept: far longer than any retry loop runs.
const ID_TTL_SECS: u64 = 3600;

/// Everything an append writes, prepared (and checked against FDB's limits) before any
/// transaction starts.
pub(super) struct Plan {
    /// Versionstamped keys (with their placeholder offset) and their values.
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index entry counts to add.
    counts: BTreeMap<Vec<u8>, i64>,
    events: u16,
}

impl Plan {
    pub fn new(keys: &TenantKeys, events: &[Event]) -> Result<Self, StoreError> {
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
                check_key(prefix.len() + super::keys::VS_LEN)?;
                writes.push((versionstamped_key(&prefix, index, &[]), Vec::new()));
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
        // Placeholder offsets (4 bytes per key) are not stored; counts write 8-byte values.
        let bytes = writes.iter().map(|(k, v)| k.len() - 4 + v.len()).sum::<usize>()
            + counts.keys().map(|k| k.len() + 8).sum::<usize>();
        if bytes > MAX_WRITE_BYTES {
            return Err(StoreError::LimitExceeded {
                what: "bytes one append writes on FoundationDB (events, index entries and keys)",
                limit: MAX_WRITE_BYTES as u64,
                actual: bytes as u64,
            });
        }
        let events = u16::try_from(events.len() - 1).expect("checked above");
        Ok(Plan { writes, counts, events })
    }
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

/// What the transaction found: it wrote the events, or an earlier attempt had.
enum Outcome<F> {
    Written(F),
    Earlier([u8; 10]),
}

/// Runs the append transaction in the crate's retry loop and returns the events' positions.
pub(super) async fn append(
    inner: &Inner,
    keys: &TenantKeys,
    plan: &Plan,
    conditions: &[AppendCondition],
) -> Result<Vec<Position>, StoreError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let id_key = keys.append_id(now, fastrand::u128(..));
    let expired = (keys.append_ids(), keys.append_id(now.saturating_sub(ID_TTL_SECS), 0));
    let head_key = keys.head();
    // Sticky: after a `commit_unknown_result`, a later attempt may fail for another reason
    // and the one after that must still check whether the first one committed.
    let maybe_committed = AtomicBool::new(false);
    let (id_key, expired, head_key, maybe_committed) = (&id_key, &expired, &head_key, &maybe_committed);
    let cap = inner.probe_cap;
    let outcome = inner
        .db
        .run(|trx, maybe| async move {
            if bool::from(maybe) {
                maybe_committed.store(true, Ordering::Relaxed);
            }
            if maybe_committed.load(Ordering::Relaxed)
                && let Some(value) = trx.get(id_key, false).await?
            {
                let commit = value.get(..10).and_then(|v| v.try_into().ok()).ok_or_else(|| {
                    abort(StoreError::Unavailable("an append id holds no versionstamp: the data is damaged".into()))
                })?;
                return Ok(Outcome::Earlier(commit));
            }
            for (i, condition) in conditions.iter().enumerate() {
                if let Some(position) = first_match(&trx, keys, &condition.query, condition.after, cap).await? {
                    // Never retried here: the command runner re-runs the whole command.
                    return Err(abort(StoreError::ConditionFailed { condition: i, position }));
                }
            }
            for (key, value) in &plan.writes {
                trx.atomic_op(key, value, MutationType::SetVersionstampedKey);
            }
            for (key, n) in &plan.counts {
                trx.atomic_op(key, &n.to_le_bytes(), MutationType::Add);
            }
            // Every append changes the head: watchers on every host wake up.
            trx.atomic_op(head_key, &versionstamped_value(plan.events), MutationType::SetVersionstampedValue);
            trx.clear_range(&expired.0, &expired.1);
            trx.atomic_op(id_key, &versionstamped_value(0), MutationType::SetVersionstampedValue);
            Ok(Outcome::Written(trx.get_versionstamp()))
        })
        .await
        .map_err(|e| binding("append failed", e))?;
    let commit: [u8; 10] = match outcome {
        Outcome::Earlier(commit) => commit,
        Outcome::Written(versionstamp) => {
            let stamp = versionstamp.await.map_err(|e| super::unavailable("cannot get the append's versionstamp", e))?;
            stamp.get(..10).and_then(|v| v.try_into().ok()).ok_or_else(|| {
                StoreError::Unavailable(format!("FoundationDB returned a {}-byte versionstamp", stamp.len()))
            })?
        }
    };
    Ok((0..=plan.events).map(|i| position(&complete(&commit, i))).collect())
}
