//! How events go over the wire: `events/read` in JSON pages (as it always was), or streamed whole
//! as NDJSON or MessagePack; the SSE stream's and `counterpoint events`' lines are the same JSON.
//!
//! Every event is written straight from the stored event into the output buffer: no
//! `serde_json::Value` tree per event (that cost ~5 µs an event). JSON gets the data transcoded
//! from MessagePack as it is copied; MessagePack gets it as stored, as a `bin` value.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::schema::{MEDIA_JSON, MEDIA_MSGPACK, MEDIA_NDJSON};
use super::ApiError;
use crate::store::{Position, ReadStream, SequencedEvent};

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

    /// Appends one streamed event (an NDJSON line or a MessagePack map).
    fn write_event(self, out: &mut Vec<u8>, event: &SequencedEvent) {
        match self {
            Format::Json => write_json(out, event),
            Format::Ndjson => {
                write_json(out, event);
                out.push(b'\n');
            }
            Format::Msgpack => write_msgpack(out, event),
        }
    }

    /// Appends the last value of a stream: `{"position": "N"}`, the read's consistency position.
    /// A stream cut short (the store failed mid-read, the connection broke) has none.
    fn write_trailer(self, out: &mut Vec<u8>, position: Position) {
        match self {
            Format::Json | Format::Ndjson => {
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

/// A JSON page: `{"events":[...],"position":"N"}`.
pub fn json_page(events: &[SequencedEvent], position: Position) -> Response {
    let mut out = Vec::with_capacity(16 + events.len() * 160);
    out.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, event);
    }
    out.extend_from_slice(b"],\"position\":\"");
    write_decimal(&mut out, position);
    out.extend_from_slice(b"\"}");
    with_type(Body::from(out), MEDIA_JSON)
}

/// What a streamed read gathers before it hands a chunk to the connection: fewer, larger writes
/// (a store batch is only 512 events), and still a bounded amount of memory per read.
const CHUNK: usize = 256 << 10;

/// The whole read, streamed in `format` (chunked): memory stays at one chunk and one store batch
/// however long the read. A store error mid-stream ends the body with an error, before the
/// trailer: the client sees the read did not complete.
pub fn stream(format: Format, read: ReadStream) -> Response {
    let chunks = futures_util::stream::unfold(Some(read), move |read| async move {
        let mut read = read?;
        let mut out = Vec::with_capacity(CHUNK + (CHUNK >> 2));
        loop {
            match read.next_batch().await {
                Ok(Some(batch)) => {
                    for event in &batch {
                        format.write_event(&mut out, event);
                    }
                    if out.len() >= CHUNK {
                        return Some((Ok(Bytes::from(out)), Some(read)));
                    }
                }
                Ok(None) => {
                    format.write_trailer(&mut out, read.consistency_position());
                    return Some((Ok(Bytes::from(out)), None));
                }
                Err(err) => {
                    tracing::warn!("streamed read cut short: {err}");
                    return Some((Err(err), None));
                }
            }
        }
    });
    with_type(Body::from_stream(chunks), format.media_type())
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

fn json_str(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_decimal(out: &mut Vec<u8>, position: Position) {
    let mut buf = [0u8; 40];
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
    out.extend_from_slice(&buf[i..]);
}

fn msgpack_position(out: &mut Vec<u8>, position: Position) {
    let mut digits = Vec::with_capacity(40);
    write_decimal(&mut digits, position);
    // At most 39 digits: a fixstr.
    out.push(0xa0 | digits.len() as u8);
    out.extend_from_slice(&digits);
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
    let text = std::str::from_utf8(take(input, n)?).map_err(|_| NotJson)?;
    json_str(out, text);
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
