//! Writes the index file of each segment the writer seals, off the writer's thread, and then lets
//! the tenants' memory forget what the file now holds.
//!
//! The index is built from the segment itself, read back from the page cache (the source of
//! truth, and no lock held meanwhile). Segments are sealed in order; if one cannot be indexed
//! (a full disk, say), its events and every later segment's stay in memory, which is slower to
//! open next time and bigger, never wrong: the next open builds what is missing.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::segment_index::{build_from_segment, SegmentIndex};
use super::tenant::SealedPart;
use super::Shared;

pub(super) fn run(shared: Arc<Shared>, sealed: Receiver<(u32, u64)>) {
    let mut stopped = false;
    while let Ok((segment, len)) = sealed.recv() {
        if stopped {
            continue;
        }
        let built = build_from_segment(&*shared.disk, &shared.dir, segment, len)
            .and_then(|()| SegmentIndex::open(&*shared.disk, &shared.dir, segment, len, shared.cache.clone()));
        match built {
            Ok(index) => install(&shared, Arc::new(index)),
            Err(err) => {
                tracing::error!(%err, "cannot index a sealed log segment; its events stay in memory until the store reopens");
                stopped = true;
            }
        }
    }
}

fn install(shared: &Shared, index: Arc<SegmentIndex>) {
    for (tenant, first, last) in index.tenants() {
        let Some(state) = shared.tenant_by_name(tenant) else { continue };
        let part = SealedPart { index: index.clone(), first, last };
        state.log.write().expect("tenant log lock").seal(part);
    }
}
