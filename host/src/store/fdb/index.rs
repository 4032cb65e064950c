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
use crate::store::{Position, Query, QueryItem, StoreError};

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

fn decode_count(value: &[u8]) -> i64 {
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

/// The first event matching `query` after `after`, checked so that the append transaction
/// conflicts with any concurrent append of a matching event.
///
/// Every range is read with non-snapshot reads, from just after `after` until a verified match
/// or the end of the range: when no match is found, the transaction's read conflict ranges
/// cover each range to its end, and a concurrent matching append writes a key there (with a
/// versionstamp above this transaction's read version), so one of the two fails to commit.
pub(super) async fn first_match(
    trx: &Transaction,
    keys: &TenantKeys,
    query: &Query,
    after: Option<Position>,
    cap: usize,
) -> Result<Option<Position>, FdbBindingError> {
    let after = match after {
        Some(p) => match versionstamp(p) {
            Some(vs) => Some(vs),
            None => return Ok(None), // beyond every versionstamp: nothing can come after it
        },
        None => None,
    };
    let every = QueryItem::default();
    let items: Vec<&QueryItem> = if query.items.is_empty() { vec![&every] } else { query.items.iter().collect() };
    let mut first: Option<Position> = None;
    for item in items {
        let (prefixes, verify_tags) = match access(trx, keys, item).await? {
            Access::Every => (vec![keys.events()], Vec::new()),
            Access::Ranges { prefixes, verify_tags } => (prefixes, verify_tags),
        };
        let mut examined = 0usize;
        for prefix in prefixes {
            if let Some(found) = probe_range(trx, keys, &prefix, after.as_ref(), &verify_tags, cap, &mut examined).await? {
                first = Some(first.map_or(found, |f| f.min(found)));
            }
        }
    }
    Ok(first)
}

/// The first verified entry of one range after `after`.
async fn probe_range(
    trx: &Transaction,
    keys: &TenantKeys,
    prefix: &[u8],
    after: Option<&Vs>,
    verify_tags: &[String],
    cap: usize,
    examined: &mut usize,
) -> Result<Option<Position>, FdbBindingError> {
    let mut begin = match after {
        Some(vs) => strinc(&[prefix, vs.as_slice()].concat()),
        None => prefix.to_vec(),
    };
    let end = strinc(prefix);
    if begin >= end {
        return Ok(None);
    }
    // Limit 1 first: usually the first candidate decides (none, or a match). Pages grow when
    // candidates must be filtered.
    let mut limit = 1usize;
    loop {
        let range = RangeOption {
            limit: Some(limit),
            mode: StreamingMode::WantAll,
            ..RangeOption::from((begin.clone(), end.clone()))
        };
        let page = trx.get_range(&range, 1, false).await?;
        // Owned: FDB's key-value views cannot be held across an await.
        let found = page
            .iter()
            .map(|kv| vs_at(kv.key(), prefix.len()).ok_or_else(|| abort(corrupt(kv.key()))))
            .collect::<Result<Vec<Vs>, _>>()?;
        let more = page.more();
        drop(page);
        // The other tags of every candidate of the page are looked up at once (FDB starts each
        // get when it is called), then checked in order.
        let lookups: Vec<Vec<_>> = found.iter().map(|vs| tag_lookups(trx, keys, vs, verify_tags)).collect();
        for (vs, lookup) in found.iter().zip(lookups) {
            *examined += 1;
            let mut all = true;
            for present in lookup {
                all &= present.await?.is_some();
            }
            if all {
                return Ok(Some(position(vs)));
            }
        }
        let Some(last) = found.last() else { return Ok(None) };
        if !more {
            return Ok(None);
        }
        if *examined >= cap {
            return Err(abort(StoreError::LimitExceeded {
                what: "index entries one append condition item may examine on FoundationDB",
                limit: cap as u64,
                actual: *examined as u64,
            }));
        }
        // Event records span several keys (chunks): continue after the whole event.
        begin = strinc(&[prefix, last.as_slice()].concat());
        if begin >= end {
            return Ok(None);
        }
        limit = (limit * 4).min(256);
    }
}

pub(super) fn corrupt(key: &[u8]) -> StoreError {
    StoreError::Unavailable(format!("FoundationDB key {key:02x?} does not end in a versionstamp: the data is damaged"))
}
