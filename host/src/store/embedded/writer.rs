//! Appends in two stages: accepted by the caller, made durable by one writer thread.
//!
//! **Accept** ([`accept`]), on the appending task, under one lock (the queue's): check the
//! append's conditions against every indexed event, published or not; index its events as
//! *accepted* (readers of published events do not see them; a command's read does, see
//! [`EventStore::read_accepted`](crate::store::EventStore::read_accepted)); encode its frame and
//! queue it. The lock makes the queue's order the log's order, and every append is checked
//! against all accepted before it.
//!
//! **Flush** ([`Writer::run`]): the writer takes everything queued, writes it in one write,
//! `fdatasync`s once, then publishes the new heads and answers every caller. Accepting goes on
//! meanwhile, so a chain of commands on one boundary, each deciding on the one before, is not
//! held to one command per flush. An append that comes alone is written at once. While appends
//! come in together (the last flush carried more than one), the writer first sleeps for the
//! group commit window, if one is set ([`EmbeddedOptions::group_commit_window`](super::EmbeddedOptions),
//! none by default), so that each flush carries more of them: a flush costs the process about
//! 70 µs of processor time on this machine's virtual disk, whatever it carries. It sleeps rather
//! than waits on the queue, which would have every append wake it.
//!
//! **Zeros ahead.** A small flush writes zeros after its frames (up to [`OVERWRITE_WINDOW`]), so
//! that the flushes after it overwrite bytes the file already has: their `fdatasync` then has no
//! file size and no new block to record, one disk write less each (on this machine's ext4, 4 KiB
//! overwrites flush about 1.3 times as often as appends). A scan of the open segment takes zeros
//! after the last frame for its end, and tells a flush torn by a crash (which may keep any of
//! its pages, since no file size orders them) by that window (log.rs); a segment is cut to its
//! frames, durably, before the next one is created and when the store closes, and an open cuts
//! what a crash left (mod.rs), so no flush writes over more than the window; a big flush that
//! would run past the zeros cuts them first, so that a flush that both overwrites and grows the
//! file is a small one, within the window.
//!
//! If a write or a flush fails, the store is poisoned: every accepted, unpublished event is
//! forgotten, every caller still waiting gets the error, and nothing is accepted any more until
//! the store is reopened, so nothing decided on a lost event can ever be acknowledged.

use std::io::ErrorKind;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::disk::{DiskFile, OpenMode};
use super::checkpoint::Checkpoints;
use super::log::{encode_frame, frame_len, segment_path, EventLoc, OVERWRITE_WINDOW};
use super::sealer::ToSealer;
use super::{Shared, TenantState};
use crate::store::{AcceptedAppend, AppendCondition, Event, Position, StoreError, Tenant};

/// A batch stops growing at this many bytes (one append may exceed it alone).
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Flushes up to this size write zeros ahead. A bigger one is bound by its bytes, not by the
/// disk's round trips, and writing zeros too would add to its bytes.
const SMALL_FLUSH: usize = 64 << 10;

/// An accepted append, waiting to be written.
pub(super) struct Accepted {
    shared: Arc<Shared>,
    state: Arc<TenantState>,
    /// Its encoded frame, and each event's span in it and checksum.
    frame: Vec<u8>,
    spans: Vec<(usize, usize, u32)>,
    /// Taken when it is answered.
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Accepted {
    /// Tells the appender how its append ended. It is counted as answered first, so whoever
    /// the reply wakes finds it no longer pending.
    fn answer(&mut self, result: Result<(), StoreError>) {
        if let Some(reply) = self.reply.take() {
            self.shared.answered();
            let _ = reply.send(result);
        }
    }
}

impl Drop for Accepted {
    /// Dropped unanswered, the writer has stopped (it panicked) with this append queued or in
    /// hand: its events will never be published. The store is poisoned as after a failed flush
    /// (nothing more is accepted, and whoever waits for its events to settle is woken and told),
    /// and it is answered, or the store would count it pending, and its flushes late, for good.
    fn drop(&mut self) {
        if self.reply.is_some() {
            let reason = self.shared.poison("the store's writer stopped before it flushed an accepted append".into());
            self.state.heads.send_modify(|_| {});
            self.answer(Err(StoreError::Unavailable(reason)));
        }
    }
}

/// Accepts an append: checks its conditions, indexes its events as accepted and queues its frame
/// for the writer, which says when it is durable.
pub(super) fn accept(
    shared: &Arc<Shared>,
    queue: &Mutex<Option<Sender<Accepted>>>,
    tenant: &Tenant,
    events: Vec<Event>,
    conditions: &[AppendCondition],
) -> Result<AcceptedAppend, StoreError> {
    let queue = queue.lock().expect("append queue lock");
    let closed = || StoreError::Unavailable("the store's writer has stopped".into());
    let sender = queue.as_ref().ok_or_else(closed)?;
    let state = shared.tenant_or_create(tenant);
    let mut log = state.log.write().expect("tenant log lock");
    // Checked under the tenant's lock: a failed flush poisons first, then forgets each
    // tenant's accepted events under this lock, so nothing slips in between.
    if let Some(reason) = shared.poisoned() {
        return Err(StoreError::Unavailable(reason));
    }
    log.check(tenant.as_str(), conditions, &shared.dir)?;
    let first = log.index.head() + 1;
    let mut frame = Vec::with_capacity(frame_len(tenant.as_str(), &events));
    let spans = encode_frame(&mut frame, tenant.as_str(), first, &events)
        .into_iter()
        .map(|(at, len)| (at, len, crc32fast::hash(&frame[at..at + len])))
        .collect();
    let positions: Vec<Position> = (first..first + events.len() as u64).map(Position::new).collect();
    for (event, position) in events.into_iter().zip(first..) {
        log.index.insert(position, &event);
        log.accepted.push_back(event);
    }
    drop(log);
    let (reply, durable) = oneshot::channel();
    shared.queued();
    // Not sent, it is answered as it is dropped (no one waits for that answer).
    sender.send(Accepted { shared: shared.clone(), state, frame, spans, reply: Some(reply) }).map_err(|_| closed())?;
    Ok(AcceptedAppend::new(positions, async move { durable.await.map_err(|_| closed())? }))
}

pub(super) struct Writer {
    pub shared: Arc<Shared>,
    /// The segment being appended to, and its valid length.
    pub segment: u32,
    pub file: Arc<dyn DiskFile>,
    pub len: u64,
    /// The file's length: zeros from `len` to here.
    pub zeroed: u64,
    pub segment_bytes: u64,
    pub buf: Vec<u8>,
    /// Where a segment goes, with its length, once it is sealed (to have its index written) or
    /// has grown enough for a checkpoint of its index.
    pub sealer: Sender<ToSealer>,
    pub checkpoints: Checkpoints,
    /// The group commit window: how long the writer waits before a flush while appends come in
    /// together.
    pub window: Duration,
    /// How many appends the last flush carried.
    pub last_batch: usize,
}

impl Writer {
    /// Writes what is queued until the queue closes; returns where the open segment's frames end.
    pub fn run(mut self, queue: Receiver<Accepted>) -> u64 {
        while let Ok(first) = queue.recv() {
            let mut bytes = first.frame.len();
            let mut batch = vec![first];
            if self.last_batch > 1 && !self.window.is_zero() {
                std::thread::sleep(self.window);
            }
            while bytes < MAX_BATCH_BYTES {
                let Ok(accepted) = queue.try_recv() else { break };
                bytes += accepted.frame.len();
                batch.push(accepted);
            }
            self.last_batch = batch.len();
            self.flush(batch, bytes as u64);
        }
        // Closing: the segment ends with its last frame.
        if let Err(err) = self.cut_zeros() {
            tracing::warn!(%err, segment = self.segment, "cannot cut the zeros after the open segment's last frame; the next open cuts them");
        }
        self.len
    }

    /// Cuts the file to its frames (no zeros after them), durably.
    fn cut_zeros(&mut self) -> std::io::Result<()> {
        if self.zeroed > self.len { self.cut_to_frames() } else { Ok(()) }
    }

    /// Cuts the file to its published frames, durably: nothing after them, zeros or a failed
    /// flush's bytes.
    fn cut_to_frames(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_data()?;
        self.zeroed = self.len;
        Ok(())
    }

    fn flush(&mut self, batch: Vec<Accepted>, bytes: u64) {
        if let Some(reason) = self.shared.poisoned() {
            return reply_all(batch, &reason);
        }
        if self.len > 0
            && self.len + bytes > self.segment_bytes
            && let Err(err) = self.roll_segment()
        {
            return self.fail(batch, format!("cannot start a new log segment: {err}"));
        }

        self.buf.clear();
        let mut locs: Vec<Vec<EventLoc>> = Vec::with_capacity(batch.len());
        for accepted in &batch {
            let at = self.len + self.buf.len() as u64;
            locs.push(
                accepted
                    .spans
                    .iter()
                    .map(|&(offset, len, crc)| EventLoc {
                        segment: self.segment,
                        offset: (at + offset as u64) as u32,
                        len: len as u32,
                        crc,
                    })
                    .collect(),
            );
            self.buf.extend_from_slice(&accepted.frame);
        }
        let (end, frames) = (self.len + self.buf.len() as u64, self.buf.len());
        let mut written = Ok(());
        if end > self.zeroed && frames <= SMALL_FLUSH {
            let ahead = (end + OVERWRITE_WINDOW).min(self.segment_bytes.max(end));
            self.buf.resize((ahead - self.len) as usize, 0);
        } else if end > self.zeroed && self.zeroed > self.len {
            // A big flush past the zeros would both overwrite and grow the file, and a file
            // system may make its new size durable before the overwritten pages: it grows the
            // file from its frames instead.
            written = self.file.set_len(self.len);
            self.zeroed = self.len;
        }
        written = written.and_then(|()| self.file.write_all_at(&self.buf, self.len));
        if written.as_ref().is_err_and(|e| matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::FileTooLarge)) && self.buf.len() > frames {
            // No room for the zeros (a full disk, a limit on the file's size): the frames go
            // alone, and the file ends with them.
            self.buf.truncate(frames);
            written = self.file.write_all_at(&self.buf, self.len).and_then(|()| self.file.set_len(end));
        }
        if let Err(err) = written.and_then(|()| self.file.sync_data()) {
            return self.fail(batch, format!("writing the log failed: {err}"));
        }
        self.zeroed = self.zeroed.max(self.len + self.buf.len() as u64);
        self.len = end;
        self.shared.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        // Publish in queue order: per tenant that is position order, and this batch holds the
        // oldest of its accepted events.
        let mut touched: Vec<&Arc<TenantState>> = Vec::new();
        for (accepted, locs) in batch.iter().zip(locs) {
            let mut log = accepted.state.log.write().expect("tenant log lock");
            let published = log.index.published() + locs.len() as u64;
            log.accepted.drain(..locs.len());
            log.end = locs.last().map(|loc| (loc.segment, u64::from(loc.offset) + u64::from(loc.len)));
            log.locs.extend(locs);
            log.index.publish(published);
            if !touched.iter().any(|t| Arc::ptr_eq(t, &accepted.state)) {
                touched.push(&accepted.state);
            }
        }
        for state in touched {
            let published = state.log.read().expect("tenant log lock").index.published();
            state.heads.send_replace(Position::new(published));
        }
        for mut accepted in batch {
            accepted.answer(Ok(()));
        }
        // Only what is published is checkpointed: a crash cannot take it back.
        if self.checkpoints.due(self.len) {
            let _ = self.sealer.send(ToSealer::Grown { segment: self.segment, len: self.len });
        }
    }

    /// After a failed write or flush: the kernel may have dropped the dirty pages, so the file's
    /// contents are unknown and no further write is trusted until the store reopens and recovers
    /// from what is really on disk. Every accepted event is forgotten. Part of a failed flush may
    /// have reached the disk all the same (writeback had begun): the file is cut back to its
    /// published end, durably if the disk still takes that, before anyone is answered, and the
    /// answer says whether the flush's appends can come back when the store reopens.
    fn fail(&mut self, batch: Vec<Accepted>, reason: String) {
        let reason = match self.cut_to_frames() {
            Ok(()) => format!("{reason}; none of the appends it carried is in the log"),
            Err(err) => format!("{reason}; the appends it carried may be in the log when the store reopens (cutting them off failed: {err})"),
        };
        let reason = self.shared.poison(reason);
        self.zeroed = self.len;
        let tenants: Vec<Arc<TenantState>> = self.shared.tenants.read().expect("tenants lock").values().cloned().collect();
        for state in tenants {
            let mut log = state.log.write().expect("tenant log lock");
            let forgotten: Vec<Event> = log.accepted.drain(..).collect();
            log.index.rollback(&forgotten);
            drop(log);
            // Wakes whoever waits for these events to settle: they never will.
            state.heads.send_modify(|_| {});
        }
        reply_all(batch, &reason);
    }

    fn roll_segment(&mut self) -> std::io::Result<()> {
        // Cut before the next segment exists: only the last segment may end in zeros.
        self.cut_zeros()?;
        let next = self.segment + 1;
        let path = segment_path(&self.shared.dir, next);
        let file = self.shared.disk.open(&path, OpenMode::CreateNew)?;
        self.shared.disk.sync_dir(&self.shared.dir)?;
        self.shared.segments.write().expect("segments lock").push(file.clone());
        // The sealer may be gone only while the store closes; the next open indexes the segment.
        let _ = self.sealer.send(ToSealer::Sealed { segment: self.segment, len: self.len });
        self.checkpoints.restart();
        self.segment = next;
        self.file = file;
        self.len = 0;
        self.zeroed = 0;
        Ok(())
    }
}

fn reply_all(batch: Vec<Accepted>, reason: &str) {
    for mut accepted in batch {
        accepted.answer(Err(StoreError::Unavailable(reason.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::store::embedded::sim_disk::{Faults, SimDisk};
    use crate::store::EventStore;

    /// An append the writer never answers (a writer that panicked drops the batch it holds and
    /// what is queued) is answered as it is dropped: its appender hears that the writer stopped,
    /// the store no longer counts it pending (its flushes would look late for good, and every
    /// hot boundary's turn would wait for them), and it refuses what would build on its events.
    #[tokio::test]
    async fn an_append_dropped_unanswered_is_answered_and_poisons_the_store() {
        let disk = Arc::new(SimDisk::new(3, Faults::default()));
        let store = EmbeddedStore::open_on(disk, "/data", EmbeddedOptions::default()).unwrap();
        let shared = &store.inner.shared;
        let tenant = Tenant::new("acme").unwrap();
        // A queue of its own, in place of the writer's.
        let (sender, queue) = std::sync::mpsc::channel();
        let accepted = accept(shared, &Mutex::new(Some(sender)), &tenant, vec![Event::new("Lost")], &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store.flushes_late(), "accepted 5 ms ago and not answered");

        drop(queue);
        assert!(!store.flushes_late(), "dropped with the queue: answered");
        match accepted.durable().await {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("writer stopped before it flushed"), "{m}"),
            other => panic!("the appender hears that the writer stopped: {other:?}"),
        }
        let settled = tokio::time::timeout(Duration::from_secs(5), store.settle(&tenant)).await.expect("a wait for its events ends");
        assert!(matches!(settled, Err(StoreError::Unavailable(_))), "its events never settle: {settled:?}");
        let refused = store.append(&tenant, vec![Event::new("Next")], vec![]).await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))), "nothing more is accepted: {refused:?}");
    }
}
