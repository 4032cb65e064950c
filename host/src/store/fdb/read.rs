//! Reads: batches of range reads, each batch its own short transaction.
//!
//! The first transaction reads the tenant's head; that is the read's snapshot, and every later
//! range stops at it. Events up to the head never change, so a batch served by a newer
//! transaction sees exactly what the first one would have: a read can take longer than FDB's
//! 5 s transaction limit and still see one consistent prefix of the log.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use foundationdb::options::StreamingMode;
use foundationdb::future::FdbValues;
use foundationdb::{FdbBindingError, FdbError, KeySelector, RangeOption, Transaction};

use super::index::{access, corrupt, Access};
use super::keys::{position, strinc, versionstamp, vs_at, TenantKeys, Vs};
use super::{abort, binding, Inner};
use crate::store::embedded::log::decode_event;
use crate::store::{EventBatches, Position, Query, ReadOptions, SequencedEvent, StoreError, READ_BATCH};

/// Bytes of event records after which a batch stops early (the rest comes in the next
/// transaction), so that a batch of large events stays well inside FDB's 5 s limit.
const PAGE_BYTES: usize = 4 << 20;
/// Event fetches issued at once.
const FETCH_AHEAD: usize = 64;

/// The head key's value as a position (no value: an empty log).
pub(super) fn head_position(value: Option<&[u8]>) -> Result<Position, StoreError> {
    match value {
        None => Ok(Position::ZERO),
        Some(bytes) => bytes
            .try_into()
            .map(|vs: Vs| position(&vs))
            .map_err(|_| StoreError::Unavailable(format!("the head holds {} bytes, not a versionstamp", bytes.len()))),
    }
}

/// An event's chunks: (key, value) in key order.
type Chunks = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a read's candidates come from.
#[derive(Clone)]
enum Sources {
    /// The event records (some item matches every event).
    Every,
    /// Index ranges; candidates are filtered against the whole query.
    Index(Vec<Vec<u8>>),
}

/// The read's fixed frame, known after its first transaction.
#[derive(Clone)]
struct Frame {
    snapshot: Position,
    /// Inclusive upper bound: the head's versionstamp.
    hi: Vs,
    sources: Sources,
}

pub(super) struct FdbBatches {
    inner: Arc<Inner>,
    keys: TenantKeys,
    query: Query,
    backwards: bool,
    /// Exclusive lower bound (`after`); `None` with `beyond`: nothing can match.
    lo: Option<Vs>,
    beyond: bool,
    frame: Option<Frame>,
    /// The last versionstamp covered (exclusive bound of what is left: lower going forward,
    /// upper going backwards).
    cursor: Option<Vs>,
    remaining: Option<u64>,
    last_delivered: Option<Position>,
    /// A forward read stopped by its limit while a further matching event existed.
    cut: bool,
    done: bool,
}

impl FdbBatches {
    pub fn new(inner: Arc<Inner>, keys: TenantKeys, query: Query, options: ReadOptions) -> Self {
        let (lo, beyond) = match options.after {
            Some(after) => match versionstamp(after) {
                Some(vs) => (Some(vs), false),
                None => (None, true),
            },
            None => (None, false),
        };
        FdbBatches {
            inner,
            keys,
            query,
            backwards: options.backwards,
            lo,
            beyond,
            frame: None,
            cursor: None,
            remaining: options.limit,
            last_delivered: None,
            cut: false,
            done: false,
        }
    }
}

/// One batch's worth of candidates.
struct Page {
    frame: Frame,
    /// Matching events, in read order.
    events: Vec<SequencedEvent>,
    /// Where the next page starts; `None`: the read is exhausted.
    cursor: Option<Vs>,
}

#[async_trait]
impl EventBatches for FdbBatches {
    async fn next_batch(&mut self) -> Result<Option<Vec<SequencedEvent>>, StoreError> {
        let mut out = Vec::new();
        while !self.done {
            let want = self.remaining.map_or(READ_BATCH, |r| (r as usize).saturating_add(1).min(READ_BATCH));
            let request = PageRequest {
                keys: &self.keys,
                query: &self.query,
                backwards: self.backwards,
                lo: self.lo.as_ref(),
                beyond: self.beyond,
                frame: self.frame.as_ref(),
                cursor: self.cursor.as_ref(),
                want,
            };
            let request = &request;
            let page = self
                .inner
                .db
                .run(|trx, _| async move { request.page(&trx).await })
                .await
                .map_err(|e| binding("read failed", e))?;
            self.frame = Some(page.frame);
            for event in page.events {
                if self.remaining == Some(0) {
                    // One more match than the limit: the read was cut short.
                    self.cut = true;
                    self.done = true;
                    break;
                }
                self.remaining = self.remaining.map(|r| r - 1);
                self.last_delivered = Some(event.position);
                out.push(event);
            }
            match page.cursor {
                Some(cursor) => self.cursor = Some(cursor),
                None => self.done = true,
            }
            // "The last N" backwards saw everything newer anyway: no need to look further.
            if self.remaining == Some(0) && self.backwards {
                self.done = true;
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    fn consistency_position(&self) -> Position {
        let snapshot = self.frame.as_ref().map_or(Position::ZERO, |f| f.snapshot);
        match (self.backwards, self.cut, self.last_delivered) {
            (false, true, Some(last)) => last,
            _ => snapshot,
        }
    }

    fn into_query(self: Box<Self>) -> Query {
        self.query
    }
}

/// What one transaction of a read needs (borrowed: the retry loop may run it several times).
struct PageRequest<'a> {
    keys: &'a TenantKeys,
    query: &'a Query,
    backwards: bool,
    lo: Option<&'a Vs>,
    beyond: bool,
    frame: Option<&'a Frame>,
    cursor: Option<&'a Vs>,
    want: usize,
}

impl PageRequest<'_> {
    async fn page(&self, trx: &Transaction) -> Result<Page, FdbBindingError> {
        let frame = match self.frame {
            Some(frame) => frame.clone(),
            None => self.frame(trx).await?,
        };
        let empty = || Page { frame: frame.clone(), events: Vec::new(), cursor: None };
        if self.beyond || frame.snapshot == Position::ZERO || self.lo.is_some_and(|lo| *lo >= frame.hi) {
            return Ok(empty());
        }
        match &frame.sources {
            Sources::Every => self.every_page(trx, &frame).await,
            Sources::Index(prefixes) => self.index_page(trx, &frame, prefixes).await,
        }
    }

    /// The head (the snapshot) and where candidates come from.
    async fn frame(&self, trx: &Transaction) -> Result<Frame, FdbBindingError> {
        let head = trx.get(&self.keys.head(), true).await?;
        let snapshot = head_position(head.as_deref()).map_err(abort)?;
        let hi = versionstamp(snapshot).expect("a head is a versionstamp");
        let mut prefixes = Vec::new();
        let mut every = self.query.items.is_empty();
        for item in &self.query.items {
            match access(trx, self.keys, item).await? {
                Access::Every => every = true,
                // The whole query filters every candidate, so an item's other tags need no
                // separate check here.
                Access::Ranges { prefixes: p, .. } => prefixes.extend(p),
            }
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        let sources = if every { Sources::Every } else { Sources::Index(prefixes) };
        Ok(Frame { snapshot, hi, sources })
    }

    /// The key range of `prefix` + versionstamp left to read.
    fn range(&self, prefix: &[u8], frame: &Frame, limit: usize) -> RangeOption<'static> {
        let join = |vs: &Vs| [prefix, vs.as_slice()].concat();
        let lower = match self.lo {
            Some(lo) => strinc(&join(lo)),
            None => prefix.to_vec(),
        };
        let upper = strinc(&join(&frame.hi));
        let (begin, end) = match (self.cursor, self.backwards) {
            (Some(c), false) => (strinc(&join(c)), upper),
            (Some(c), true) => (lower, join(c)),
            (None, _) => (lower, upper),
        };
        // A cursor at the snapshot's edge leaves nothing: keep the range empty, not inverted.
        let begin = begin.min(end.clone());
        RangeOption {
            begin: KeySelector::first_greater_or_equal(begin),
            end: KeySelector::first_greater_or_equal(end),
            limit: Some(limit),
            mode: StreamingMode::WantAll,
            reverse: self.backwards,
            ..RangeOption::default()
        }
    }

    /// Event records in log order (or reversed), whole events only.
    async fn every_page(&self, trx: &Transaction, frame: &Frame) -> Result<Page, FdbBindingError> {
        let prefix = self.keys.events();
        let at = prefix.len();
        let range = RangeOption { target_bytes: PAGE_BYTES, ..self.range(&prefix, frame, self.want) };
        let page = trx.get_range(&range, 1, true).await?;
        // Group the chunks of each event (consecutive keys with one versionstamp).
        let mut groups: Vec<(Vs, Chunks)> = Vec::new();
        for kv in page.iter() {
            let vs = vs_at(kv.key(), at).ok_or_else(|| abort(corrupt(kv.key())))?;
            match groups.last_mut() {
                Some((last, chunks)) if *last == vs => chunks.push((kv.key().to_vec(), kv.value().to_vec())),
                _ => groups.push((vs, vec![(kv.key().to_vec(), kv.value().to_vec())])),
            }
        }
        let more = page.more() && !groups.is_empty();
        if more && groups.len() > 1 {
            // The limit may have cut the last event's chunks: read it again next page.
            groups.pop();
        } else if let (true, Some((vs, chunks))) = (more, groups.last_mut()) {
            // One event larger than the page: read all of it.
            *chunks = event_chunks(trx, self.keys, vs).await?;
        }
        let cursor = if more { groups.last().map(|(vs, _)| *vs) } else { None };
        let mut events = Vec::with_capacity(groups.len());
        for (vs, mut chunks) in groups {
            chunks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let event = decode(&vs, chunks)?;
            if self.query.matches(&event.event) {
                events.push(event);
            }
        }
        Ok(Page { frame: frame.clone(), events, cursor })
    }

    /// Candidates from every index range, merged without duplicates, then their events.
    async fn index_page(&self, trx: &Transaction, frame: &Frame, prefixes: &[Vec<u8>]) -> Result<Page, FdbBindingError> {
        // FDB starts every range read when it is called: issue them all, then wait.
        let pending: Vec<_> = prefixes.iter().map(|p| trx.get_range(&self.range(p, frame, self.want), 1, true)).collect();
        let mut candidates = BTreeSet::new();
        // A range that returned a full page may hold more entries beyond its last one, so only
        // candidates up to the nearest such last entry are certain to be complete.
        let mut bound: Option<Vs> = None;
        for (prefix, page) in prefixes.iter().zip(pending) {
            let page = page.await?;
            for kv in page.iter() {
                candidates.insert(vs_at(kv.key(), prefix.len()).ok_or_else(|| abort(corrupt(kv.key())))?);
            }
            if let (true, Some(last)) = (page.more(), page.last()) {
                let last = vs_at(last.key(), prefix.len()).ok_or_else(|| abort(corrupt(last.key())))?;
                bound = Some(match (bound, self.backwards) {
                    (None, _) => last,
                    (Some(b), false) => b.min(last),
                    (Some(b), true) => b.max(last),
                });
            }
        }
        let mut chosen: Vec<Vs> = match bound {
            Some(b) if self.backwards => candidates.into_iter().filter(|vs| *vs >= b).collect(),
            Some(b) => candidates.into_iter().filter(|vs| *vs <= b).collect(),
            None => candidates.into_iter().collect(),
        };
        if self.backwards {
            chosen.reverse();
        }
        let mut events = Vec::with_capacity(chosen.len());
        let mut cursor = bound;
        let mut bytes = 0usize;
        for (i, group) in chosen.chunks(FETCH_AHEAD).enumerate() {
            // Issue a group of fetches at once (FDB runs them in parallel), then wait.
            let pending: Vec<_> = group
                .iter()
                .map(|vs| {
                    let range = event_range(self.keys, vs);
                    let first = trx.get_range(&range, 1, true);
                    (vs, range, first)
                })
                .collect();
            for (vs, range, first) in pending {
                let chunks = rest_of_range(trx, range, first.await?).await?;
                bytes += chunks.iter().map(|(_, v)| v.len()).sum::<usize>();
                let event = decode(vs, chunks)?;
                if self.query.matches(&event.event) {
                    events.push(event);
                }
            }
            // Large events: stop early and continue in the next transaction, well inside 5 s.
            if bytes >= PAGE_BYTES && (i + 1) * FETCH_AHEAD < chosen.len() {
                cursor = group.last().copied();
                break;
            }
        }
        Ok(Page { frame: frame.clone(), events, cursor })
    }
}

/// The range of every chunk of the event at `vs`.
fn event_range(keys: &TenantKeys, vs: &Vs) -> RangeOption<'static> {
    let prefix = keys.event(vs);
    RangeOption { mode: StreamingMode::WantAll, ..RangeOption::from((prefix.clone(), strinc(&prefix))) }
}

/// Every chunk of the event at `vs` (snapshot: committed events never change).
async fn event_chunks(trx: &Transaction, keys: &TenantKeys, vs: &Vs) -> Result<Chunks, FdbError> {
    let range = event_range(keys, vs);
    let first = trx.get_range(&range, 1, true).await?;
    rest_of_range(trx, range, first).await
}

/// `first`, the first reply for `range`, and the rest of the range: FDB may split a range
/// read into several replies (large values).
async fn rest_of_range(trx: &Transaction, range: RangeOption<'static>, first: FdbValues) -> Result<Chunks, FdbError> {
    let mut chunks: Chunks = first.iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect();
    let mut next = range.next_range(&first);
    drop(first);
    while let Some(range) = next {
        let page = trx.get_range(&range, 1, true).await?;
        chunks.extend(page.iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())));
        next = range.next_range(&page);
    }
    Ok(chunks)
}

/// Joins an event's chunks (in key order) and decodes the record.
fn decode(vs: &Vs, chunks: Chunks) -> Result<SequencedEvent, FdbBindingError> {
    let record: Vec<u8> = chunks.into_iter().flat_map(|(_, value)| value).collect();
    let event = decode_event(&record).map_err(|detail| {
        abort(StoreError::Unavailable(format!("the event at {} is damaged: {detail}", position(vs))))
    })?;
    Ok(SequencedEvent { position: position(vs), event })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_values() {
        assert_eq!(head_position(None).unwrap(), Position::ZERO);
        assert!(head_position(Some(&[1, 2, 3])).is_err());
        let vs = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
        assert_eq!(head_position(Some(&vs)).unwrap(), Position::from_u128((1 << 16) + 2));
    }
}
