//! Which index serves a query item, and the append condition probe over it.
//!
//! An item (types OR'ed, tags AND'ed) is served by the ranges of one index whose union holds
//! every event matching it: one type+tag range per type, for the item's rarest tag (by the
//! approximate counts); one type range per type when it has no tags; the rarest tag's range
//! when it has no types. Candidates from those ranges still have to carry the item's other
//! tags. Counts only choose a range: they are read as snapshot reads, and no decision about
//! a condition is ever taken from them.

use foundationdb::options::StreamingMode;
use foundationdb::future::FdbSlice;
use foundationdb::{FdbBindingError, FdbError, RangeOption, Transaction};

use super::keys::{position, strinc, versionstamp, vs_at, TenantKeys, Vs};
use super::abort;
use crate::store::{AppendCondition, Position, QueryItem, StoreError};

/// Where the events matching one item are found.
pub(super) enum Access {
    /// Every event matches: the event records themselves.
    Every,
    /// Index ranges (key prefixes followed by a versionstamp), and the tags a candidate from
    /// them must also carry.
    Ranges { prefixes: Vec<Vec<u8>>, verify_tags: Vec<String> },
}

/// How an item is served (snapshot reads of the counts only).
pub(super) async fn access(trx: &Transaction, keys: &TenantKeys, item: &QueryItem) -> Result<Access, FdbError> {
    if item.tags.is_empty() {
        if item.types.is_empty() {
            return Ok(Access::Every);
        }
        let prefixes = item.types.iter().map(|t| keys.by_type(t)).collect();
        return Ok(Access::Ranges { prefixes, verify_tags: Vec::new() });
    }
    let rarest = rarest_tag(trx, keys, &item.tags).await?;
    let verify_tags = item.tags.iter().filter(|t| **t != item.tags[rarest]).cloned().collect();
    let tag = &item.tags[rarest];
    let prefixes = if item.types.is_empty() {
        vec![keys.by_tag(tag)]
    } else {
        item.types.iter().map(|t| keys.by_type_tag(t, tag)).collect()
    };
    Ok(Access::Ranges { prefixes, verify_tags })
}

/// The index of the tag with the fewest events (the first on a tie).
async fn rarest_tag(trx: &Transaction, keys: &TenantKeys, tags: &[String]) -> Result<usize, FdbError> {
    if tags.len() == 1 {
        return Ok(0);
    }
    // FDB starts every get when it is called: issue them all, then wait.
    let pending: Vec<_> = tags.iter().map(|t| trx.get(&keys.tag_count(t), true)).collect();
    let mut best = (0, i64::MAX);
    for (i, count) in pending.into_iter().enumerate() {
        let count = count.await?.map_or(0, |v| decode_count(&v));
        if count < best.1 {
            best = (i, count);
        }
    }
    Ok(best.0)
}

pub(super) fn decode_count(value: &[u8]) -> i64 {
    let mut bytes = [0u8; 8];
    let n = value.len().min(8);
    bytes[..n].copy_from_slice(&value[..n]);
    i64::from_le_bytes(bytes)
}

/// Point reads of the tag index entries of the event at `vs` for each of `tags`; the event
/// carries them all when every read finds its key. Snapshot reads: the index entries of a
/// committed event never change.
fn tag_lookups(
    trx: &Transaction,
    keys: &TenantKeys,
    vs: &Vs,
    tags: &[String],
) -> Vec<impl std::future::Future<Output = Result<Option<FdbSlice>, FdbError>> + Send + use<>> {
    tags.iter()
        .map(|t| {
            let mut key = keys.by_tag(t);
            key.extend_from_slice(vs);
            trx.get(&key, true)
        })
        .collect()
}

/// One index range an append condition is checked on, and how far it has been checked.
///
/// Every entry of the range up to `from` (exclusive bound) has been examined and matched
/// nothing. That stays true: committed entries never change, and an entry committed later
/// has a higher versionstamp than every entry already there, so it sorts after `from`. This is
/// what lets a long check run in several transactions (see [`Probe::run`]).
#[derive(Clone, Debug)]
pub(super) struct Probe {
    /// Which condition of the append this range belongs to.
    pub condition: usize,
    prefix: Vec<u8>,
    /// Tags a candidate from this range must also carry.
    verify_tags: Vec<String>,
    from: Option<Vs>,
}

/// What a probe found within its budget.
pub(super) enum Verdict {
    /// A matching event.
    Match(Position),
    /// No match up to the end of the range (as of the transaction's read version).
    Clear,
    /// `budget` entries examined without a match and more to go; `from` has moved past them.
    Unfinished,
}

/// The index ranges that check `conditions`, chosen by the counts (snapshot reads). A
/// condition after a position beyond every versionstamp needs none: nothing comes after it.
pub(super) async fn probes(trx: &Transaction, keys: &TenantKeys, conditions: &[AppendCondition]) -> Result<Vec<Probe>, FdbError> {
    let every = QueryItem::default();
    let mut probes = Vec::new();
    for (condition, c) in conditions.iter().enumerate() {
        let from = match c.after {
            Some(p) => match versionstamp(p) {
                Some(vs) => Some(vs),
                None => continue,
            },
            None => None,
        };
        let items: Vec<&QueryItem> = if c.query.items.is_empty() { vec![&every] } else { c.query.items.iter().collect() };
        for item in items {
            let (prefixes, verify_tags) = match access(trx, keys, item).await? {
                Access::Every => (vec![keys.events()], Vec::new()),
                Access::Ranges { prefixes, verify_tags } => (prefixes, verify_tags),
            };
            for prefix in prefixes {
                probes.push(Probe { condition, prefix, verify_tags: verify_tags.clone(), from });
            }
        }
    }
    Ok(probes)
}

impl Probe {
    /// Examines the range after `from`, at most `budget` entries, in pages.
    ///
    /// In the append transaction (`snapshot` false) the reads are non-snapshot: when the
    /// probe ends `Clear`, the transaction's read conflict ranges cover the range from `from`
    /// to its end, and a concurrent append of a matching event writes a key there (with a
    /// versionstamp above this transaction's read version), so one of the two fails to
    /// commit. Outside it (`snapshot` true) a probe only moves `from` forward.
    pub async fn run(&mut self, trx: &Transaction, keys: &TenantKeys, budget: usize, snapshot: bool) -> Result<Verdict, FdbBindingError> {
        let end = strinc(&self.prefix);
        // Limit 1 first in the append transaction: usually the first candidate decides (none,
        // or a match). Pages grow when candidates must be filtered.
        let mut limit = if snapshot { 256 } else { 1 };
        let mut examined = 0usize;
        loop {
            let begin = match &self.from {
                Some(vs) => strinc(&[self.prefix.as_slice(), vs.as_slice()].concat()),
                None => self.prefix.clone(),
            };
            if begin >= end {
                return Ok(Verdict::Clear);
            }
            let range = RangeOption {
                limit: Some(limit.min(budget - examined)),
                mode: StreamingMode::WantAll,
                ..RangeOption::from((begin, end.clone()))
            };
            let page = trx.get_range(&range, 1, snapshot).await?;
            // Owned: FDB's key-value views cannot be held across an await.
            let found = page
                .iter()
                .map(|kv| vs_at(kv.key(), self.prefix.len()).ok_or_else(|| abort(corrupt(kv.key()))))
                .collect::<Result<Vec<Vs>, _>>()?;
            let more = page.more();
            drop(page);
            // The other tags of every candidate of the page are looked up at once (FDB starts
            // each get when it is called), then checked in order.
            let lookups: Vec<Vec<_>> = found.iter().map(|vs| tag_lookups(trx, keys, vs, &self.verify_tags)).collect();
            for (vs, lookup) in found.iter().zip(lookups) {
                let mut all = true;
                for present in lookup {
                    all &= present.await?.is_some();
                }
                if all {
                    return Ok(Verdict::Match(position(vs)));
                }
                // Event records span several keys (chunks): `from` skips the whole event.
                self.from = Some(*vs);
            }
            examined += found.len();
            if found.is_empty() || !more {
                return Ok(Verdict::Clear);
            }
            if examined >= budget {
                return Ok(Verdict::Unfinished);
            }
            limit = (limit * 4).min(256);
        }
    }
}

pub(super) fn corrupt(key: &[u8]) -> StoreError {
    StoreError::Unavailable(format!("FoundationDB key {key:02x?} does not end in a versionstamp: the data is damaged"))
}
