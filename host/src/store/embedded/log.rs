//! The on-disk log: numbered segment files of checksummed frames, one frame per append.
//!
//! ```text
//! frame   = len:u32 crc32:u32 payload[len]                      (little endian)
//! payload = tenant_len:u8 tenant first_position:u64 count:u32 event*
//! event   = type_len:u16 type tag_count:u16 (len:u16 tag)* meta_count:u16
//!           (key_len:u16 key value_len:u32 value)* data_len:u32 data
//! ```
//!
//! A frame is all of one append. After a crash the last flush may be torn: a frame runs past the
//! end of the file or fails its checksum, with no valid frame after it, or with valid frames
//! after it only within [`OVERWRITE_WINDOW`] and zeros beyond; the store cuts it off when it
//! opens, so a partial append is never visible. Other bad frames with valid frames after them
//! are damage, not a crash: the store refuses to open and `counterpoint store check` / `store
//! repair` take over (check.rs). Scanning works on readers and byte slices, not on files.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::disk::Disk;
use crate::store::{Event, Position, SequencedEvent, Tenant};

const FRAME_HEADER: usize = 8;
/// Frames larger than this are damage, not data (an append is at most a few tens of MiB).
const MAX_FRAME: usize = 1 << 30;
/// How far a flush can write over bytes the open segment already has: the writer writes zeros
/// this far ahead of its frames (writer.rs), and the next flushes write their frames over them.
/// A power cut during such a flush's `fdatasync` may keep any of its pages and lose the others
/// (no file size orders them, as it does bytes that grow the file), so valid frames up to this
/// far after a bad one, with only zeros beyond, can be that flush's own, never acknowledged.
pub(super) const OVERWRITE_WINDOW: u64 = 64 << 10;

/// Which segment a scan reads: the open one may end in zeros the writer wrote ahead of its
/// frames; a sealed one ends with its last frame, and zeros at its end are damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SegmentKind {
    Open,
    Sealed,
}

/// Where an event's bytes are: its segment, offset and length; and their CRC-32, checked on
/// every read, since a read fetches one event, not its whole frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct EventLoc {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
    pub crc: u32,
}

/// Where a published event's record can be read: its place in the log, and a copy of it that
/// an index run's key bucket holds, when the search found one there (index_run.rs): the
/// bucket, and where the record starts in it.
#[derive(Clone)]
pub(super) struct EventAt {
    pub loc: EventLoc,
    pub copy: Option<(std::sync::Arc<[u8]>, u32)>,
}

/// Where a read's published events are: each one's place in the log, and the copies of some of
/// them that index runs hold, by their index in `locs` (the bucket, where the record starts).
#[derive(Default)]
pub(super) struct EventsAt {
    pub locs: Vec<EventLoc>,
    pub copies: Vec<(usize, std::sync::Arc<[u8]>, u32)>,
}

impl EventsAt {
    pub fn push(&mut self, at: EventAt) {
        if let Some((bucket, start)) = at.copy {
            self.copies.push((self.locs.len(), bucket, start));
        }
        self.locs.push(at.loc);
    }
}

pub(super) fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.log"))
}

/// The segment numbers present in `dir`, ascending.
pub(super) fn list_segments(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<u32>> {
    let mut segments: Vec<u32> =
        disk.list(dir)?.iter().filter_map(|name| name.strip_suffix(".log").and_then(|n| n.parse().ok())).collect();
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

/// A bounds-checked reader over encoded bytes (log records, index files); every malformed input
/// is an error, never a panic.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated record")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    pub fn u16(&mut self) -> Result<usize, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub fn str(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

/// Decodes one event record.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut c = Cursor::new(bytes);
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
        let n = c.u32()? as usize;
        metadata.push((key, c.str(n)?));
    }
    let n = c.u32()? as usize;
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
    /// Bytes of complete, valid frames before the first damage (all of them when undamaged).
    /// Less than the open segment's length when it ends in zeros: its writer writes zeros ahead
    /// of its frames (writer.rs), and zeros after its last frame are not damage.
    pub valid_len: u64,
    /// The first damage: bytes at `valid_len` that do not form a valid frame.
    pub damage: Option<Damage>,
}

/// Bytes of a segment that do not form a valid frame, from `offset` on.
pub(super) struct Damage {
    pub offset: u64,
    /// Where the next valid frame after the damage starts, if there is one. None means the
    /// damage runs to the end of the segment: in the last segment, a torn write.
    pub next_frame: Option<u64>,
    /// The segment's bytes from `offset` to its end, for whoever needs to look further.
    pub rest: Vec<u8>,
}

impl Damage {
    /// The damaged bytes: up to the next valid frame, or to the end of the segment.
    pub fn len(&self) -> u64 {
        self.next_frame.unwrap_or(self.offset + self.rest.len() as u64) - self.offset
    }

    /// Whether, in the open segment, this is what a crash leaves of the last flush: nothing
    /// valid after it, or valid frames only within [`OVERWRITE_WINDOW`] and zeros beyond.
    pub fn is_torn_flush(&self) -> bool {
        self.next_frame.is_none() || self.rest.get(OVERWRITE_WINDOW as usize..).is_none_or(|beyond| beyond.iter().all(|&b| b == 0))
    }
}

/// Reads every valid frame of a segment from `reader` (`len` bytes), calling `on_frame` with
/// each frame and its offset, and stops at the first damaged frame. To tell a torn write from
/// damage it then reads the rest of the segment and looks for a valid frame after it.
///
/// A frame whose checksum holds but whose contents do not decode is an error, not damage:
/// the checksum says these are the bytes that were written.
pub(super) fn scan_segment(
    reader: impl Read,
    len: u64,
    segment: u32,
    kind: SegmentKind,
    on_frame: impl FnMut(u64, RecoveredFrame) -> Result<(), String>,
) -> Result<SegmentScan, String> {
    scan_segment_from(reader, 0, len, segment, kind, on_frame)
}

/// [`scan_segment`] from byte `start` (a frame's start), `reader` reading from there.
pub(super) fn scan_segment_from(
    mut reader: impl Read,
    start: u64,
    len: u64,
    segment: u32,
    kind: SegmentKind,
    mut on_frame: impl FnMut(u64, RecoveredFrame) -> Result<(), String>,
) -> Result<SegmentScan, String> {
    let mut at: u64 = start;
    let mut frame = Vec::new();
    loop {
        if at == len {
            return Ok(SegmentScan { valid_len: at, damage: None });
        }
        let (filled, whole) = read_frame(&mut reader, &mut frame, len - at).map_err(|e| e.to_string())?;
        if !whole {
            // What was read of the bad frame is the start of the rest; read what remains.
            let mut rest = frame[..filled].to_vec();
            reader.take((len - at).saturating_sub(filled as u64)).read_to_end(&mut rest).map_err(|e| e.to_string())?;
            if kind == SegmentKind::Open && rest.iter().all(|&b| b == 0) {
                return Ok(SegmentScan { valid_len: at, damage: None });
            }
            let next_frame = find_frame(&rest, 1, segment).map(|i| at + i as u64);
            return Ok(SegmentScan { valid_len: at, damage: Some(Damage { offset: at, next_frame, rest }) });
        }
        let parsed = parse_frame(&frame[FRAME_HEADER..], segment, at + FRAME_HEADER as u64)
            .map_err(|e| format!("the frame at byte {at}: {e}"))?;
        on_frame(at, parsed).map_err(|e| format!("the frame at byte {at}: {e}"))?;
        at += frame.len() as u64;
    }
}

/// One step through bytes of a segment that may be damaged: see [`scan_bytes`].
pub(super) enum Item {
    Frame { offset: u64, frame: RecoveredFrame },
    Damage { offset: u64, len: u64 },
}

/// Walks `bytes` (a segment's bytes from offset `base`): each valid frame, and each run of
/// bytes between them that is not one, resynchronising on the next valid frame.
pub(super) fn scan_bytes(bytes: &[u8], base: u64, segment: u32, mut on_item: impl FnMut(Item)) {
    let mut at = 0;
    while at < bytes.len() {
        match frame_at(bytes, at, segment, base) {
            Some((frame, len)) => {
                on_item(Item::Frame { offset: base + at as u64, frame });
                at += len;
            }
            None => {
                let next = find_frame(bytes, at + 1, segment).unwrap_or(bytes.len());
                on_item(Item::Damage { offset: base + at as u64, len: (next - at) as u64 });
                at = next;
            }
        }
    }
}

/// Where the first of the `len` bytes from `reader` that are not whole frames with their checksums
/// holding starts, if any: a check of a segment's prefix that is not scanned (not parsed).
pub(super) fn first_bad_frame(mut reader: impl Read, len: u64) -> io::Result<Option<u64>> {
    let mut at = 0;
    let mut frame = Vec::new();
    while at < len {
        if !read_frame(&mut reader, &mut frame, len - at)?.1 {
            return Ok(Some(at));
        }
        at += frame.len() as u64;
    }
    Ok(None)
}

/// The length of the frame the `len` bytes from `reader` begin with, if they begin with a whole
/// one.
pub(super) fn first_frame_len(mut reader: impl Read, len: u64) -> io::Result<Option<u64>> {
    let mut frame = Vec::new();
    Ok(read_frame(&mut reader, &mut frame, len)?.1.then_some(frame.len() as u64))
}

/// Reads the next frame, of at most `remaining` bytes, into `frame`: how many bytes it read,
/// and whether they are a whole frame whose checksum holds.
fn read_frame(reader: &mut impl Read, frame: &mut Vec<u8>, remaining: u64) -> io::Result<(usize, bool)> {
    frame.resize(FRAME_HEADER, 0);
    let mut filled = read_full(reader, frame)?;
    let Some(payload_len) = (filled == FRAME_HEADER).then(|| header_len(frame, remaining)).flatten() else {
        return Ok((filled, false));
    };
    frame.resize(FRAME_HEADER + payload_len, 0);
    filled += read_full(reader, &mut frame[FRAME_HEADER..])?;
    Ok((filled, filled == frame.len() && checksum_holds(frame)))
}

/// The smallest payload: a one-letter tenant, the first position, a count.
const MIN_PAYLOAD: usize = 1 + 1 + 8 + 4;

/// The payload length a frame header announces, if it is plausible and fits in `remaining`
/// bytes. An all-zero header (a file extended but never written) is not a frame.
fn header_len(header: &[u8], remaining: u64) -> Option<usize> {
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let fits = (MIN_PAYLOAD..=MAX_FRAME).contains(&len) && (FRAME_HEADER + len) as u64 <= remaining;
    fits.then_some(len)
}

/// Whether a whole frame's (header and payload) checksum holds.
fn checksum_holds(frame: &[u8]) -> bool {
    let crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    crc32fast::hash(&frame[FRAME_HEADER..]) == crc
}

/// The valid frame starting at `bytes[at]` and its length. Valid means: a plausible header,
/// the whole frame present, its checksum holds, and it decodes with a well-formed tenant name.
fn frame_at(bytes: &[u8], at: usize, segment: u32, base: u64) -> Option<(RecoveredFrame, usize)> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    let len = header_len(header, (bytes.len() - at) as u64)?;
    let frame = &bytes[at..at + FRAME_HEADER + len];
    // Cheap before the checksum: most garbage fails on the tenant name's length or first letter.
    let tenant_len = frame[FRAME_HEADER] as usize;
    let first = *frame.get(FRAME_HEADER + 1)?;
    let tenant_char = first.is_ascii_lowercase() || first.is_ascii_digit() || first == b'-' || first == b'_';
    if tenant_len == 0 || tenant_len > Tenant::MAX_LEN || !tenant_char {
        return None;
    }
    if !checksum_holds(frame) {
        return None;
    }
    let parsed = parse_frame(&frame[FRAME_HEADER..], segment, base + (at + FRAME_HEADER) as u64).ok()?;
    Tenant::new(parsed.tenant.clone()).ok()?;
    Some((parsed, FRAME_HEADER + len))
}

/// The offset of the first valid frame in `bytes` at or after `from`.
fn find_frame(bytes: &[u8], from: usize, segment: u32) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER + MIN_PAYLOAD - 1)).find(|&at| frame_at(bytes, at, segment, 0).is_some())
}

fn parse_frame(payload: &[u8], segment: u32, payload_offset: u64) -> Result<RecoveredFrame, String> {
    let mut c = Cursor::new(payload);
    let n = c.take(1)?[0] as usize;
    let tenant = c.str(n)?;
    let first = c.u64()?;
    let count = c.u32()? as usize;
    let mut events = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let start = c.at;
        let event = read_event(&mut c, false)?;
        let offset = u32::try_from(payload_offset + start as u64).map_err(|_| "segment too large")?;
        let crc = crc32fast::hash(&payload[start..c.at]);
        events.push((event, EventLoc { segment, offset, len: (c.at - start) as u32, crc }));
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

/// Decodes the events at `locs` from `bytes`, which hold the file range starting at `base`,
/// onto `out`.
pub(super) fn decode_run(
    bytes: &[u8],
    base: u32,
    positions: &[u64],
    locs: &[EventLoc],
    out: &mut Vec<SequencedEvent>,
) -> Result<(), String> {
    for (&position, loc) in positions.iter().zip(locs) {
        let start = (loc.offset - base) as usize;
        out.push(decode_at(&bytes[start..start + loc.len as usize], position, loc)?);
    }
    Ok(())
}

/// The event at `position`, from its record (read at `loc`, or a copy of it), checked first.
pub(super) fn decode_at(record: &[u8], position: u64, loc: &EventLoc) -> Result<SequencedEvent, String> {
    if crc32fast::hash(record) != loc.crc {
        return Err(format!("{:010}.log: the event at byte {} fails its checksum", loc.segment, loc.offset));
    }
    Ok(SequencedEvent { position: Position::new(position), event: decode_event(record)? })
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
