//! Two threads beside the writer. The sealer writes the index file of each segment the writer
//! seals and then lets the tenants' memory forget what the file now holds; the merger merges
//! index files into runs as they fall due (index_run.rs), so that searches go through a few files
//! whatever the log's size. A merge (up to minutes at 100 M events) never holds up the indexing
//! of a sealed segment, whose events stay in memory until then.
//!
//! The index is built from the segment itself, read back from the page cache (the source of
//! truth, and no lock held meanwhile). Segments are sealed in order; if one cannot be indexed
//! (a full disk, say), its events and every later segment's stay in memory, which is slower to
//! open next time and bigger, never wrong: the next open builds what is missing. A merge that
//! fails leaves the parts it would have merged, and merging stops until the store reopens:
//! slower searches, never wrong ones.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use super::checkpoint::Chain;
use super::index_run::{merge, next_merge};
use super::segment_index::{build_from_segment, Covers, SegmentIndex};
use super::tenant::{SealedPart, TenantLog};
use super::Shared;

/// What the writer tells the sealer, in the log's order.
pub(super) enum ToSealer {
    /// The writer started the next segment: this one is sealed at `len` bytes.
    Sealed { segment: u32, len: u64 },
    /// The open segment has grown to `len` published bytes since its last checkpoint.
    Grown { segment: u32, len: u64 },
}

/// The sealer: indexes each sealed segment, then tells the merger; checkpoints the open
/// segment's index when it has grown (checkpoint.rs).
/// Returns the open segment's checkpoints as they stand when the writer is gone, for the close.
pub(super) fn run(shared: Arc<Shared>, told: Receiver<ToSealer>, merger: Sender<()>, mut chain: Chain) -> Chain {
    let mut stopped = false;
    while let Ok(first) = told.recv() {
        // A checkpoint that a later one or the seal makes moot is skipped: only the last thing
        // told, if it is one, is written.
        let mut pending = vec![first];
        pending.extend(told.try_iter());
        let count = pending.len();
        for (i, told) in pending.into_iter().enumerate() {
            match told {
                _ if stopped => {}
                ToSealer::Grown { segment, len } if i + 1 == count => chain.grow(&shared, segment, len),
                ToSealer::Grown { .. } => {}
                ToSealer::Sealed { segment, len } => {
                    stopped = !seal(&shared, segment, len, &merger);
                    if !stopped {
                        chain.sealed(&shared, segment);
                    }
                }
            }
        }
    }
    chain
}

/// Indexes a sealed segment, lets the tenants' memory forget it and tells the merger; false if
/// it cannot be indexed.
fn seal(shared: &Shared, segment: u32, len: u64, merger: &Sender<()>) -> bool {
    let built = build_from_segment(&*shared.disk, &shared.dir, segment, len)
        .and_then(|()| SegmentIndex::open(&*shared.disk, &shared.dir, segment, len, shared.cache.clone()));
    match built {
        Ok(index) => {
            tracing::info!(segment = %index.path().display(), "indexed a sealed log segment");
            let index = Arc::new(index);
            install(shared, &index, |log, part| {
                log.seal(part);
                true
            });
            let mut layout = shared.layout.lock().expect("layout lock");
            layout.parts.push(index);
            layout.indexed += 1;
            drop(layout);
            let _ = merger.send(());
            true
        }
        Err(err) => {
            tracing::error!(%err, "cannot index a sealed log segment; its events stay in memory until the store reopens");
            shared.layout.lock().expect("layout lock").indexing_stopped = true;
            false
        }
    }
}

/// The merger: merges what is due at start and after each segment the sealer adds, until the
/// sealer is gone or the store closes.
pub(super) fn merge_loop(shared: Arc<Shared>, added: Receiver<()>) {
    merge_due(&shared);
    while added.recv().is_ok() {
        merge_due(&shared);
    }
}

/// Lets each tenant of `index` take its part.
fn install(shared: &Shared, index: &Arc<SegmentIndex>, take: impl Fn(&mut TenantLog, SealedPart) -> bool) {
    for (tenant, first, last) in index.tenants() {
        let Some(state) = shared.tenant_by_name(tenant) else { continue };
        let part = SealedPart { index: index.clone(), first, last };
        if !take(&mut state.log.write().expect("tenant log lock"), part) {
            tracing::error!(tenant, first, last, path = %index.path().display(), "an index run does not line up with the searched parts");
        }
    }
}

/// Merges parts into runs while a merge is due, until the store closes. Only this thread
/// replaces parts; the sealer only adds them at the end, so a range stays valid meanwhile.
fn merge_due(shared: &Shared) {
    while !shared.closing.load(Ordering::Relaxed) {
        let (range, inputs) = {
            let layout = shared.layout.lock().expect("layout lock");
            if layout.merging_stopped {
                return;
            }
            let Some(range) = next_merge(&layout.parts) else { return };
            (range.clone(), layout.parts[range].to_vec())
        };
        let run = match merge(&*shared.disk, &shared.dir, &inputs, &shared.cache, &shared.closing) {
            Ok(Some(run)) => Arc::new(run),
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%err, "cannot merge index files into a run; searches go through them as they are until the store reopens");
                shared.layout.lock().expect("layout lock").merging_stopped = true;
                return;
            }
        };
        tracing::info!(run = %run.path().display(), "merged index files into a run");
        install(shared, &run, |log, part| log.install_run(part));
        // The segments merged keep their files for their events' locations, not their bloom
        // filters: searches go through the run now.
        for segment in inputs.iter().filter(|part| matches!(part.covers(), Covers::Segment(_))) {
            let bare = Arc::new(segment.without_blooms());
            install(shared, &bare, |log, part| {
                log.replace_segment(&part);
                true
            });
        }
        shared.layout.lock().expect("layout lock").parts.splice(range, [run]);
        // The runs merged are covered now; segments' own index files stay.
        let merged_runs: Vec<_> = inputs.iter().filter(|part| matches!(part.covers(), Covers::Run { .. })).collect();
        for part in &merged_runs {
            if let Err(err) = shared.disk.remove(part.path()) {
                tracing::warn!(%err, run = %part.path().display(), "cannot remove a merged index run; the next open does");
            }
        }
        if !merged_runs.is_empty() {
            let _ = shared.disk.sync_dir(&shared.dir);
        }
    }
}
