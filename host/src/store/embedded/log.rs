//! The on-disk log: numbered segment files of checksummed frames, one frame per append.
//!
//! ```text
//! frame   = len:u32 crc32:u32 payload[len]                      (little endian)
//! payload = tenant_len:u8 tenant first_position:u64 count:u32 event*
//! event   = type_len:u16 type tag_count:u16 (len:u16 tag)* meta_count:u16
//!           (key_len:u16 key value_len:u32 value)* data_len:u32 data
//! ```
//!
//! A frame is all of one append or, after a crash, a torn tail that fails its checksum and is
//! cut off when the store opens: a partial append is never visible.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::store::{Event, Position, SequencedEvent};

const FRAME_HEADER: usize = 8;
/// Frames larger than this are damage, not data (an append is at most a few tens of MiB).
const MAX_FRAME: usize = 1 << 30;

/// Where an event's bytes are: its segment, offset and length.
#[derive(Clone, Copy, Debug)]
pub(super) struct EventLoc {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

pub(super) fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.log"))
}

/// The segment numbers present in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
            segments.push(number);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The encoded size of one event.
pub(crate) fn event_len(event: &Event) -> usize {
    2 + event.event_type.len()
        + 2
        + event.tags.iter().map(|t| 2 + t.len()).sum::<usize>()
        + 2
        + event.metadata.iter().map(|(k, v)| 6 + k.len() + v.len()).sum::<usize>()
        + 4
        + event.data.len()
}

/// The encoded size of a frame holding `events`.
pub(super) fn frame_len(tenant: &str, events: &[Event]) -> usize {
    FRAME_HEADER + 1 + tenant.len() + 8 + 4 + events.iter().map(event_len).sum::<usize>()
}

/// Appends one frame to `buf`; returns each event's offset and length relative to `buf`'s start.
pub(super) fn encode_frame(buf: &mut Vec<u8>, tenant: &str, first: u64, events: &[Event]) -> Vec<(usize, usize)> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    buf.push(tenant.len() as u8);
    buf.extend_from_slice(tenant.as_bytes());
    buf.extend_from_slice(&first.to_le_bytes());
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    let mut spans = Vec::with_capacity(events.len());
    for event in events {
        let at = buf.len();
        encode_event(buf, event);
        spans.push((at, buf.len() - at));
    }
    let payload_len = buf.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    spans
}

/// Appends one event record (the `event` rule above) to `buf`; the FoundationDB backend
/// stores events in the same encoding.
pub(crate) fn encode_event(buf: &mut Vec<u8>, event: &Event) {
    put_str16(buf, &event.event_type);
    buf.extend_from_slice(&(event.tags.len() as u16).to_le_bytes());
    for tag in &event.tags {
        put_str16(buf, tag);
    }
    buf.extend_from_slice(&(event.metadata.len() as u16).to_le_bytes());
    for (key, value) in &event.metadata {
        put_str16(buf, key);
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buf.extend_from_slice(value.as_bytes());
    }
    buf.extend_from_slice(&(event.data.len() as u32).to_le_bytes());
    buf.extend_from_slice(&event.data);
}

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A bounds-checked reader over encoded bytes; every malformed input is an error, never a panic.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated record")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<usize, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }
    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

/// Decodes one event record.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut c = Cursor { bytes, at: 0 };
    let event = read_event(&mut c, true)?;
    if c.at != bytes.len() {
        return Err("event record has trailing bytes".into());
    }
    Ok(event)
}

fn read_event(c: &mut Cursor<'_>, with_data: bool) -> Result<Event, String> {
    let n = c.u16()?;
    let event_type = c.str(n)?;
    let tag_count = c.u16()?;
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        let n = c.u16()?;
        tags.push(c.str(n)?);
    }
    let meta_count = c.u16()?;
    let mut metadata = Vec::with_capacity(meta_count);
    for _ in 0..meta_count {
        let n = c.u16()?;
        let key = c.str(n)?;
        let n = c.u32()?;
        metadata.push((key, c.str(n)?));
    }
    let n = c.u32()?;
    let data = c.take(n)?;
    let data = if with_data { data.to_vec() } else { Vec::new() };
    Ok(Event { event_type, tags, data, metadata })
}

/// One append as found in the log while recovering. Events carry no data: the index needs
/// only types and tags, and the data stays on disk.
pub(super) struct RecoveredFrame {
    pub tenant: String,
    pub first: u64,
    /// Each event (without data) and its location.
    pub events: Vec<(Event, EventLoc)>,
}

/// What a segment scan found.
pub(super) struct SegmentScan {
    /// Bytes of complete, valid frames.
    pub valid_len: u64,
    /// True when bytes after `valid_len` do not form a valid frame (a torn tail).
    pub torn: bool,
}

/// Reads every valid frame of a segment, calling `on_frame` for each, and stops at the first
/// torn or damaged frame.
pub(super) fn scan_segment(
    path: &Path,
    segment: u32,
    mut on_frame: impl FnMut(RecoveredFrame) -> Result<(), String>,
) -> Result<SegmentScan, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut at: u64 = 0;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER];
        match read_full(&mut reader, &mut header).map_err(|e| e.to_string())? {
            0 => return Ok(SegmentScan { valid_len: at, torn: false }),
            n if n < FRAME_HEADER => return Ok(SegmentScan { valid_len: at, torn: true }),
            _ => {}
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > MAX_FRAME || at + (FRAME_HEADER + len) as u64 > file_len {
            return Ok(SegmentScan { valid_len: at, torn: true });
        }
        payload.resize(len, 0);
        if read_full(&mut reader, &mut payload).map_err(|e| e.to_string())? < len || crc32fast::hash(&payload) != crc {
            return Ok(SegmentScan { valid_len: at, torn: true });
        }
        let frame = parse_frame(&payload, segment, at + FRAME_HEADER as u64)
            .map_err(|e| format!("{} at byte {at}: {e}", path.display()))?;
        on_frame(frame).map_err(|e| format!("{} at byte {at}: {e}", path.display()))?;
        at += (FRAME_HEADER + len) as u64;
    }
}

fn parse_frame(payload: &[u8], segment: u32, payload_offset: u64) -> Result<RecoveredFrame, String> {
    let mut c = Cursor { bytes: payload, at: 0 };
    let n = c.take(1)?[0] as usize;
    let tenant = c.str(n)?;
    let first = c.u64()?;
    let count = c.u32()?;
    let mut events = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let start = c.at;
        let event = read_event(&mut c, false)?;
        let offset = u32::try_from(payload_offset + start as u64).map_err(|_| "segment too large")?;
        events.push((event, EventLoc { segment, offset, len: (c.at - start) as u32 }));
    }
    if c.at != payload.len() {
        return Err("frame has trailing bytes".into());
    }
    Ok(RecoveredFrame { tenant, first, events })
}

/// Reads until `buf` is full or the end of input; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes the events at `locs` from `bytes`, which hold the file range starting at `base`.
pub(super) fn decode_run(
    bytes: &[u8],
    base: u32,
    positions: &[u64],
    locs: &[EventLoc],
) -> Result<Vec<SequencedEvent>, String> {
    positions
        .iter()
        .zip(locs)
        .map(|(&position, loc)| {
            let start = (loc.offset - base) as usize;
            let event = decode_event(&bytes[start..start + loc.len as usize])?;
            Ok(SequencedEvent { position: Position::new(position), event })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let events = vec![
            Event { event_type: "A".into(), tags: vec!["t:1".into()], data: vec![1, 2, 3], metadata: vec![] },
            Event {
                event_type: "B".into(),
                tags: vec![],
                data: vec![],
                metadata: vec![("k".into(), "v".into())],
            },
        ];
        let mut buf = vec![0xAA; 5];
        let spans = encode_frame(&mut buf, "acme", 7, &events);
        assert_eq!(buf.len() - 5, frame_len("acme", &events));
        for ((at, len), event) in spans.iter().zip(&events) {
            assert_eq!(&decode_event(&buf[*at..at + len]).unwrap(), event);
        }
        assert!(decode_event(&buf[spans[0].0..spans[0].0 + 3]).is_err(), "truncated input is an error");
    }
}
