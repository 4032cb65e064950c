//! How events go over the wire: `events/read` in JSON pages (as it always was), or streamed whole
//! as NDJSON or MessagePack; the SSE stream's and `counterpoint events`' lines are the same JSON.
//!
//! Every event is written straight from the stored event into the output buffer: no
//! `serde_json::Value` tree per event (that cost ~5 µs an event). JSON gets the data transcoded
//! from MessagePack as it is copied; MessagePack gets it as stored, as a `bin` value. A read's
//! answer, a JSON page included, goes out in chunks of about 256 KiB as the store's batches come,
//! written into a few buffers that each read reuses once the connection has sent them.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::schema::{MEDIA_JSON, MEDIA_MSGPACK, MEDIA_NDJSON};
use super::ApiError;
use crate::store::{Position, ReadStream, SequencedEvent, StoreError};

/// The encoding a client asked for with `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"events": [...], "position": "N"}`, paged.
    Json,
    /// One event object per line, then `{"position": "N"}`: streamed, no page cap.
    Ndjson,
    /// A MessagePack map per event, then `{"position": "N"}`: streamed, no page cap.
    Msgpack,
}

impl Format {
    /// The format `Accept` prefers (highest `q`, then the client's order); JSON when there is no
    /// `Accept` or it takes anything. Nothing we can produce is `406 not_acceptable`.
    pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
        let mut best: Option<(Format, f32)> = None;
        let mut asked = false;
        for value in headers.get_all(header::ACCEPT) {
            let text = value.to_str().map_err(|_| ApiError::invalid_input("Accept is not ASCII"))?;
            for range in text.split(',') {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
                if media.is_empty() {
                    continue;
                }
                asked = true;
                let mut q = 1.0f32;
                for param in parts {
                    if let Some((name, value)) = param.split_once('=')
                        && name.trim().eq_ignore_ascii_case("q")
                    {
                        // A q that does not parse counts as 0: that range is not taken.
                        q = value.trim().parse().unwrap_or(0.0);
                    }
                }
                let format = match media.as_str() {
                    "*/*" | "application/*" | MEDIA_JSON => Format::Json,
                    MEDIA_NDJSON | "application/ndjson" | "application/jsonl" => Format::Ndjson,
                    MEDIA_MSGPACK | "application/x-msgpack" | "application/vnd.msgpack" => Format::Msgpack,
                    _ => continue,
                };
                if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                    best = Some((format, q));
                }
            }
        }
        match best {
            Some((format, _)) => Ok(format),
            None if !asked => Ok(Format::Json),
            None => Err(ApiError::not_acceptable(format!(
                "events/read answers {MEDIA_JSON} (paged), {MEDIA_NDJSON} or {MEDIA_MSGPACK} (streamed)"
            ))),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => MEDIA_JSON,
            Format::Ndjson => MEDIA_NDJSON,
            Format::Msgpack => MEDIA_MSGPACK,
        }
    }

    /// What a read's answer starts with: `{"events":[` for a JSON page, nothing for a stream.
    fn write_opening(self, out: &mut Vec<u8>) {
        if self == Format::Json {
            out.extend_from_slice(b"{\"events\":[");
        }
    }

    /// Appends one event: an element of a JSON page's `events` (`first` of them, or after a
    /// comma), an NDJSON line or a MessagePack map.
    fn write_event(self, out: &mut Vec<u8>, event: &SequencedEvent, first: bool) {
        match self {
            Format::Json => {
                if !first {
                    out.push(b',');
                }
                write_json(out, event);
            }
            Format::Ndjson => {
                write_json(out, event);
                out.push(b'\n');
            }
            Format::Msgpack => write_msgpack(out, event),
        }
    }

    /// Appends what ends a read's answer, its consistency position: `],"position":"N"}` closing
    /// a JSON page; a last value `{"position": "N"}` of a stream. A stream cut short (the store
    /// failed mid-read, the connection broke) has none.
    fn write_trailer(self, out: &mut Vec<u8>, position: Position) {
        match self {
            Format::Json => {
                out.extend_from_slice(b"],\"position\":\"");
                write_decimal(out, position);
                out.extend_from_slice(b"\"}");
            }
            Format::Ndjson => {
                out.extend_from_slice(b"{\"position\":\"");
                write_decimal(out, position);
                out.extend_from_slice(b"\"}\n");
            }
            Format::Msgpack => {
                out.push(0x81);
                msgpack_str(out, "position");
                msgpack_position(out, position);
            }
        }
    }
}

/// What a read gathers before it hands a chunk to the connection: fewer, larger writes (a store
/// batch is only 512 events), and still a bounded amount of memory per read.
const CHUNK: usize = 256 << 10;

/// Chunks a read keeps for reuse: the connection holds one or two while it writes them.
const KEPT_CHUNKS: usize = 4;

/// The output buffers of one read. A chunk handed to the connection comes back here when the
/// connection drops it (sent), and the next chunk is written into it: a long read cycles through
/// a few buffers instead of asking the allocator for fresh memory, and the kernel for fresh
/// zeroed pages, every 256 KiB.
#[derive(Clone, Default)]
struct Buffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        let kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        kept.unwrap_or_else(|| Vec::with_capacity(CHUNK + (CHUNK >> 2)))
    }

    /// `buf` as a chunk of the body, coming back to this read's buffers once sent.
    fn chunk(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Chunk { buf, home: self.clone() })
    }
}

struct Chunk {
    buf: Vec<u8>,
    home: Buffers,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        // A buffer grown far past a chunk (a read of huge events) is not kept.
        if buf.capacity() > 4 * CHUNK {
            return;
        }
        buf.clear();
        let mut kept = self.home.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() < KEPT_CHUNKS {
            kept.push(buf);
        }
    }
}

/// Where a read's answer is: the read, a first batch taken before the answer began, whether an
/// event has been written yet (JSON separates them with commas).
struct Answer {
    format: Format,
    read: ReadStream,
    first_batch: Option<Vec<SequencedEvent>>,
    opened: bool,
    any_event: bool,
    buffers: Buffers,
}

/// The answer to a read in `format`, chunked: a JSON page (the caller limits the read), or the
/// whole read as NDJSON or MessagePack. Memory stays at a few chunks and one store batch however
/// long the read. The first batch is read before the answer starts, so a read that fails at once
/// is an error status; a store error later ends the body with an error before the position: the
/// client sees the read did not complete.
pub async fn answer(format: Format, mut read: ReadStream) -> Result<Response, StoreError> {
    let first_batch = read.next_batch().await?;
    let answer = Answer { format, read, first_batch, opened: false, any_event: false, buffers: Buffers::default() };
    let chunks = futures_util::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        let format = answer.format;
        let mut out = answer.buffers.take();
        if !answer.opened {
            format.write_opening(&mut out);
            answer.opened = true;
        }
        loop {
            let batch = match answer.first_batch.take() {
                Some(batch) => Ok(Some(batch)),
                None => answer.read.next_batch().await,
            };
            match batch {
                Ok(Some(batch)) => {
                    for event in &batch {
                        format.write_event(&mut out, event, !answer.any_event);
                        answer.any_event = true;
                    }
                    if out.len() >= CHUNK {
                        let chunk = answer.buffers.chunk(out);
                        return Some((Ok(chunk), Some(answer)));
                    }
                }
                Ok(None) => {
                    format.write_trailer(&mut out, answer.read.consistency_position());
                    return Some((Ok(answer.buffers.chunk(out)), None));
                }
                Err(err) => {
                    tracing::warn!("streamed read cut short: {err}");
                    return Some((Err(err), None));
                }
            }
        }
    });
    Ok(with_type(Body::from_stream(chunks), format.media_type()))
}

fn with_type(body: Body, media: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(media))], body).into_response()
}

/// One event as a JSON object (the SSE stream's `data`, `counterpoint events`' lines).
pub fn event_json(event: &SequencedEvent) -> String {
    let mut out = Vec::with_capacity(160);
    write_json(&mut out, event);
    // Only valid UTF-8 is written: strings are checked, the rest is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// `{"position":"N","type":…,"tags":[…],"data":{"json":…}|{"base64":"…"},"metadata":{…}}`:
/// data as JSON when it is MessagePack JSON can hold, else base64.
pub fn write_json(out: &mut Vec<u8>, event: &SequencedEvent) {
    write_json_with(out, event, write_data_json);
}

/// As [`write_json`], with `data` written by `write_data` (`counterpoint export` adds the exact
/// bytes where the JSON form would not give them back).
pub fn write_json_with(out: &mut Vec<u8>, event: &SequencedEvent, write_data: impl FnOnce(&mut Vec<u8>, &[u8])) {
    out.extend_from_slice(b"{\"position\":\"");
    write_decimal(out, event.position);
    out.extend_from_slice(b"\",\"type\":");
    json_str(out, &event.event.event_type);
    out.extend_from_slice(b",\"tags\":[");
    for (i, tag) in event.event.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, tag);
    }
    out.extend_from_slice(b"],\"data\":");
    write_data(out, &event.event.data);
    out.extend_from_slice(b",\"metadata\":{");
    for (i, (key, value)) in distinct_metadata(&event.event.metadata).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, key);
        out.push(b':');
        json_str(out, value);
    }
    out.extend_from_slice(b"}}");
}

/// A map of five: `position` (decimal string), `type`, `tags`, `data` (`bin`, the stored bytes),
/// `metadata` (string to string).
pub fn write_msgpack(out: &mut Vec<u8>, event: &SequencedEvent) {
    out.push(0x85);
    msgpack_str(out, "position");
    msgpack_position(out, event.position);
    msgpack_str(out, "type");
    msgpack_str(out, &event.event.event_type);
    msgpack_str(out, "tags");
    msgpack_len(out, event.event.tags.len(), 0x90, 0xdc);
    for tag in &event.event.tags {
        msgpack_str(out, tag);
    }
    msgpack_str(out, "data");
    msgpack_sized(out, &event.event.data, None, [0xc4, 0xc5, 0xc6]);
    msgpack_str(out, "metadata");
    msgpack_len(out, distinct_metadata(&event.event.metadata).count(), 0x80, 0xde);
    for (key, value) in distinct_metadata(&event.event.metadata) {
        msgpack_str(out, key);
        msgpack_str(out, value);
    }
}

/// Metadata pairs with a repeated key given once, the last value winning (as a JSON object built
/// from the pairs would have it), so that both encodings hold valid maps.
fn distinct_metadata(metadata: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    metadata.iter().enumerate().filter(|(i, (key, _))| !metadata[i + 1..].iter().any(|(later, _)| later == key)).map(|(_, pair)| pair)
}

/// `text` as a JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text.as_bytes(), 0xff) {
        quoted(out, text.as_bytes());
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether every byte is at most `max` and none needs escaping in a JSON string (`"`, `\`, the
/// control characters). Every byte is looked at (no early exit), which lets the compiler check
/// many at once.
fn needs_no_escape(bytes: &[u8], max: u8) -> bool {
    bytes.iter().fold(true, |clean, &b| clean & (b >= 0x20) & (b <= max) & (b != b'"') & (b != b'\\'))
}

fn quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

fn write_decimal(out: &mut Vec<u8>, position: Position) {
    let mut buf = [0u8; 40];
    out.extend_from_slice(decimal(position, &mut buf));
}

/// The decimal digits of `position`, written at the end of `buf`.
fn decimal(position: Position, buf: &mut [u8; 40]) -> &[u8] {
    let mut i = buf.len();
    // u128 division is slow; positions almost always fit in 64 bits.
    match u64::try_from(position.get()) {
        Ok(mut n) => loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        },
        Err(_) => {
            let mut n = position.get();
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
    }
    &buf[i..]
}

fn msgpack_position(out: &mut Vec<u8>, position: Position) {
    let mut buf = [0u8; 40];
    let digits = decimal(position, &mut buf);
    // At most 39 digits: a fixstr.
    out.push(0xa0 | digits.len() as u8);
    out.extend_from_slice(digits);
}

fn msgpack_str(out: &mut Vec<u8>, text: &str) {
    msgpack_sized(out, text.as_bytes(), Some(0xa0), [0xd9, 0xda, 0xdb]);
}

/// A str or bin: its header (`fix` | length below 32 when there is a fix form, else the 8-, 16-
/// or 32-bit form in `markers`), then its bytes. Events are far below 4 GiB (the store's limit).
fn msgpack_sized(out: &mut Vec<u8>, bytes: &[u8], fix: Option<u8>, markers: [u8; 3]) {
    match (bytes.len(), fix) {
        (n, Some(fix)) if n < 32 => out.push(fix | n as u8),
        (n, _) if n <= 0xff => out.extend_from_slice(&[markers[0], n as u8]),
        (n, _) if n <= 0xffff => {
            out.push(markers[1]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        (n, _) => {
            out.push(markers[2]);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

/// An array or map header: `fix` | n below 16, else the 16- or 32-bit form (`wide`, `wide + 1`).
fn msgpack_len(out: &mut Vec<u8>, n: usize, fix: u8, wide: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// `{"json":…}` when `data` is one MessagePack value JSON can hold, else `{"base64":"…"}`: what
/// `codec::msgpack_to_json` decides, without the `Value` in between.
fn write_data_json(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b"{\"json\":");
    let mut input = data;
    if !data.is_empty() && transcode(&mut input, out, 0).is_ok() && input.is_empty() {
        out.push(b'}');
        return;
    }
    out.truncate(start);
    out.extend_from_slice(b"{\"base64\":\"");
    out.extend_from_slice(BASE64.encode(data).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Data that is not one MessagePack value JSON can hold.
struct NotJson;

/// Deeper data is sent as base64 rather than risk the stack on hostile nesting.
const MAX_DEPTH: usize = 512;

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], NotJson> {
    if input.len() < n {
        return Err(NotJson);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_len(input: &mut &[u8], bytes: usize) -> Result<usize, NotJson> {
    let raw = take(input, bytes)?;
    Ok(raw.iter().fold(0usize, |n, b| (n << 8) | *b as usize))
}

/// Copies one MessagePack value from `input` to `out` as JSON. Bytes (`bin`), extension types and
/// non-string map keys have no JSON form: `NotJson`, as `serde_json::Value` would refuse them.
fn transcode(input: &mut &[u8], out: &mut Vec<u8>, depth: usize) -> Result<(), NotJson> {
    if depth > MAX_DEPTH {
        return Err(NotJson);
    }
    let marker = take(input, 1)?[0];
    let be = |input: &mut &[u8], n: usize| -> Result<[u8; 8], NotJson> {
        let raw = take(input, n)?;
        let mut buf = [0u8; 8];
        buf[8 - n..].copy_from_slice(raw);
        Ok(buf)
    };
    match marker {
        0x00..=0x7f => number(out, marker as u64),
        0x80..=0x8f => map(input, out, (marker & 0x0f) as usize, depth)?,
        0x90..=0x9f => array(input, out, (marker & 0x0f) as usize, depth)?,
        0xa0..=0xbf => string(input, out, (marker & 0x1f) as usize)?,
        0xc0 => out.extend_from_slice(b"null"),
        0xc2 => out.extend_from_slice(b"false"),
        0xc3 => out.extend_from_slice(b"true"),
        0xca => {
            let raw = take(input, 4)?;
            float(out, f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as f64);
        }
        0xcb => float(out, f64::from_be_bytes(be(input, 8)?)),
        0xcc => number(out, u64::from_be_bytes(be(input, 1)?)),
        0xcd => number(out, u64::from_be_bytes(be(input, 2)?)),
        0xce => number(out, u64::from_be_bytes(be(input, 4)?)),
        0xcf => number(out, u64::from_be_bytes(be(input, 8)?)),
        0xd0 => number(out, take(input, 1)?[0] as i8 as i64),
        0xd1 => number(out, i16::from_be_bytes(be(input, 2)?[6..].try_into().map_err(|_| NotJson)?) as i64),
        0xd2 => number(out, i32::from_be_bytes(be(input, 4)?[4..].try_into().map_err(|_| NotJson)?) as i64),
        0xd3 => number(out, i64::from_be_bytes(be(input, 8)?)),
        0xd9 => {
            let n = take_len(input, 1)?;
            string(input, out, n)?
        }
        0xda => {
            let n = take_len(input, 2)?;
            string(input, out, n)?
        }
        0xdb => {
            let n = take_len(input, 4)?;
            string(input, out, n)?
        }
        0xdc => {
            let n = take_len(input, 2)?;
            array(input, out, n, depth)?
        }
        0xdd => {
            let n = take_len(input, 4)?;
            array(input, out, n, depth)?
        }
        0xde => {
            let n = take_len(input, 2)?;
            map(input, out, n, depth)?
        }
        0xdf => {
            let n = take_len(input, 4)?;
            map(input, out, n, depth)?
        }
        0xe0..=0xff => number(out, marker as i8 as i64),
        // 0xc1 (never used), bin, ext.
        _ => return Err(NotJson),
    }
    Ok(())
}

fn number(out: &mut Vec<u8>, n: impl serde::Serialize) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// As `serde_json::Value` has it: finite floats as the shortest round-trip form, NaN and the
/// infinities as `null`.
fn float(out: &mut Vec<u8>, f: f64) {
    let _ = serde_json::to_writer(&mut *out, &f);
}

fn string(input: &mut &[u8], out: &mut Vec<u8>, n: usize) -> Result<(), NotJson> {
    let bytes = take(input, n)?;
    // Plain ASCII (most keys and values) is valid UTF-8 and needs no escape: copied as it is.
    if needs_no_escape(bytes, 0x7f) {
        quoted(out, bytes);
    } else {
        json_str(out, std::str::from_utf8(bytes).map_err(|_| NotJson)?);
    }
    Ok(())
}

fn array(input: &mut &[u8], out: &mut Vec<u8>, n: usize, depth: usize) -> Result<(), NotJson> {
    out.push(b'[');
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        transcode(input, out, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

fn map(input: &mut &[u8], out: &mut Vec<u8>, n: usize, depth: usize) -> Result<(), NotJson> {
    out.push(b'{');
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let key_len = match take(input, 1)?[0] {
            marker @ 0xa0..=0xbf => (marker & 0x1f) as usize,
            0xd9 => take_len(input, 1)?,
            0xda => take_len(input, 2)?,
            0xdb => take_len(input, 4)?,
            _ => return Err(NotJson),
        };
        string(input, out, key_len)?;
        out.push(b':');
        transcode(input, out, depth + 1)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::codec::{event_to_json, json_to_msgpack};
    use crate::store::Event;

    fn event(data: Vec<u8>) -> SequencedEvent {
        let mut event = Event::new("Noted").tag("a:1").tag("b:\"2\"").data(data);
        event.metadata = vec![("k".into(), "v1".into()), ("x".into(), "y".into()), ("k".into(), "v2".into())];
        SequencedEvent { position: Position::new(17), event }
    }

    /// The direct encoder says what the `Value` one said, for data JSON can and cannot hold.
    #[test]
    fn json_matches_the_value_encoder() {
        let nested = json!({"s": "é\n\"", "n": -5, "big": u64::MAX, "f": 1.5, "neg": i64::MIN, "a": [null, true, false, {"z": []}], "o": {}});
        let mut deep = json!(1);
        for _ in 0..600 {
            deep = json!([deep]);
        }
        // (data, deeper than we transcode: the Value encoder takes it as JSON, we send base64)
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (json_to_msgpack(&nested), false),
            (json_to_msgpack(&json!("plain")), false),
            (rmp_serde::to_vec(&(1.25f32, -1i8, 300u16, -40_000i32, 70_000u32)).unwrap(), false),
            (Vec::new(), false),
            (vec![0xc4, 2, 1, 2], false),    // bin: not JSON
            (vec![0x81, 0x01, 0x02], false), // integer key
            (vec![0x92, 0x01], false),       // cut short
            (vec![0x01, 0x02], false),       // two values
            (vec![0xa2, 0xff, 0xfe], false), // not UTF-8
            (vec![0xc1], false),             // never used
            (json_to_msgpack(&deep), true),
        ];
        for (data, too_deep) in cases {
            let event = event(data.clone());
            let ours: Value = serde_json::from_str(&event_json(&event)).unwrap();
            let mut expected = event_to_json(&event);
            if too_deep {
                expected["data"] = json!({"base64": BASE64.encode(&data)});
            }
            assert_eq!(ours, expected, "data {data:02x?}");
        }
    }

    #[test]
    fn msgpack_passes_data_through() {
        let data = vec![0xc4, 3, 9, 8, 7];
        let mut out = Vec::new();
        write_msgpack(&mut out, &event(data.clone()));
        Format::Msgpack.write_trailer(&mut out, Position::from_u128(u64::MAX as u128 + 1));
        #[derive(serde::Deserialize)]
        struct Wire {
            position: String,
            #[serde(rename = "type")]
            event_type: String,
            tags: Vec<String>,
            #[serde(with = "serde_bytes_vec")]
            data: Vec<u8>,
            metadata: std::collections::BTreeMap<String, String>,
        }
        mod serde_bytes_vec {
            pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Vec<u8>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                        Ok(v.to_vec())
                    }
                }
                d.deserialize_bytes(V)
            }
        }
        let mut de = rmp_serde::Deserializer::new(&out[..]);
        let wire: Wire = serde::Deserialize::deserialize(&mut de).unwrap();
        assert_eq!((wire.position.as_str(), wire.event_type.as_str()), ("17", "Noted"));
        assert_eq!(wire.tags, ["a:1", "b:\"2\""]);
        assert_eq!(wire.data, data);
        assert_eq!(wire.metadata.into_iter().collect::<Vec<_>>(), [("k".into(), "v2".into()), ("x".into(), "y".into())]);
        let trailer: std::collections::BTreeMap<String, String> = serde::Deserialize::deserialize(&mut de).unwrap();
        assert_eq!(trailer["position"], "18446744073709551616");
        assert!(de.into_inner().is_empty());
    }

    /// The answer to a read of `events` in `format`, frame by frame: each frame is dropped once
    /// copied, as a connection does once it has sent it, so its buffer is free for reuse.
    /// Returns the body and the frames' addresses.
    async fn answer_of(format: Format, events: Vec<Event>) -> (Vec<u8>, Vec<*const u8>, Position) {
        use http_body_util::BodyExt;
        use crate::store::{EventStore, MemoryStore, Query, ReadOptions, Tenant};
        let store = MemoryStore::new();
        let tenant = Tenant::new("t").unwrap();
        let head = if events.is_empty() { Position::ZERO } else { *store.append(&tenant, events, vec![]).await.unwrap().last().unwrap() };
        let read = store.read(&tenant, Query::all(), ReadOptions::default()).await.unwrap();
        let response = answer(format, read).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], format.media_type());
        let (mut body, mut whole, mut addresses) = (response.into_body(), Vec::new(), Vec::new());
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            whole.extend_from_slice(&data);
            addresses.push(data.as_ptr());
        }
        (whole, addresses, head)
    }

    /// Events for three chunks: each store batch (512 events of ~650 bytes) fills one; data JSON
    /// can hold (escapes included) and, now and then, cannot.
    fn many() -> Vec<Event> {
        (0..1500u32)
            .map(|i| {
                let data = if i % 97 == 0 { vec![0xc1, i as u8] } else { json_to_msgpack(&json!({"i": i, "pad": "é".repeat(300), "q": "\"\n"})) };
                Event::new("Noted").tag(format!("n:{i}")).data(data)
            })
            .collect()
    }

    /// A read longer than a chunk comes whole, in order, in each format: what the encoders write
    /// for its events one after another, then its position; and its chunks reuse the buffers of
    /// those already sent.
    #[tokio::test]
    async fn a_long_answer_is_whole_and_reuses_its_buffers() {
        let events = many();
        for format in [Format::Json, Format::Ndjson, Format::Msgpack] {
            let (body, addresses, head) = answer_of(format, events.clone()).await;
            let mut expected = Vec::new();
            format.write_opening(&mut expected);
            for (i, event) in events.iter().enumerate() {
                let event = SequencedEvent { position: Position::new(i as u64 + 1), event: event.clone() };
                format.write_event(&mut expected, &event, i == 0);
            }
            format.write_trailer(&mut expected, head);
            assert!(body == expected, "{format:?}: the answer is not the events' encodings in order");
            assert!(addresses.len() >= 3, "{format:?}: {} chunks", addresses.len());
            // The second chunk is written once the first is sent: into the first one's buffer.
            assert_eq!(addresses[1], addresses[0], "{format:?}: a sent chunk's buffer is reused");
        }
        // The JSON page parses as the page it always was.
        let (body, _, head) = answer_of(Format::Json, events.clone()).await;
        let page: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["position"], head.to_string());
        let listed = page["events"].as_array().unwrap();
        assert_eq!(listed.len(), events.len());
        assert_eq!(listed[1], serde_json::from_str::<Value>(&event_json(&SequencedEvent { position: Position::new(2), event: events[1].clone() })).unwrap());
        assert_eq!(listed[97]["data"], json!({"base64": BASE64.encode([0xc1, 97])}));
        assert_eq!(listed[98]["data"]["json"]["q"], "\"\n");
    }

    #[tokio::test]
    async fn an_empty_read_answers_its_position_alone() {
        let (json, _, _) = answer_of(Format::Json, Vec::new()).await;
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"events":[],"position":"0"}"#);
        let (ndjson, _, _) = answer_of(Format::Ndjson, Vec::new()).await;
        assert_eq!(String::from_utf8(ndjson).unwrap(), "{\"position\":\"0\"}\n");
        let (msgpack, _, _) = answer_of(Format::Msgpack, Vec::new()).await;
        let trailer: std::collections::BTreeMap<String, String> = rmp_serde::from_slice(&msgpack).unwrap();
        assert_eq!(trailer["position"], "0");
    }

    /// Strings are escaped as serde_json escapes them, on the fast path (nothing to escape) and
    /// off it; MessagePack strings that are not UTF-8 make the data base64.
    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for text in ["", "plain", "with \"quotes\"", "back\\slash", "tab\tnew\nline\u{1}", "é ü 漢字", "del \u{7f}", &"x".repeat(100)] {
            let mut ours = Vec::new();
            json_str(&mut ours, text);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(text).unwrap(), "{text:?}");
            let mut transcoded = Vec::new();
            let data = json_to_msgpack(&json!(text));
            assert!(transcode(&mut &data[..], &mut transcoded, 0).is_ok());
            assert_eq!(String::from_utf8(transcoded).unwrap(), serde_json::to_string(text).unwrap(), "{text:?} from MessagePack");
        }
        let mut out = Vec::new();
        assert!(transcode(&mut &[0xa2, b'a', 0xff][..], &mut out, 0).is_err(), "not UTF-8");
    }

    #[test]
    fn accept_picks_a_format_or_refuses() {
        let pick = |accept: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            }
            Format::negotiate(&headers).map_err(|e| e.code)
        };
        assert_eq!(pick(None), Ok(Format::Json));
        assert_eq!(pick(Some("*/*")), Ok(Format::Json));
        assert_eq!(pick(Some("application/x-ndjson")), Ok(Format::Ndjson));
        assert_eq!(pick(Some("Application/MsgPack; charset=x")), Ok(Format::Msgpack));
        assert_eq!(pick(Some("application/json;q=0.5, application/msgpack")), Ok(Format::Msgpack));
        assert_eq!(pick(Some("text/html, application/x-ndjson;q=0.1")), Ok(Format::Ndjson));
        assert_eq!(pick(Some("application/msgpack;q=0")), Err("not_acceptable"));
        assert_eq!(pick(Some("text/csv")), Err("not_acceptable"));
    }
}
