//! Long reads over HTTP (`bench http`, or alone as `bench http-reads`): the first 1,000,000
//! events of a log, loaded straight into the store before the server starts, read by one client
//! on one connection.
//!
//! - `full_read_msgpack_events_per_s`: streamed whole as MessagePack (`Accept:
//!   application/msgpack`);
//! - `full_read_ndjson_events_per_s`: streamed whole as NDJSON;
//! - `full_read_events_per_s`: the faster of those two in the run (the target's key);
//! - `full_read_json_events_per_s`: JSON pages of 10,000, each asked after the last one's
//!   position, as a client pages through a log.
//!
//! The client decodes every event as a client of the API would, into borrowed fields, with no
//! tree per event: position (parsed, and checked to increase), type, tags, metadata, and the
//! data (MessagePack: the stored bytes, borrowed; JSON: the inline value, parsed through and
//! skipped). A stream is decoded frame by frame as it arrives (a value cut by a frame's end is
//! completed by the next frame); a JSON page when it is whole. Each read is timed from its request
//! to its last event decoded.
//!
//! Beside each rate, the CPU time the read took per event, from the kernel's per-thread counters:
//! the server's (`*_server_ns_per_event`: store, encoding, sending) and the client's
//! (`*_client_ns_per_event`: receiving, decoding). On a shared 2-core machine these are steadier
//! than the rates, and they say what bounds a rate: the two sides run in parallel at best, so a
//! read cannot go faster than 10^9 / max(server, client) events a second with a core each, nor
//! faster than 2 × 10^9 / (server + client) on two cores.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use super::{config, Http, Server};
use crate::bench::{Backend, Report};
use crate::codec::json_to_msgpack;
use crate::store::{EmbeddedStore, Event, EventStore as _, Tenant};

const READ_EVENTS: u64 = 1_000_000;
const PAGE: u64 = 10_000;

/// `bench http-reads`: only the long reads of `bench http` (its `full_read_*` keys), on the
/// embedded store, to measure them alone and more often.
pub async fn http_reads(scratch: &Path) -> anyhow::Result<Report> {
    Backend::embedded_only("http-reads")?;
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    let mut report = Report::new("http-reads");
    full_reads(&scratch.join("reads"), "requests_per_second = 10000000\nburst = 10000000\n", &mut report).await?;
    let _ = std::fs::remove_dir_all(scratch);
    Ok(report)
}

/// Loads `READ_EVENTS` order events into a fresh embedded store in `data` (directly: faster than
/// any API), then starts a server on it and reads them all over HTTP in each format.
pub(super) async fn full_reads(data: &Path, limits: &str, report: &mut Report) -> anyhow::Result<()> {
    {
        let store = EmbeddedStore::open(data.join("events"))?;
        let tenant = Tenant::new("bench")?;
        let mut loaded = 0;
        while loaded < READ_EVENTS {
            let n = (READ_EVENTS - loaded).min(10_000);
            let events = (loaded..loaded + n)
                .map(|i| {
                    let data = json!({"order_id": format!("o-{i}"), "customer_id": format!("c-{}", i % 1000), "total": i % 10_000});
                    Event::new("OrderPlaced").tag(format!("order_id:o-{i}")).tag(format!("customer_id:c-{}", i % 1000)).data(json_to_msgpack(&data))
                })
                .collect();
            store.append(&tenant, events, vec![]).await?;
            loaded += n;
        }
    } // closed: the server takes the directory
    let server = Server::start(data, &config(data, &[("bench".to_string(), limits.to_string())]))?;
    let client = Http::new(&server.address);
    client.read("application/msgpack", &json!({"limit": 10_000})).await?; // warm up

    let msgpack = Measured::run(&server, || read_msgpack(&client)).await?;
    msgpack.report(report, "msgpack", "streamed as MessagePack");
    let ndjson = Measured::run(&server, || read_ndjson(&client)).await?;
    ndjson.report(report, "ndjson", "streamed as NDJSON");
    let (fastest, rate) = if msgpack.rate() >= ndjson.rate() { ("MessagePack", msgpack.rate()) } else { ("NDJSON", ndjson.rate()) };
    report.add("full_read_events_per_s", rate, format!("the faster of the two in this run: {fastest} (target >= 2000000)"));
    let pages = Measured::run(&server, || read_json_pages(&client)).await?;
    pages.report(report, "json", "in JSON pages of 10,000 (target >= 1000000)");
    server.stop()?;
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}

/// One read: its events and bytes, how long it took, and the CPU time each side spent on it.
struct Measured {
    events: u64,
    bytes: u64,
    seconds: f64,
    server_ns: u64,
    client_ns: u64,
}

impl Measured {
    async fn run<F: Future<Output = anyhow::Result<(u64, u64)>>>(server: &Server, read: impl FnOnce() -> F) -> anyhow::Result<Measured> {
        let (server_before, client_before) = (cpu_ns(server.pid())?, cpu_ns(std::process::id())?);
        let start = Instant::now();
        let (events, bytes) = read().await?;
        let seconds = start.elapsed().as_secs_f64();
        let (server_after, client_after) = (cpu_ns(server.pid())?, cpu_ns(std::process::id())?);
        if events != READ_EVENTS {
            bail!("the read gave {events} events, not {READ_EVENTS}");
        }
        Ok(Measured {
            events,
            bytes,
            seconds,
            server_ns: server_after.saturating_sub(server_before),
            client_ns: client_after.saturating_sub(client_before),
        })
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn report(&self, report: &mut Report, key: &str, how: &str) {
        let (server, client) = (self.server_ns as f64 / self.events as f64, self.client_ns as f64 / self.events as f64);
        report.add(
            &format!("full_read_{key}_events_per_s"),
            self.rate(),
            format!("first {} events over HTTP, one client, {how}, {:.0} MB", self.events, self.bytes as f64 / 1e6),
        );
        report.add(&format!("full_read_{key}_server_ns_per_event"), server, "CPU time of the server per event read");
        report.add(&format!("full_read_{key}_client_ns_per_event"), client, "CPU time of the client per event decoded");
    }
}

/// The CPU time process `pid` has used so far, in nanoseconds: the sum over its threads of the
/// first field of `/proc/<pid>/task/<tid>/schedstat` (time on a CPU). Threads that ended are
/// not counted; a read's threads all live through it.
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("the threads of process {pid}"))? {
        // A thread may end between the listing and the read: it is skipped.
        if let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) {
            total += text.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// One value of a read as a client takes it: an event, or (no `type`) the read's position
/// that ends a stream. Strings are borrowed from the received bytes where they have no escapes.
/// `D` is what the data is taken as: the stored bytes in MessagePack; in JSON the inline value,
/// parsed through and skipped.
#[derive(Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
struct Wire<'a, D> {
    #[serde(borrow)]
    position: Cow<'a, str>,
    #[serde(rename = "type", borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tags: Vec<Cow<'a, str>>,
    #[serde(default)]
    data: Option<D>,
    #[serde(borrow, default)]
    metadata: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

/// What the client has taken so far: events in increasing positions, then the read's position.
#[derive(Default)]
struct Tally {
    events: u64,
    last: u128,
    position: Option<u128>,
}

impl Tally {
    fn take<D>(&mut self, value: Wire<'_, D>) -> anyhow::Result<()> {
        if let Some(at) = self.position {
            bail!("a value after the read's position {at}");
        }
        let position: u128 = value.position.parse().with_context(|| format!("position {:?}", value.position))?;
        if value.event_type.is_none() {
            if position < self.last {
                bail!("the read's position {position} is before its last event {}", self.last);
            }
            self.position = Some(position);
            return Ok(());
        }
        if position <= self.last {
            bail!("event {position} came after event {}", self.last);
        }
        // Every event of this log has tags and data (and no metadata).
        if value.tags.len() != 2 || value.data.is_none() || !value.metadata.is_empty() {
            bail!("event {position} is not as stored: {} tags, data {}", value.tags.len(), value.data.is_some());
        }
        self.last = position;
        self.events += 1;
        Ok(())
    }

    /// The events of a stream that ended with its position, which a complete read puts at or
    /// after its last event.
    fn finished(&self, what: &str) -> anyhow::Result<u64> {
        if self.position.is_none() {
            bail!("the {what} stream ended without the read's position, after {} events", self.events);
        }
        Ok(self.events)
    }
}

/// Bytes of a value cut by a frame's end, kept until the next frame completes it.
#[derive(Default)]
struct Pending(Vec<u8>);

impl Pending {
    /// Decodes every complete value of `frame` (after what was pending) with `values`, which
    /// returns how many bytes it consumed; keeps the rest.
    fn feed(&mut self, frame: &[u8], values: impl FnOnce(&[u8]) -> anyhow::Result<usize>) -> anyhow::Result<()> {
        if self.0.is_empty() {
            let used = values(frame)?;
            self.0.extend_from_slice(&frame[used..]);
        } else {
            // Only a value cut by the previous frame's end is copied, with this frame.
            self.0.extend_from_slice(frame);
            let joined = std::mem::take(&mut self.0);
            let used = values(&joined)?;
            self.0.extend_from_slice(&joined[used..]);
        }
        Ok(())
    }
}

/// The whole log streamed as MessagePack: (events, bytes).
async fn read_msgpack(client: &Http) -> anyhow::Result<(u64, u64)> {
    let (mut tally, mut pending) = (Tally::default(), Pending::default());
    let bytes = client
        .read_frames("application/msgpack", &json!({"limit": READ_EVENTS}), |frame| {
            pending.feed(frame, |bytes| {
                let mut reader = Msgpack { rest: bytes };
                while !reader.rest.is_empty() {
                    let before = reader.rest;
                    match reader.value() {
                        Ok(value) => tally.take(value)?,
                        Err(Cut::Short) => {
                            reader.rest = before;
                            break;
                        }
                        Err(Cut::Bad(what)) => bail!("MessagePack: {what} at byte {}", bytes.len() - before.len()),
                    }
                }
                Ok(bytes.len() - reader.rest.len())
            })
        })
        .await?;
    if !pending.0.is_empty() {
        bail!("the MessagePack stream ended inside a value ({} bytes)", pending.0.len());
    }
    Ok((tally.finished("MessagePack")?, bytes))
}

/// Why a MessagePack value could not be taken: it runs past the bytes at hand (the rest is in
/// the next frame), or it is not what a read sends.
enum Cut {
    Short,
    Bad(&'static str),
}

/// A client's decoder of the values `events/read` streams as MessagePack: maps of `position`,
/// `type`, `tags`, `data` (`bin`, borrowed) and `metadata`, or of `position` alone.
struct Msgpack<'a> {
    rest: &'a [u8],
}

impl<'a> Msgpack<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Cut> {
        if self.rest.len() < n {
            return Err(Cut::Short);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Cut> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<usize, Cut> {
        Ok(self.take(n)?.iter().fold(0, |len, b| (len << 8) | *b as usize))
    }

    fn str(&mut self) -> Result<&'a str, Cut> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => (marker & 0x1f) as usize,
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return Err(Cut::Bad("not a string")),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| Cut::Bad("a string is not UTF-8"))
    }

    fn bin(&mut self) -> Result<&'a [u8], Cut> {
        let len = match self.byte()? {
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            _ => return Err(Cut::Bad("data is not bin")),
        };
        self.take(len)
    }

    /// An array's (`map` false) or a map's length.
    fn len(&mut self, map: bool) -> Result<usize, Cut> {
        match (self.byte()?, map) {
            (marker @ 0x90..=0x9f, false) => Ok((marker & 0x0f) as usize),
            (0xdc, false) | (0xde, true) => self.be(2),
            (0xdd, false) | (0xdf, true) => self.be(4),
            (marker @ 0x80..=0x8f, true) => Ok((marker & 0x0f) as usize),
            _ => Err(Cut::Bad(if map { "not a map" } else { "not an array" })),
        }
    }

    fn value(&mut self) -> Result<Wire<'a, &'a [u8]>, Cut> {
        let mut wire = Wire { position: Cow::Borrowed(""), event_type: None, tags: Vec::new(), data: None, metadata: BTreeMap::new() };
        for _ in 0..self.len(true)? {
            match self.str()? {
                "position" => wire.position = Cow::Borrowed(self.str()?),
                "type" => wire.event_type = Some(Cow::Borrowed(self.str()?)),
                "tags" => {
                    let n = self.len(false)?;
                    wire.tags.reserve_exact(n);
                    for _ in 0..n {
                        wire.tags.push(Cow::Borrowed(self.str()?));
                    }
                }
                "data" => wire.data = Some(self.bin()?),
                "metadata" => {
                    for _ in 0..self.len(true)? {
                        let key = self.str()?;
                        wire.metadata.insert(Cow::Borrowed(key), Cow::Borrowed(self.str()?));
                    }
                }
                _ => return Err(Cut::Bad("a key a read does not send")),
            }
        }
        Ok(wire)
    }
}

/// The whole log streamed as NDJSON: (events, bytes).
async fn read_ndjson(client: &Http) -> anyhow::Result<(u64, u64)> {
    let (mut tally, mut pending, mut last) = (Tally::default(), Pending::default(), 0u8);
    let bytes = client
        .read_frames("application/x-ndjson", &json!({"limit": READ_EVENTS}), |frame| {
            last = frame.last().copied().unwrap_or(last);
            pending.feed(frame, |bytes| {
                let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Wire<IgnoredAny>>();
                loop {
                    match values.next() {
                        Some(Ok(value)) => tally.take(value)?,
                        Some(Err(err)) if err.is_eof() => break,
                        Some(Err(err)) => bail!("NDJSON: {err}"),
                        None => break,
                    }
                }
                Ok(values.byte_offset())
            })
        })
        .await?;
    // What is left is the newline after the last value.
    if last != b'\n' || pending.0.iter().any(|b| !b.is_ascii_whitespace()) {
        bail!("the NDJSON stream did not end with a whole line");
    }
    Ok((tally.finished("NDJSON")?, bytes))
}

/// The whole log in JSON pages of `PAGE`, each asked after the last one's position (a forward
/// read cut by its limit ends at its last event): (events, bytes). Each page is decoded as it
/// arrives, event by event, as the streams are.
async fn read_json_pages(client: &Http) -> anyhow::Result<(u64, u64)> {
    let (mut tally, mut bytes, mut after) = (Tally::default(), 0u64, None::<u128>);
    while tally.events < READ_EVENTS {
        let (mut page, mut pending, before) = (Page::default(), Pending::default(), tally.events);
        let body = json!({"after": after.map(|a| a.to_string()), "limit": PAGE});
        bytes += client.read_frames("application/json", &body, |frame| pending.feed(frame, |bytes| page.events(bytes, &mut tally))).await?;
        let position = page.position(&pending.0)?;
        if tally.events == before {
            bail!("the JSON pages ended after {} events", tally.events);
        }
        if position != tally.last {
            bail!("a page cut by its limit ends at its last event {}, not {position}", tally.last);
        }
        after = Some(position);
    }
    Ok((tally.events, bytes))
}

/// A client's decoder of a JSON page as it arrives, in the compact form the server writes:
/// `{"events":[`, events separated by commas (each decoded once its bytes are in), `]`, then
/// `,"position":"N"}` once the body has ended.
#[derive(Default)]
struct Page {
    opened: bool,
    any: bool,
    closed: bool,
}

impl Page {
    const OPENING: &[u8] = b"{\"events\":[";

    /// Decodes the events complete in `bytes`; returns the bytes taken.
    fn events(&mut self, bytes: &[u8], tally: &mut Tally) -> anyhow::Result<usize> {
        let mut at = 0;
        if !self.opened {
            if bytes.len() < Self::OPENING.len() {
                return Ok(0);
            }
            if !bytes.starts_with(Self::OPENING) {
                bail!("a JSON page starts {:?}", String::from_utf8_lossy(&bytes[..Self::OPENING.len()]));
            }
            (self.opened, at) = (true, Self::OPENING.len());
        }
        while !self.closed && at < bytes.len() {
            match (bytes[at], self.any) {
                (b']', _) => {
                    self.closed = true;
                    at += 1;
                }
                (b',', true) | (_, false) => {
                    let start = at + usize::from(self.any);
                    let mut values = serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<Wire<IgnoredAny>>();
                    match values.next() {
                        Some(Ok(event)) => tally.take(event)?,
                        Some(Err(err)) if err.is_eof() => break,
                        Some(Err(err)) => bail!("a JSON page: {err}"),
                        None => break,
                    }
                    (self.any, at) = (true, start + values.byte_offset());
                }
                (other, true) => bail!("a JSON page has {:?} after an event", other as char),
            }
        }
        Ok(at)
    }

    /// The page's position, from what followed its events.
    fn position(&self, rest: &[u8]) -> anyhow::Result<u128> {
        let digits = rest.strip_prefix(b",\"position\":\"").and_then(|r| r.strip_suffix(b"\"}")).filter(|_| self.closed);
        let digits = digits.with_context(|| format!("a JSON page ends {:?}", String::from_utf8_lossy(rest)))?;
        std::str::from_utf8(digits)?.parse().context("a JSON page's position")
    }
}
