//! The export stream, in two encodings of the same records:
//!
//! - **JSON lines** (for people): a header line `{"format":"counterpoint-export","version":1}`,
//!   then one JSON object per line: `{"tenant":T,"head":P}` opens a tenant's log, each event is
//!   the object `counterpoint events` prints, `{"done":T,"events":N,"position":P}` closes the
//!   tenant, `{"end":true,"tenants":N}` ends the stream. An event's data is `{"json":…}` when that
//!   JSON, encoded again, gives back the stored bytes; otherwise `{"base64":…}` holds the exact
//!   bytes (with `json` beside it, for reading, when the data is MessagePack JSON can hold).
//! - **Binary** (for volume): the 8 bytes `CPEXPORT`, the version (u32, big-endian), then blocks
//!   of at most ~256 KiB: length (u32 BE), CRC-32 of the payload (u32 BE), payload. A payload is
//!   a sequence of MessagePack values, a record kind (an integer) before each record: an event is
//!   the map `events/read` streams as `application/msgpack` (data as stored, `bin`). A block is
//!   checked before any of its records is used.
//!
//! Either way a stream that stops before its end record is reported as truncated.

use std::io::{BufRead, Read, Write};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::api::{write_json_with, write_msgpack};
use crate::codec::{data_from_json, json_to_msgpack, msgpack_to_json};
use crate::store::{Event, Position, SequencedEvent, Tenant};

pub const FORMAT_NAME: &str = "counterpoint-export";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CPEXPORT";
/// Bytes gathered before a block (or a run of JSON lines) is written.
const BLOCK: usize = 256 << 10;
/// No block this build writes comes near it; a length past it is damage, not a block to allocate.
const MAX_BLOCK: usize = 64 << 20;

/// How a stream is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// JSON lines, for people.
    Jsonl,
    /// Checksummed blocks of MessagePack records, for volume.
    Binary,
}

/// One record of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A tenant's log begins; `head` is where the export read it up to.
    Tenant { tenant: Tenant, head: Position },
    Event(SequencedEvent),
    /// A tenant's log is complete: `events` events, read up to `position`.
    Done { tenant: Tenant, events: u64, position: Position },
    /// The stream is complete: `tenants` tenants.
    End { tenants: u64 },
}

/// What is wrong with a stream given to `counterpoint import`.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("this is not a Counterpoint export (it starts with {0}); `counterpoint export` writes one")]
    NotAnExport(String),
    #[error("this export has format version {found}; this build reads version {VERSION}")]
    UnsupportedVersion { found: u64 },
    #[error("the stream is truncated: {0}")]
    Truncated(String),
    #[error("block {block} (at byte {offset}) is damaged: its checksum does not match")]
    Checksum { block: u64, offset: u64 },
    #[error("{at}: {detail}")]
    Malformed { at: String, detail: String },
    #[error("reading the stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a stream. Call [`finish`](Self::finish) at the end: it writes the end record and
/// flushes.
pub struct StreamWriter<W: Write> {
    out: W,
    encoding: Encoding,
    buf: Vec<u8>,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(mut out: W, encoding: Encoding) -> std::io::Result<Self> {
        match encoding {
            Encoding::Jsonl => writeln!(out, r#"{{"format":"{FORMAT_NAME}","version":{VERSION}}}"#)?,
            Encoding::Binary => {
                out.write_all(MAGIC)?;
                out.write_all(&VERSION.to_be_bytes())?;
            }
        }
        Ok(StreamWriter { out, encoding, buf: Vec::with_capacity(BLOCK + (BLOCK >> 2)) })
    }

    pub fn tenant(&mut self, tenant: &Tenant, head: Position) -> std::io::Result<()> {
        self.control(KIND_TENANT, &TenantLine { tenant: tenant.clone(), head })
    }

    pub fn event(&mut self, event: &SequencedEvent) -> std::io::Result<()> {
        match self.encoding {
            Encoding::Jsonl => {
                write_json_with(&mut self.buf, event, write_exact_data);
                self.buf.push(b'\n');
            }
            Encoding::Binary => {
                self.buf.push(KIND_EVENT);
                write_msgpack(&mut self.buf, event);
            }
        }
        if self.buf.len() >= BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    pub fn done(&mut self, tenant: &Tenant, events: u64, position: Position) -> std::io::Result<()> {
        self.control(KIND_DONE, &DoneLine { done: tenant.clone(), events, position })
    }

    /// Writes the end record and flushes; returns the output.
    pub fn finish(mut self, tenants: u64) -> std::io::Result<W> {
        self.control(KIND_END, &EndLine { end: true, tenants })?;
        self.flush_block()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn control<T: Serialize>(&mut self, kind: u8, record: &T) -> std::io::Result<()> {
        match self.encoding {
            Encoding::Jsonl => {
                serde_json::to_writer(&mut self.buf, record)?;
                self.buf.push(b'\n');
            }
            Encoding::Binary => {
                self.buf.push(kind);
                rmp_serde::encode::write_named(&mut self.buf, record).map_err(std::io::Error::other)?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.encoding == Encoding::Binary {
            let len = u32::try_from(self.buf.len()).map_err(std::io::Error::other)?;
            self.out.write_all(&len.to_be_bytes())?;
            self.out.write_all(&crc32fast::hash(&self.buf).to_be_bytes())?;
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Record kinds in a binary payload (MessagePack positive fixints).
const KIND_TENANT: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_DONE: u8 = 3;
const KIND_END: u8 = 4;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantLine {
    tenant: Tenant,
    head: Position,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneLine {
    done: Tenant,
    events: u64,
    position: Position,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: bool,
    tenants: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    format: String,
    version: u64,
}

/// `{"json":…}` when it gives back `data` exactly, else `{"base64":…}` (after the JSON, when
/// there is one, for reading: a map's keys come back sorted, a 32-bit float as 64 bits).
fn write_exact_data(out: &mut Vec<u8>, data: &[u8]) {
    let json = msgpack_to_json(data);
    let exact = json.as_ref().is_some_and(|value| json_to_msgpack(value) == data);
    out.push(b'{');
    if let Some(value) = &json {
        out.extend_from_slice(b"\"json\":");
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    if !exact {
        if json.is_some() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"base64\":\"");
        out.extend_from_slice(BASE64.encode(data).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Reads a stream of either encoding (told apart by its first bytes), record by record.
pub struct StreamReader<R: BufRead> {
    input: R,
    encoding: Encoding,
    /// The current block's payload and how far it is read (binary).
    block: Vec<u8>,
    read: usize,
    blocks: u64,
    /// Bytes of the input consumed before the current block (binary), or lines read (JSON).
    offset: u64,
    line: String,
    ended: bool,
}

impl<R: BufRead> StreamReader<R> {
    /// Reads and checks the header.
    pub fn open(mut input: R) -> Result<Self, FormatError> {
        let start = input.fill_buf()?;
        if start.is_empty() {
            return Err(FormatError::NotAnExport("nothing: the input is empty".into()));
        }
        let encoding = if start[0] == b'{' {
            Encoding::Jsonl
        } else if MAGIC.starts_with(&start[..start.len().min(MAGIC.len())]) {
            Encoding::Binary
        } else {
            let shown: Vec<u8> = start.iter().take(8).copied().collect();
            return Err(FormatError::NotAnExport(format!("{:?}", String::from_utf8_lossy(&shown))));
        };
        let mut reader =
            StreamReader { input, encoding, block: Vec::new(), read: 0, blocks: 0, offset: 0, line: String::new(), ended: false };
        match encoding {
            Encoding::Jsonl => {
                let header = reader.next_line()?.ok_or_else(|| FormatError::Truncated("no header line".into()))?;
                let header: HeaderLine = serde_json::from_str(&header).map_err(|e| FormatError::Malformed {
                    at: "line 1".into(),
                    detail: format!("not the header {{\"format\":\"{FORMAT_NAME}\",\"version\":N}}: {e}"),
                })?;
                if header.format != FORMAT_NAME {
                    return Err(FormatError::NotAnExport(format!("a header naming format {:?}", header.format)));
                }
                if header.version != u64::from(VERSION) {
                    return Err(FormatError::UnsupportedVersion { found: header.version });
                }
            }
            Encoding::Binary => {
                let mut header = [0u8; 12];
                read_exact_or(&mut reader.input, &mut header, || FormatError::Truncated("inside the header".into()))?;
                if &header[..8] != MAGIC {
                    return Err(FormatError::NotAnExport(format!("{:?}", String::from_utf8_lossy(&header[..8]))));
                }
                let version = u32::from_be_bytes(header[8..].try_into().expect("4 bytes"));
                if version != VERSION {
                    return Err(FormatError::UnsupportedVersion { found: version.into() });
                }
                reader.offset = 12;
            }
        }
        Ok(reader)
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The next record; `None` after the end record. A stream that stops before it is
    /// [`FormatError::Truncated`]; anything after it is refused.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        let record = match self.encoding {
            Encoding::Jsonl => self.next_json()?,
            Encoding::Binary => self.next_binary()?,
        };
        if let Record::End { .. } = record {
            self.ended = true;
            self.refuse_trailing()?;
        }
        Ok(Some(record))
    }

    fn refuse_trailing(&mut self) -> Result<(), FormatError> {
        let more = match self.encoding {
            Encoding::Jsonl => {
                let mut rest = String::new();
                self.input.read_to_string(&mut rest)?;
                !rest.trim().is_empty()
            }
            Encoding::Binary => self.read < self.block.len() || !self.input.fill_buf()?.is_empty(),
        };
        if more {
            return Err(FormatError::Malformed { at: self.at(), detail: "data after the end record".into() });
        }
        Ok(())
    }

    /// Where the reader is, for errors: `line N` or `block N (byte B)`.
    fn at(&self) -> String {
        match self.encoding {
            Encoding::Jsonl => format!("line {}", self.offset),
            Encoding::Binary => format!("block {} (at byte {})", self.blocks, self.offset),
        }
    }

    fn next_line(&mut self) -> Result<Option<String>, FormatError> {
        self.line.clear();
        if self.input.read_line(&mut self.line)? == 0 {
            return Ok(None);
        }
        self.offset += 1;
        if !self.line.ends_with('\n') {
            return Err(FormatError::Truncated(format!("line {} stops without its newline", self.offset)));
        }
        Ok(Some(std::mem::take(&mut self.line)))
    }

    fn next_json(&mut self) -> Result<Record, FormatError> {
        let Some(line) = self.next_line()? else {
            return Err(FormatError::Truncated(format!("it stops after line {} without its end record", self.offset)));
        };
        let malformed = |detail: String| FormatError::Malformed { at: format!("line {}", self.offset), detail };
        // Parsed twice, the second time straight into the record: through a `Value` a map's
        // keys would come out sorted, and the metadata's order would change.
        let probe: Probe = serde_json::from_str(&line).map_err(|e| malformed(format!("not a JSON object: {e}")))?;
        let record = if probe.event_type.is_some() {
            let event: JsonEvent = serde_json::from_str(&line).map_err(|e| malformed(format!("not an event: {e}")))?;
            let data = event.data.decode().map_err(&malformed)?;
            Record::Event(SequencedEvent {
                position: event.position,
                event: Event { event_type: event.event_type, tags: event.tags, data, metadata: event.metadata.0 },
            })
        } else if probe.tenant.is_some() {
            let line: TenantLine = serde_json::from_str(&line).map_err(|e| malformed(format!("not a tenant line: {e}")))?;
            Record::Tenant { tenant: line.tenant, head: line.head }
        } else if probe.done.is_some() {
            let line: DoneLine = serde_json::from_str(&line).map_err(|e| malformed(format!("not a done line: {e}")))?;
            Record::Done { tenant: line.done, events: line.events, position: line.position }
        } else if probe.end.is_some() {
            let line: EndLine = serde_json::from_str(&line).map_err(|e| malformed(format!("not the end line: {e}")))?;
            Record::End { tenants: line.tenants }
        } else {
            return Err(malformed("neither an event nor a tenant, done or end line".into()));
        };
        Ok(record)
    }

    fn next_binary(&mut self) -> Result<Record, FormatError> {
        if self.read >= self.block.len() {
            self.next_block()?;
        }
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(&self.block[self.read..]));
        let malformed = |detail: String| FormatError::Malformed { at: format!("block {} (at byte {})", self.blocks, self.offset), detail };
        let kind = u8::deserialize(&mut de).map_err(|e| malformed(format!("no record kind: {e}")))?;
        let record = match kind {
            KIND_EVENT => {
                let event = WireEvent::deserialize(&mut de).map_err(|e| malformed(format!("not an event: {e}")))?;
                Record::Event(SequencedEvent {
                    position: event.position,
                    event: Event { event_type: event.event_type, tags: event.tags, data: event.data.0, metadata: event.metadata.0 },
                })
            }
            KIND_TENANT => {
                let line = TenantLine::deserialize(&mut de).map_err(|e| malformed(format!("not a tenant record: {e}")))?;
                Record::Tenant { tenant: line.tenant, head: line.head }
            }
            KIND_DONE => {
                let line = DoneLine::deserialize(&mut de).map_err(|e| malformed(format!("not a done record: {e}")))?;
                Record::Done { tenant: line.done, events: line.events, position: line.position }
            }
            KIND_END => {
                let line = EndLine::deserialize(&mut de).map_err(|e| malformed(format!("not the end record: {e}")))?;
                Record::End { tenants: line.tenants }
            }
            other => return Err(malformed(format!("unknown record kind {other}"))),
        };
        self.read += de.position() as usize;
        Ok(record)
    }

    fn next_block(&mut self) -> Result<(), FormatError> {
        self.offset += (self.block.len() + if self.blocks > 0 { 8 } else { 0 }) as u64;
        self.blocks += 1;
        let mut head = [0u8; 8];
        let (block, offset) = (self.blocks, self.offset);
        if self.input.fill_buf()?.is_empty() {
            return Err(FormatError::Truncated(format!("it stops after block {} without its end record", block - 1)));
        }
        read_exact_or(&mut self.input, &mut head, || FormatError::Truncated(format!("inside the header of block {block} (at byte {offset})")))?;
        let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_BLOCK {
            return Err(FormatError::Malformed { at: format!("block {block} (at byte {offset})"), detail: format!("a block of {len} bytes") });
        }
        self.block.resize(len, 0);
        self.read = 0;
        read_exact_or(&mut self.input, &mut self.block, || {
            FormatError::Truncated(format!("block {block} (at byte {offset}) stops short of its {len} bytes"))
        })?;
        if crc32fast::hash(&self.block) != crc {
            return Err(FormatError::Checksum { block, offset });
        }
        Ok(())
    }
}

fn read_exact_or(input: &mut impl Read, buf: &mut [u8], short: impl FnOnce() -> FormatError) -> Result<(), FormatError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Err(short()),
        Err(err) => Err(err.into()),
    }
}

/// Which record a JSON line is.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    event_type: Option<de::IgnoredAny>,
    tenant: Option<de::IgnoredAny>,
    done: Option<de::IgnoredAny>,
    end: Option<de::IgnoredAny>,
}

/// An event as `write_msgpack` wrote it.
#[derive(Deserialize)]
struct WireEvent {
    position: Position,
    #[serde(rename = "type")]
    event_type: String,
    tags: Vec<String>,
    data: Bytes,
    metadata: Pairs,
}

/// An event as a JSON line.
#[derive(Deserialize)]
struct JsonEvent {
    position: Position,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    data: JsonData,
    #[serde(default)]
    metadata: Pairs,
}

/// `{"base64": …}` (with or without `json` beside it) is the exact bytes; `{"json": …}` alone
/// is encoded as MessagePack.
#[derive(Default, Deserialize)]
struct JsonData(serde_json::Value);

impl JsonData {
    fn decode(self) -> Result<Vec<u8>, String> {
        match self.0 {
            serde_json::Value::Object(mut map) if map.contains_key("base64") => {
                map.remove("json");
                data_from_json(&serde_json::Value::Object(map))
            }
            other => data_from_json(&other),
        }
    }
}

/// A `bin` (or `str`) value's bytes.
struct Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// A string-to-string map, its pairs in the order given.
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SequencedEvent> {
        let sorted = json_to_msgpack(&serde_json::json!({"a": 1, "b": [true, null]}));
        // Keys out of order and a 32-bit float: JSON would not give these bytes back.
        #[derive(Serialize)]
        struct Unsorted {
            z: u8,
            a: u8,
        }
        let unsorted = rmp_serde::to_vec_named(&Unsorted { z: 1, a: 2 }).unwrap();
        let float = rmp_serde::to_vec(&1.5f32).unwrap();
        let mut with_meta = Event::new("Noted").tag("a:1").data(vec![0xc4, 2, 0, 1]);
        with_meta.metadata = vec![("z".into(), "1".into()), ("a".into(), "2".into())];
        vec![
            SequencedEvent { position: Position::new(3), event: Event::new("Placed").tag("order:1").data(sorted) },
            SequencedEvent { position: Position::new(9), event: Event::new("Raw").data(b"not msgpack \xc1".to_vec()) },
            SequencedEvent { position: Position::from_u128(1 << 90), event: Event::new("F").data(float) },
            SequencedEvent { position: Position::from_u128((1 << 90) + 1), event: Event::new("U").data(unsorted) },
            SequencedEvent { position: Position::from_u128((1 << 90) + 2), event: with_meta },
            SequencedEvent { position: Position::from_u128((1 << 90) + 3), event: Event::new("Empty") },
        ]
    }

    fn write(encoding: Encoding, events: &[SequencedEvent]) -> Vec<u8> {
        let tenant = Tenant::new("acme").unwrap();
        let mut writer = StreamWriter::new(Vec::new(), encoding).unwrap();
        writer.tenant(&tenant, Position::new(42)).unwrap();
        for event in events {
            writer.event(event).unwrap();
        }
        writer.done(&tenant, events.len() as u64, Position::new(42)).unwrap();
        writer.finish(1).unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, FormatError> {
        let mut reader = StreamReader::open(bytes)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok(records)
    }

    #[test]
    fn both_encodings_give_back_every_byte() {
        let events = sample();
        for encoding in [Encoding::Jsonl, Encoding::Binary] {
            let records = read_all(&write(encoding, &events)).unwrap();
            let tenant = Tenant::new("acme").unwrap();
            assert_eq!(records[0], Record::Tenant { tenant: tenant.clone(), head: Position::new(42) });
            let read: Vec<SequencedEvent> =
                records.iter().filter_map(|r| if let Record::Event(e) = r { Some(e.clone()) } else { None }).collect();
            assert_eq!(read, events, "{encoding:?}");
            assert_eq!(records[records.len() - 2], Record::Done { tenant, events: events.len() as u64, position: Position::new(42) });
            assert_eq!(records[records.len() - 1], Record::End { tenants: 1 });
        }
        // People read JSON where it is exact, and see it beside the bytes where it is not.
        let text = String::from_utf8(write(Encoding::Jsonl, &events)).unwrap();
        assert!(text.contains(r#""data":{"json":{"a":1,"b":[true,null]}}"#), "{text}");
        assert!(text.contains(r#""data":{"json":1.5,"base64":"yj/AAAA="}"#), "{text}");
    }

    #[test]
    fn damage_is_named() {
        let events = sample();
        let binary = write(Encoding::Binary, &events);
        let jsonl = write(Encoding::Jsonl, &events);
        let err = |bytes: &[u8]| read_all(bytes).unwrap_err();
        for cut in [binary.len() - 1, 30, 12] {
            assert!(matches!(err(&binary[..cut]), FormatError::Truncated(_)), "cut at {cut}: {}", err(&binary[..cut]));
        }
        let mut flipped = binary.clone();
        flipped[40] ^= 1;
        assert!(matches!(err(&flipped), FormatError::Checksum { block: 1, offset: 12 }), "{}", err(&flipped));
        let mut future = binary.clone();
        future[11] = 2;
        assert!(matches!(err(&future), FormatError::UnsupportedVersion { found: 2 }));
        let jsonl_future = String::from_utf8(jsonl.clone()).unwrap().replacen("\"version\":1", "\"version\":7", 1);
        assert_eq!(err(jsonl_future.as_bytes()).to_string(), "this export has format version 7; this build reads version 1");
        let last_line = jsonl[..jsonl.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        assert!(matches!(err(&jsonl[..last_line]), FormatError::Truncated(_)));
        assert!(matches!(err(&jsonl[..jsonl.len() - 3]), FormatError::Truncated(_)));
        assert!(matches!(err(b"PK\x03\x04zip"), FormatError::NotAnExport(_)));
        assert!(matches!(err(b""), FormatError::NotAnExport(_)));
        let mut trailing = jsonl.clone();
        trailing.extend_from_slice(b"{\"tenant\":\"x\",\"head\":\"1\"}\n");
        assert!(err(&trailing).to_string().contains("after the end record"));
        let garbled = String::from_utf8(jsonl).unwrap().replacen("\"type\":\"Raw\"", "\"type\":7", 1);
        assert!(err(garbled.as_bytes()).to_string().starts_with("line 4: not an event"), "{}", err(garbled.as_bytes()));
    }
}
