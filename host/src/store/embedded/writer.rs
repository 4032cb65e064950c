//! Group commit: one writer thread turns every append waiting in its queue into one write and
//! one `fdatasync`.
//!
//! The writer takes the first waiting append, then whatever else is queued (no timer: an
//! append that is alone is written at once). It checks each append's conditions in arrival
//! order against the log *and* the appends it accepted earlier in the same batch (they are
//! already in the index, unpublished), encodes the accepted ones as frames, writes and syncs
//! once, then publishes the new heads and answers every caller.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use tokio::sync::oneshot;

use super::log::{encode_frame, frame_len, segment_path, EventLoc};
use super::{Shared, TenantState};
use crate::store::{AppendCondition, Event, Position, StoreError, Tenant};

/// A batch stops growing at this many bytes (one append may exceed it alone).
const MAX_BATCH_BYTES: usize = 32 << 20;

pub(super) struct Request {
    pub tenant: Tenant,
    pub events: Vec<Event>,
    pub conditions: Vec<AppendCondition>,
    pub reply: oneshot::Sender<Result<Vec<Position>, StoreError>>,
}

impl Request {
    fn frame_len(&self) -> usize {
        frame_len(self.tenant.as_str(), &self.events)
    }
}

pub(super) struct Writer {
    pub shared: Arc<Shared>,
    /// The segment being appended to, and its valid length.
    pub segment: u32,
    pub file: Arc<File>,
    pub len: u64,
    pub segment_bytes: u64,
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn run(mut self, requests: Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut bytes = first.frame_len();
            let mut batch = vec![first];
            while bytes < MAX_BATCH_BYTES {
                match requests.try_recv() {
                    Ok(request) => {
                        bytes += request.frame_len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch, bytes as u64);
        }
    }

    fn commit(&mut self, batch: Vec<Request>, bytes: u64) {
        if let Some(reason) = self.shared.poisoned() {
            return reply_all(batch, || Err(StoreError::Unavailable(reason.clone())));
        }
        if self.len > 0
            && self.len + bytes > self.segment_bytes
            && let Err(err) = self.roll_segment()
        {
            let reason = self.shared.poison(format!("cannot start a new log segment: {err}"));
            return reply_all(batch, || Err(StoreError::Unavailable(reason.clone())));
        }

        self.buf.clear();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut touched: Vec<(Arc<TenantState>, Vec<usize>)> = Vec::new();
        for (i, request) in batch.iter().enumerate() {
            let state = self.shared.tenant_or_create(&request.tenant);
            let mut log = state.log.write().expect("tenant log lock");
            if let Err(err) = log.index.check(&request.conditions) {
                outcomes.push(Err(err));
                continue;
            }
            let first = log.index.head() + 1;
            let spans = encode_frame(&mut self.buf, request.tenant.as_str(), first, &request.events);
            let mut positions = Vec::with_capacity(request.events.len());
            for ((event, (at, len)), position) in request.events.iter().zip(spans).zip(first..) {
                log.index.insert(position, event);
                let offset = (self.len + at as u64) as u32;
                log.locs.push(EventLoc { segment: self.segment, offset, len: len as u32 });
                positions.push(Position::new(position));
            }
            drop(log);
            outcomes.push(Ok(positions));
            match touched.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &state)) {
                Some((_, accepted)) => accepted.push(i),
                None => touched.push((state, vec![i])),
            }
        }

        if !self.buf.is_empty() {
            let written = self.file.write_all_at(&self.buf, self.len).and_then(|()| self.file.sync_data());
            match written {
                Ok(()) => {
                    self.len += self.buf.len() as u64;
                    for (state, _) in &touched {
                        let head = {
                            let mut log = state.log.write().expect("tenant log lock");
                            let head = log.index.head();
                            log.index.publish(head);
                            head
                        };
                        state.heads.send_replace(Position::new(head));
                    }
                }
                Err(err) => {
                    for (state, accepted) in &touched {
                        let mut log = state.log.write().expect("tenant log lock");
                        log.index.rollback(accepted.iter().flat_map(|&i| &batch[i].events));
                        let published = log.index.published() as usize;
                        log.locs.truncate(published);
                    }
                    // After a failed fsync the kernel may have dropped the dirty pages: the file's
                    // contents are unknown, so no further write is trusted until the store reopens
                    // and recovers from what is really on disk.
                    let _ = self.file.set_len(self.len);
                    let reason = self.shared.poison(format!("writing the log failed: {err}"));
                    return reply_all(batch, || Err(StoreError::Unavailable(reason.clone())));
                }
            }
        }

        for (request, outcome) in batch.into_iter().zip(outcomes) {
            let _ = request.reply.send(outcome);
        }
    }

    fn roll_segment(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        let path = segment_path(&self.shared.dir, next);
        let file = Arc::new(OpenOptions::new().read(true).write(true).create_new(true).open(&path)?);
        File::open(&self.shared.dir)?.sync_all()?;
        self.shared.segments.write().expect("segments lock").push(file.clone());
        self.segment = next;
        self.file = file;
        self.len = 0;
        Ok(())
    }
}

fn reply_all(batch: Vec<Request>, outcome: impl Fn() -> Result<Vec<Position>, StoreError>) {
    for request in batch {
        let _ = request.reply.send(outcome());
    }
}
