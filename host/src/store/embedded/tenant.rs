//! One tenant's log as the store holds it: the events in sealed segments are found through those
//! segments' index files, the rest (the open segment, and a sealed one whose index file is still
//! being written) through an index in memory. A search steps through runs (index files merged
//! over consecutive segments, index_run.rs) where they exist, so that a key spread over the
//! whole log is looked up in a few files, not in every segment's.
//!
//! A tenant's positions are dense and the log is in order, so each sealed segment holds one range
//! of them, `first..=last`, and the ranges follow one another: the sealed parts cover `1..=base`
//! and memory covers `base + 1..=head`. A search steps through the parts that overlap what it
//! looks for, oldest first going forwards and newest first going backwards, so a condition probe
//! after a recent position touches memory alone, however many segments are sealed.

use std::collections::VecDeque;
use std::sync::Arc;

use super::log::{EventAt, EventLoc, EventsAt};
use super::segment_index::{IndexFileError, Loc, QueryKeys, SegmentIndex, SegmentList};
use crate::store::index::{check_conditions, never_fails, Resolved, Step, TenantIndex};
use crate::store::{AppendCondition, Event, Query, StoreError};

/// A tenant's events in one sealed segment, or in a run of them.
#[derive(Clone)]
pub(super) struct SealedPart {
    pub index: Arc<SegmentIndex>,
    pub first: u64,
    pub last: u64,
}

#[derive(Default)]
pub(super) struct TenantLog {
    /// The sealed segments holding this tenant's events, oldest first: where events are.
    pub sealed: Vec<SealedPart>,
    /// What searches step through, covering the same positions: runs, and the sealed segments
    /// no run covers yet, oldest first.
    pub searched: Vec<SealedPart>,
    /// The events after the sealed parts, published or only accepted.
    pub index: TenantIndex,
    /// Where each published event after the sealed parts is: `locs[position - base - 1]`.
    pub locs: Vec<EventLoc>,
    /// The accepted events not yet published, oldest first (positions `published + 1..`):
    /// a command's read takes them from here, since they may not be written yet.
    pub accepted: VecDeque<Event>,
    /// Where the tenant's last published frame ends (segment, byte), for a backup's cut.
    pub end: Option<(u32, u64)>,
}

impl TenantLog {
    /// The last position held in sealed parts (0: none).
    pub fn base(&self) -> u64 {
        self.sealed.last().map_or(0, |part| part.last)
    }

    /// Takes the next sealed segment's part: the oldest events in memory are now found through
    /// its index file, and memory forgets them. The part replaces one of the same segment (the
    /// open segment's checkpoint files).
    pub fn seal(&mut self, part: SealedPart) {
        let base = self.base();
        // The open segment's checkpoint files (checkpoint.rs) held its first events: the
        // segment's whole file takes their place.
        while self.sealed.last().is_some_and(|held| held.index.covers() == part.index.covers()) {
            self.sealed.pop();
            self.searched.pop();
        }
        debug_assert_eq!(part.first, self.base() + 1, "sealed parts follow one another");
        debug_assert!(part.last <= self.index.published(), "only published events are sealed");
        self.locs.drain(..(part.last - base) as usize);
        self.index.forget_up_to(part.last);
        self.searched.push(part.clone());
        self.sealed.push(part);
    }

    /// Searches step through `run` from now on, instead of the parts it covers. False (and
    /// nothing changes) when the searched parts do not line up with it.
    pub fn install_run(&mut self, run: SealedPart) -> bool {
        let start = self.searched.partition_point(|part| part.first < run.first);
        let end = self.searched.partition_point(|part| part.last <= run.last);
        let lines_up = self.searched.get(start).is_some_and(|part| part.first == run.first)
            && end > start
            && self.searched[end - 1].last == run.last;
        if lines_up {
            self.searched.splice(start..end, [run]);
        }
        lines_up
    }

    /// Takes `part.index`, another opening of the same segment's file (without its bloom
    /// filters once a run covers the segment, with them again when that run is gone), in place
    /// of the one its part held. Searches keep a segment's filters while they go through it (a
    /// run that did not line up, say).
    pub fn replace_segment(&mut self, part: &SealedPart) {
        let searched = part.index.bloom_bytes() > 0;
        for parts in [&mut self.sealed].into_iter().chain(searched.then_some(&mut self.searched)) {
            let i = parts.partition_point(|held| held.first < part.first);
            if let Some(held) = parts.get_mut(i).filter(|held| held.first == part.first && held.index.covers() == part.index.covers()) {
                held.index = part.index.clone();
            }
        }
    }

    /// A search for `query`'s events in this log, for one batch of a read or one probe.
    pub fn search<'a>(&'a self, tenant: &'a str, query: &'a Query) -> Search<'a> {
        Search { log: self, tenant, query, keys: QueryKeys::new(query), memory: self.index.resolve(query), sealed: Vec::new() }
    }

    /// Fails with the first condition that an indexed event (published or accepted) breaks.
    pub fn check(&self, tenant: &str, conditions: &[AppendCondition], dir: &std::path::Path) -> Result<(), StoreError> {
        let head = self.index.head();
        check_conditions(conditions, |query, after| {
            if after >= head {
                return Ok(None);
            }
            self.search(tenant, query).step(Step::Forward { from: after + 1, to: head }).map_err(|e| index_error(dir, e))
        })
    }

    /// Where the published events at `positions` (ascending or descending) are.
    /// `known(stretch)`, given positions of one sealed segment, may know where some are
    /// already (a search that found them in short posting lists, which hold their events'
    /// locations and in a run often their records), sparing the read of a loc block; None
    /// when it knows none.
    fn locs(
        &self,
        tenant: &str,
        positions: &[u64],
        known: impl Fn(&[u64]) -> Option<Vec<Option<EventAt>>>,
    ) -> Result<EventsAt, IndexFileError> {
        let base = self.base();
        let mut out = EventsAt { locs: Vec::with_capacity(positions.len()), copies: Vec::new() };
        let mut at = 0;
        while at < positions.len() {
            let p = positions[at];
            if p > base {
                out.locs.push(self.locs[(p - base - 1) as usize]);
                at += 1;
                continue;
            }
            // A run of positions in one sealed part, looked up together.
            let i = self.sealed.partition_point(|part| part.last < p);
            let part = &self.sealed[i];
            let run = &positions[at..at + positions[at..].iter().take_while(|&&q| q >= part.first && q <= part.last).count()];
            let segment = part.index.segment();
            let event_loc = |loc: Loc| EventLoc { segment, offset: loc.offset, len: loc.len, crc: loc.crc };
            let Some(found) = known(run) else {
                out.locs.extend(part.index.locs(tenant, run)?.into_iter().map(event_loc));
                at += run.len();
                continue;
            };
            // What the search's lists do not know (a position found through a long list, an
            // event type's) is looked up in the segment's loc blocks, together.
            let unknown: Vec<u64> = run.iter().zip(&found).filter(|(_, at)| at.is_none()).map(|(&q, _)| q).collect();
            let mut looked_up = if unknown.is_empty() { Vec::new() } else { part.index.locs(tenant, &unknown)? }.into_iter();
            for at in found {
                match at {
                    Some(at) => out.push(at),
                    None => out.locs.push(event_loc(looked_up.next().expect("one location for each position looked up"))),
                }
            }
            at += run.len();
        }
        Ok(out)
    }
}

/// A query resolved against a tenant's log: in memory at once, in each sealed part when a search
/// first reaches it.
pub(super) struct Search<'a> {
    log: &'a TenantLog,
    tenant: &'a str,
    query: &'a Query,
    keys: QueryKeys,
    memory: Resolved<&'a [u64]>,
    sealed: Vec<PartSearch<'a>>,
}

/// What a search knows of one sealed part.
enum PartSearch<'a> {
    Unknown,
    /// Its bloom filters rule the query out: nothing there matches.
    RuledOut,
    /// Its bloom filters let the query match: to resolve when the search reaches it.
    Candidate,
    /// Boxed: a log has a part for every sealed segment, and most are never resolved.
    Resolved(Box<Resolved<SegmentList<'a>>>),
}

/// How many parts one pass over the bloom filters tests: a key's bits lie in one cache line per
/// segment, and testing the parts a search is about to pass together lets those memory accesses
/// overlap rather than wait for one another.
const BLOOM_PASS: usize = 32;

impl<'a> Search<'a> {
    /// The first matching position of a forward step, the last of a backward one.
    pub fn step(&mut self, step: Step) -> Result<Option<u64>, IndexFileError> {
        let base = self.log.base();
        match step {
            Step::Forward { from, to } => {
                for i in self.log.searched.partition_point(|part| part.last < from)..self.log.searched.len() {
                    let part = &self.log.searched[i];
                    if part.first > to {
                        return Ok(None);
                    }
                    let (lo, hi) = (from.max(part.first), to.min(part.last));
                    if let Some(resolved) = self.resolved(i, i..self.log.searched.len().min(i + BLOOM_PASS))?
                        && let Some(p) = resolved.next(lo, hi)?
                    {
                        return Ok(Some(p));
                    }
                }
                let lo = from.max(base + 1);
                Ok(if lo > to { None } else { never_fails(self.memory.next(lo, to)) })
            }
            Step::Backward { from, down_to } => {
                if from > base
                    && let Some(p) = never_fails(self.memory.prev(from, down_to.max(base + 1)))
                {
                    return Ok(Some(p));
                }
                for i in (0..self.log.searched.partition_point(|part| part.first <= from)).rev() {
                    let part = &self.log.searched[i];
                    if part.last < down_to {
                        return Ok(None);
                    }
                    let (hi, lo) = (from.min(part.last), down_to.max(part.first));
                    if let Some(resolved) = self.resolved(i, (i + 1).saturating_sub(BLOOM_PASS)..i + 1)?
                        && let Some(p) = resolved.prev(hi, lo)?
                    {
                        return Ok(Some(p));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Where the published events at `positions` are, taken from the posting lists this search
    /// read where they hold them.
    pub fn locs(&self, positions: &[u64]) -> Result<EventsAt, IndexFileError> {
        let searched = &self.log.searched;
        self.log.locs(self.tenant, positions, |stretch| {
            // A stretch lies in one searched part (a run covers whole segments).
            let part = searched.partition_point(|part| part.last < stretch[0]);
            let PartSearch::Resolved(resolved) = self.sealed.get(part)? else { return None };
            // A full read resolves no list, an event type's read long ones only: nothing known.
            if !resolved.lists().any(SegmentList::is_short) {
                return None;
            }
            Some(stretch.iter().map(|&q| resolved.lists().find_map(|list| list.event_at(q))).collect())
        })
    }

    /// The query resolved in sealed part `part`, or None if its bloom filters rule it out; when
    /// the part is not tested yet, the untested ones of `pass` (which holds it) are tested with it.
    fn resolved(&mut self, part: usize, pass: std::ops::Range<usize>) -> Result<Option<&Resolved<SegmentList<'a>>>, IndexFileError> {
        if self.sealed.len() < self.log.searched.len() {
            self.sealed.resize_with(self.log.searched.len(), || PartSearch::Unknown);
        }
        if matches!(self.sealed[part], PartSearch::Unknown) {
            let touched = pass.clone().fold(0, |acc, i| acc ^ self.log.searched[i].index.touch(self.tenant, &self.keys));
            std::hint::black_box(touched);
            for i in pass.clone() {
                if matches!(self.sealed[i], PartSearch::Unknown) {
                    let may = self.log.searched[i].index.may_match(self.tenant, &self.keys);
                    self.sealed[i] = if may { PartSearch::Candidate } else { PartSearch::RuledOut };
                }
            }
            // The log is not all in memory: the candidates' key buckets are asked of the disk
            // together, so that resolving them one after another waits for it about once.
            if self.log.searched[part].index.reads_disk_often() {
                for i in pass.filter(|&i| matches!(self.sealed[i], PartSearch::Candidate)) {
                    self.log.searched[i].index.prefetch_keys(self.tenant, &self.keys);
                }
            }
        }
        if matches!(self.sealed[part], PartSearch::Candidate) {
            let index: &'a SegmentIndex = &self.log.searched[part].index;
            self.sealed[part] = PartSearch::Resolved(Box::new(index.resolve(self.tenant, self.query)?));
        }
        Ok(match &self.sealed[part] {
            PartSearch::Resolved(resolved) => Some(resolved),
            _ => None,
        })
    }
}

/// An index file that fails while the store runs: damage is `Corrupt`, naming the file (`store
/// check` finds it, `store repair` removes it, and the next open builds it again).
pub(super) fn index_error(dir: &std::path::Path, err: IndexFileError) -> StoreError {
    match err {
        IndexFileError::Io { path, source } => StoreError::io(&format!("reading {}", path.display()), source),
        other => StoreError::Corrupt { dir: dir.to_path_buf(), detail: other.to_string() },
    }
}
