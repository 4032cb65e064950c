//! The type and tag indexes of one tenant's log, and query evaluation over them.
//!
//! Every backend that keeps its log on this machine uses this index: a posting list (ascending
//! positions) per event type and per tag. A query item is the union of its types' lists
//! intersected with its tags' lists; a query is the union of its items. Evaluation jumps from
//! candidate to candidate by binary search, so a read or a condition probe touches only
//! events that can match, never the whole log. Positions are dense (1, 2, 3, ... per tenant),
//! so "any event" needs no list at all.

use std::collections::HashMap;

/// A type's or a tag's posting list, by name. Hashed with foldhash: every append and every read
/// looks names up here, and the store opens by inserting every event of the open segment.
type PostingMap = HashMap<Box<str>, Vec<u64>, foldhash::fast::RandomState>;
use std::convert::Infallible;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{AppendCondition, Event, Position, Query, StoreError};

/// Events are indexed when the writer accepts them and become visible to reads only when
/// published (after they are durable), so a group-commit writer checks later appends of a
/// batch against earlier ones while readers never see an event that could still be lost.
#[derive(Default)]
pub(crate) struct TenantIndex {
    /// The newest indexed event, published or not.
    head: u64,
    /// The newest event readers may see.
    published: u64,
    by_type: PostingMap,
    by_tag: PostingMap,
}

impl TenantIndex {
    /// The newest indexed event, published or not: what append conditions are checked against.
    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn published(&self) -> u64 {
        self.published
    }

    /// Makes every event up to `position` visible to reads.
    pub fn publish(&mut self, position: u64) {
        debug_assert!(position <= self.head);
        self.published = position;
    }

    /// Forgets the unpublished `events` (the tail of the index), after a failed write.
    pub fn rollback<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        let published = self.published;
        let cut = |map: &mut PostingMap, key: &str| {
            if let Some(list) = map.get_mut(key) {
                while list.last().is_some_and(|&p| p > published) {
                    list.pop();
                }
                if list.is_empty() {
                    map.remove(key);
                }
            }
        };
        for event in events {
            cut(&mut self.by_type, &event.event_type);
            for tag in &event.tags {
                cut(&mut self.by_tag, tag);
            }
        }
        self.head = published;
    }

    /// An empty index of a log whose first `head` events are indexed elsewhere (sealed segments).
    pub fn starting_after(head: u64) -> Self {
        TenantIndex { head, published: head, ..TenantIndex::default() }
    }

    /// Forgets every position up to `upto` (published, now indexed elsewhere).
    pub fn forget_up_to(&mut self, upto: u64) {
        debug_assert!(upto <= self.published);
        for map in [&mut self.by_type, &mut self.by_tag] {
            map.retain(|_, list| {
                list.drain(..list.partition_point(|&p| p <= upto));
                !list.is_empty()
            });
        }
    }

    /// Adds the event at `position`, which must be `head + 1`.
    pub fn insert(&mut self, position: u64, event: &Event) {
        debug_assert_eq!(position, self.head + 1, "positions are dense");
        self.head = position;
        push_posting(&mut self.by_type, &event.event_type, position);
        for tag in &event.tags {
            push_posting(&mut self.by_tag, tag, position);
        }
    }

    /// The first position after `after` holding an event that matches `query`.
    pub fn first_match_after(&self, query: &Query, after: u64) -> Option<u64> {
        if after >= self.head {
            return None;
        }
        never_fails(self.resolve(query).next(after + 1, self.head))
    }

    /// Fails with the first condition that a stored event breaks.
    pub fn check(&self, conditions: &[AppendCondition]) -> Result<(), StoreError> {
        check_conditions(conditions, |query, after| Ok(self.first_match_after(query, after)))
    }

    pub fn resolve(&self, query: &Query) -> Resolved<&[u64]> {
        never_fails(Resolved::new(query, |kind, name| {
            let map = match kind {
                KeyKind::Type => &self.by_type,
                KeyKind::Tag => &self.by_tag,
            };
            Ok(map.get(name).map(Vec::as_slice))
        }))
    }
}

/// Fails with the first condition that a stored event breaks; `first_match_after(query, p)` finds
/// the first event after `p` that matches `query`.
pub(crate) fn check_conditions(
    conditions: &[AppendCondition],
    mut first_match_after: impl FnMut(&Query, u64) -> Result<Option<u64>, StoreError>,
) -> Result<(), StoreError> {
    for (i, condition) in conditions.iter().enumerate() {
        let after = condition.after.map_or(0, Position::dense);
        if let Some(position) = first_match_after(&condition.query, after)? {
            return Err(StoreError::ConditionFailed { condition: i, position: Position::new(position) });
        }
    }
    Ok(())
}

/// The value of a search in memory, which cannot fail.
pub(crate) fn never_fails<T>(result: Result<T, Infallible>) -> T {
    result.unwrap_or_else(|never| match never {})
}

fn push_posting(map: &mut PostingMap, key: &str, position: u64) {
    match map.get_mut(key) {
        Some(list) => list.push(position),
        None => {
            map.insert(key.into(), vec![position]);
        }
    }
}

/// What a posting list's key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum KeyKind {
    Type = 0,
    Tag = 1,
}

/// An ascending list of positions that a search jumps in: in memory, or in an index file
/// (whose reads can fail).
pub(crate) trait PostingList {
    type Error;
    /// The smallest position `>= x`.
    fn next_at_least(&self, x: u64) -> Result<Option<u64>, Self::Error>;
    /// The largest position `<= x`.
    fn last_at_most(&self, x: u64) -> Result<Option<u64>, Self::Error>;
    /// How many positions: the shortest list is searched first.
    fn len(&self) -> u64;
}

impl PostingList for &[u64] {
    type Error = Infallible;
    fn next_at_least(&self, x: u64) -> Result<Option<u64>, Infallible> {
        Ok(self.get(self.partition_point(|&p| p < x)).copied())
    }
    fn last_at_most(&self, x: u64) -> Result<Option<u64>, Infallible> {
        Ok(self.partition_point(|&p| p <= x).checked_sub(1).map(|i| self[i]))
    }
    fn len(&self) -> u64 {
        <[u64]>::len(self) as u64
    }
}

/// A query resolved to posting lists: a union of items, each the union of its types' lists
/// intersected with its tags' lists. Queries name a few items of a few types and tags each;
/// those stay inline (a command resolves each of its reads, and each again at its append).
pub(crate) struct Resolved<L> {
    every_event: bool,
    items: SmallVec<[ResolvedItem<L>; 2]>,
}

enum ResolvedItem<L> {
    Every,
    Lists { types: SmallVec<[L; 2]>, tags: SmallVec<[L; 2]>, every_type: bool },
}

impl<L: PostingList> Resolved<L> {
    /// Resolves `query` with `lookup`, which finds the list of a type or a tag (None: no event
    /// has it).
    pub fn new(query: &Query, mut lookup: impl FnMut(KeyKind, &str) -> Result<Option<L>, L::Error>) -> Result<Self, L::Error> {
        if query.items.is_empty() {
            return Ok(Resolved { every_event: true, items: SmallVec::new() });
        }
        let mut items = SmallVec::with_capacity(query.items.len());
        'items: for item in &query.items {
            let mut types = SmallVec::with_capacity(item.types.len());
            for t in &item.types {
                types.extend(lookup(KeyKind::Type, t)?);
            }
            if !item.types.is_empty() && types.is_empty() {
                continue; // none of its types was ever written
            }
            let mut tags = SmallVec::with_capacity(item.tags.len());
            for t in &item.tags {
                match lookup(KeyKind::Tag, t)? {
                    Some(list) => tags.push(list),
                    None => continue 'items, // a tag never written: the item matches nothing
                }
            }
            tags.sort_by_key(|list: &L| list.len()); // most selective first
            let every_type = item.types.is_empty();
            items.push(if item.matches_every_event() { ResolvedItem::Every } else { ResolvedItem::Lists { types, tags, every_type } });
        }
        let every_event = items.iter().any(|item| matches!(item, ResolvedItem::Every));
        Ok(Resolved { every_event, items })
    }

    /// Every posting list the query resolved to.
    pub fn lists(&self) -> impl Iterator<Item = &L> {
        self.items.iter().flat_map(|item| {
            let (types, tags): (&[L], &[L]) = match item {
                ResolvedItem::Every => (&[], &[]),
                ResolvedItem::Lists { types, tags, .. } => (types, tags),
            };
            types.iter().chain(tags)
        })
    }

    /// The smallest matching position in `x..=hi`.
    pub fn next(&self, x: u64, hi: u64) -> Result<Option<u64>, L::Error> {
        if self.every_event {
            return Ok((x <= hi).then_some(x));
        }
        let mut best: Option<u64> = None;
        for item in &self.items {
            if let Some(p) = item.next(x, best.map_or(hi, |b| b.min(hi)))? {
                best = Some(best.map_or(p, |b| b.min(p)));
            }
        }
        Ok(best)
    }

    /// The largest matching position in `lo..=x`.
    pub fn prev(&self, x: u64, lo: u64) -> Result<Option<u64>, L::Error> {
        if self.every_event {
            return Ok((x >= lo && x > 0).then_some(x));
        }
        let mut best: Option<u64> = None;
        for item in &self.items {
            if let Some(p) = item.prev(x, best.map_or(lo, |b| b.max(lo)))? {
                best = Some(best.map_or(p, |b| b.max(p)));
            }
        }
        Ok(best)
    }
}

impl<L: PostingList> ResolvedItem<L> {
    /// The smallest matching position in `x..=hi`.
    fn next(&self, mut x: u64, hi: u64) -> Result<Option<u64>, L::Error> {
        let ResolvedItem::Lists { types, tags, every_type } = self else {
            return Ok((x <= hi).then_some(x));
        };
        loop {
            if x > hi {
                return Ok(None);
            }
            let mut candidate = if *every_type {
                x
            } else {
                let mut min = None;
                for list in types {
                    if let Some(p) = list.next_at_least(x)? {
                        min = Some(min.map_or(p, |m: u64| m.min(p)));
                    }
                }
                let Some(min) = min else { return Ok(None) };
                min
            };
            let mut agreed = true;
            for list in tags {
                let Some(found) = list.next_at_least(candidate)? else { return Ok(None) };
                if found != candidate {
                    candidate = found;
                    agreed = false;
                    break;
                }
            }
            if agreed {
                return Ok((candidate <= hi).then_some(candidate));
            }
            x = candidate;
        }
    }

    /// The largest matching position in `lo..=x`.
    fn prev(&self, mut x: u64, lo: u64) -> Result<Option<u64>, L::Error> {
        let ResolvedItem::Lists { types, tags, every_type } = self else {
            return Ok((x >= lo).then_some(x));
        };
        loop {
            if x < lo {
                return Ok(None);
            }
            let mut candidate = if *every_type {
                x
            } else {
                let mut max = None;
                for list in types {
                    if let Some(p) = list.last_at_most(x)? {
                        max = Some(max.map_or(p, |m: u64| m.max(p)));
                    }
                }
                let Some(max) = max else { return Ok(None) };
                max
            };
            let mut agreed = true;
            for list in tags {
                let Some(found) = list.last_at_most(candidate)? else { return Ok(None) };
                if found != candidate {
                    candidate = found;
                    agreed = false;
                    break;
                }
            }
            if agreed {
                return Ok((candidate >= lo).then_some(candidate));
            }
            x = candidate;
        }
    }
}

/// One search of a read: the smallest matching position in `from..=to`, or the largest in
/// `down_to..=from`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    Forward { from: u64, to: u64 },
    Backward { from: u64, down_to: u64 },
}

/// The state of one read between batches: what is left to select, and what it has seen.
///
/// The read's snapshot is the head when it started; it never returns a later event, so a read
/// streamed over many batches sees one consistent prefix of the log.
pub(crate) struct ReadCursor {
    /// Shared with each batch's search, which borrows it while the cursor moves on.
    query: Arc<Query>,
    backwards: bool,
    /// Exclusive lower bound (the read's `after`).
    after: u64,
    /// The head at the snapshot: the inclusive upper bound.
    snapshot: u64,
    /// The next candidate: forwards the lowest, backwards the highest position still to look at.
    next: u64,
    remaining: Option<u64>,
    last_delivered: Option<u64>,
    /// A forward read stopped by its limit while a further matching event existed.
    cut: bool,
    done: bool,
    /// The query matches every event: positions are dense, so each step is arithmetic and
    /// the index is never searched (a full read of a big log would otherwise search it once
    /// per event).
    every_event: bool,
}

impl ReadCursor {
    /// A read of the published events.
    pub fn new(index: &TenantIndex, query: Query, after: u64, limit: Option<u64>, backwards: bool) -> Self {
        Self::at(index.published(), query, after, limit, backwards)
    }

    /// A read of every indexed event, the accepted but unpublished ones too (a command's read).
    pub fn including_accepted(index: &TenantIndex, query: Query, after: u64, limit: Option<u64>, backwards: bool) -> Self {
        Self::at(index.head(), query, after, limit, backwards)
    }

    fn at(snapshot: u64, query: Query, after: u64, limit: Option<u64>, backwards: bool) -> Self {
        let next = if backwards { snapshot } else { after.saturating_add(1) };
        let every_event = query.matches_every_event();
        ReadCursor {
            every_event,
            query: Arc::new(query),
            backwards,
            after,
            snapshot,
            next,
            remaining: limit,
            last_delivered: None,
            cut: false,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The read's query.
    pub fn query(&self) -> &Arc<Query> {
        &self.query
    }

    /// The read's query, handed back (copied only if it is shared).
    pub fn into_query(self) -> Query {
        Arc::unwrap_or_clone(self.query)
    }

    /// Selects up to `max` further positions from `index`.
    pub fn next_positions(&mut self, index: &TenantIndex, max: usize) -> Vec<u64> {
        let resolved = index.resolve(&self.query);
        never_fails(self.next_positions_with(max, |step| match step {
            Step::Forward { from, to } => resolved.next(from, to),
            Step::Backward { from, down_to } => resolved.prev(from, down_to),
        }))
    }

    /// Selects up to `max` further positions, each found by `find`: the first matching position
    /// of a forward step, the last of a backward one (an index held elsewhere, that can fail).
    pub fn next_positions_with<E>(&mut self, max: usize, mut find: impl FnMut(Step) -> Result<Option<u64>, E>) -> Result<Vec<u64>, E> {
        let mut out = Vec::new();
        while out.len() < max && !self.done {
            let found = if self.backwards {
                if self.next <= self.after {
                    None
                } else if self.every_event {
                    Some(self.next)
                } else {
                    find(Step::Backward { from: self.next, down_to: self.after.saturating_add(1) })?
                }
            } else if self.every_event {
                (self.next <= self.snapshot).then_some(self.next)
            } else {
                find(Step::Forward { from: self.next, to: self.snapshot })?
            };
            if self.remaining == Some(0) {
                // A forward read records the last delivered event only when it really was cut
                // short; "the last N" backwards has seen everything newer anyway.
                self.cut = found.is_some();
                self.done = true;
                break;
            }
            let Some(position) = found else {
                self.done = true;
                break;
            };
            out.push(position);
            self.last_delivered = Some(position);
            self.remaining = self.remaining.map(|r| r - 1);
            if self.backwards {
                self.next = position - 1;
            } else {
                self.next = position + 1;
            }
        }
        Ok(out)
    }

    /// The position up to which this read has seen every matching event (see DESIGN.md).
    pub fn consistency_position(&self) -> u64 {
        match (self.backwards, self.cut, self.last_delivered) {
            (false, true, Some(last)) => last,
            _ => self.snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueryItem;

    fn index(events: &[(&str, &[&str])]) -> TenantIndex {
        let mut index = TenantIndex::default();
        for (i, (t, tags)) in events.iter().enumerate() {
            let mut event = Event::new(*t);
            event.tags = tags.iter().map(|s| s.to_string()).collect();
            index.insert(i as u64 + 1, &event);
        }
        index.publish(index.head());
        index
    }

    fn all(index: &TenantIndex, query: Query, backwards: bool) -> Vec<u64> {
        let mut cursor = ReadCursor::new(index, query, 0, None, backwards);
        cursor.next_positions(index, usize::MAX)
    }

    #[test]
    fn leapfrog_intersection_and_union() {
        let idx = index(&[("A", &["x", "y"]), ("B", &["x"]), ("A", &["y"]), ("C", &["x", "y"]), ("A", &["x", "y"])]);
        let q = Query::item(QueryItem::types(["A", "C"]).with_tag("x").with_tag("y"));
        assert_eq!(all(&idx, q.clone(), false), vec![1, 4, 5]);
        assert_eq!(all(&idx, q, true), vec![5, 4, 1]);
        let q = Query::item(QueryItem::types(["B"])).or(QueryItem::tags(["y"]));
        assert_eq!(all(&idx, q, false), vec![1, 2, 3, 4, 5]);
        let q = Query::item(QueryItem::types(["Z"]));
        assert!(all(&idx, q, false).is_empty());
        assert_eq!(all(&idx, Query::all(), true), vec![5, 4, 3, 2, 1]);
    }
}
