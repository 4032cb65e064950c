//! A slice that misbehaves on purpose, for the host's isolation tests. Every command but
//! `ok` must fail its own invocation and nothing else.

use std::hint::black_box;

use counterpoint_sdk::RawEvent;
use counterpoint_sdk::bindings::counterpoint::slice::store;
use counterpoint_sdk::prelude::*;

/// `spin`: never returns; the host's deadline must stop it.
#[derive(Deserialize)]
pub struct Spin {}

impl Command for Spin {
    const NAME: &'static str = "spin";
    type Output = ();
    fn run(self, _: &mut Context) -> Result<(), Error> {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }
}

/// `sleep`: sleeps `ms` milliseconds (default an hour) through WASI's clocks, then appends a
/// `Pinged`. Waiting on the host is not running wasm: only a wall-clock deadline stops it.
#[derive(Deserialize)]
pub struct Sleep {
    pub ms: Option<u64>,
}

impl Command for Sleep {
    const NAME: &'static str = "sleep";
    type Output = ();
    fn run(self, ctx: &mut Context) -> Result<(), Error> {
        std::thread::sleep(std::time::Duration::from_millis(self.ms.unwrap_or(3_600_000)));
        ctx.append(Pinged { stream: "slept".into(), n: 0 });
        Ok(())
    }
}

/// `doze`: a projection that sleeps `ms` milliseconds (default an hour) as it opens.
pub struct Doze;

#[derive(Deserialize)]
pub struct DozeParams {
    pub ms: Option<u64>,
}

impl Projection for Doze {
    const NAME: &'static str = "doze";
    type Params = DozeParams;
    type Output = ();
    fn init(params: &DozeParams) -> Self {
        std::thread::sleep(std::time::Duration::from_millis(params.ms.unwrap_or(3_600_000)));
        Doze
    }
    fn source(_: &DozeParams) -> Query {
        Query::of::<Pinged>()
    }
    fn apply(&mut self, _: &Envelope) -> Result<(), Error> {
        Ok(())
    }
    fn output(self) -> Result<(), Error> {
        Ok(())
    }
}

/// `hog`: allocates (and touches) 1 MiB after 1 MiB until memory runs out.
#[derive(Deserialize)]
pub struct Hog {}

impl Command for Hog {
    const NAME: &'static str = "hog";
    type Output = ();
    fn run(self, _: &mut Context) -> Result<(), Error> {
        let mut hoard = Vec::new();
        loop {
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }
}

/// `recurse`: unbounded recursion, each frame keeping a buffer alive; overflows the stack.
#[derive(Deserialize)]
pub struct Recurse {}

#[allow(unconditional_recursion)] // on purpose
fn deeper(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    black_box(deeper(frame[0] + 1)) + frame[63]
}

impl Command for Recurse {
    const NAME: &'static str = "recurse";
    type Output = u64;
    fn run(self, _: &mut Context) -> Result<u64, Error> {
        Ok(deeper(0))
    }
}

/// `trap`: panics, which in wasm is a trap.
#[derive(Deserialize)]
pub struct Trap {}

impl Command for Trap {
    const NAME: &'static str = "trap";
    type Output = ();
    fn run(self, _: &mut Context) -> Result<(), Error> {
        panic!("hostile slice: trap on purpose")
    }
}

/// `flood`: appends `events` events of `size` bytes each in one append (default 100 × 1 MiB,
/// about 100 MB), straight through the import; the host must refuse it and stay up.
/// The events are built in guest memory first, so the memory cap must allow them.
#[derive(Deserialize)]
pub struct Flood {
    pub events: Option<u32>,
    pub size: Option<u32>,
    /// The events' type (default `Flooded`): a forger names a host record's.
    pub event_type: Option<String>,
}

impl Command for Flood {
    const NAME: &'static str = "flood";
    type Output = u64;
    fn run(self, _: &mut Context) -> Result<u64, Error> {
        let (count, size) = (self.events.unwrap_or(100), self.size.unwrap_or(1 << 20));
        // A valid MessagePack payload: bin32 header, then `size` zero bytes.
        let mut data = vec![0xc6];
        data.extend(size.to_be_bytes());
        data.resize(5 + size as usize, 0);
        let event = RawEvent {
            event_type: self.event_type.unwrap_or_else(|| "Flooded".into()),
            tags: vec![tag("fixture", "flood")],
            data,
            metadata: Vec::new(),
        };
        let events = vec![event; count as usize];
        store::append(&events)?;
        Ok(events.len() as u64)
    }
}

/// What `ok` appends: one per call, tagged with its stream.
#[derive(Serialize, Deserialize)]
pub struct Pinged {
    pub stream: String,
    pub n: u64,
}

impl Event for Pinged {
    const TYPE: &'static str = "Pinged";
    fn tags(&self) -> Vec<String> {
        vec![tag("stream", &self.stream)]
    }
}

/// `ok`: well-behaved. Reads its stream (tag `stream:<stream>`, default `ok`), appends one
/// `Pinged`, returns how many the stream holds now.
#[derive(Deserialize)]
pub struct Ping {
    pub stream: Option<String>,
}

#[derive(Serialize)]
pub struct Count {
    pub count: u64,
}

impl Command for Ping {
    const NAME: &'static str = "ok";
    type Output = Count;
    fn run(self, ctx: &mut Context) -> Result<Count, Error> {
        let stream = self.stream.unwrap_or_else(|| "ok".into());
        let seen = ctx
            .read(Query::of::<Pinged>().tag(tag("stream", &stream)))?
            .len() as u64;
        ctx.append(Pinged {
            stream,
            n: seen + 1,
        });
        Ok(Count { count: seen + 1 })
    }
}

/// What `probe` appends.
#[derive(Serialize, Deserialize)]
pub struct Probed {
    pub tag: String,
}

impl Event for Probed {
    const TYPE: &'static str = "Probed";
    fn tags(&self) -> Vec<String> {
        vec![self.tag.clone()]
    }
}

/// `probe`: one read of events tagged `tag` with the given options, then one append of a
/// `Probed` with that tag; returns the read's consistency position and how many it saw.
/// For testing the position the host records for each kind of read.
#[derive(Deserialize)]
pub struct Probe {
    pub tag: String,
    pub limit: Option<u64>,
    #[serde(default)]
    pub backwards: bool,
}

#[derive(Serialize)]
pub struct ProbeResult {
    pub position: u64,
    pub seen: u64,
}

impl Command for Probe {
    const NAME: &'static str = "probe";
    type Output = ProbeResult;
    fn run(self, ctx: &mut Context) -> Result<ProbeResult, Error> {
        let mut options = ReadOptions::new();
        if let Some(limit) = self.limit {
            options = options.limit(limit);
        }
        if self.backwards {
            options = options.backwards();
        }
        let events = ctx.read_with(Query::tagged(self.tag.clone()), options)?;
        ctx.append(Probed { tag: self.tag });
        Ok(ProbeResult { position: counterpoint_sdk::position_number(events.position()) as u64, seen: events.len() as u64 })
    }
}

/// `escape`: tries to reach what a slice must not: environment variables, files, the network,
/// and reports what it got. The host grants none of it.
#[derive(Deserialize)]
pub struct Escape {
    /// An address the test listens on, tried besides the usual ones.
    pub connect: Option<String>,
}

#[derive(Serialize)]
pub struct Escaped {
    pub env: Vec<String>,
    pub files: Vec<String>,
    pub network: Vec<String>,
}

impl Command for Escape {
    const NAME: &'static str = "escape";
    type Output = Escaped;
    fn run(self, _: &mut Context) -> Result<Escaped, Error> {
        let env = std::env::vars().map(|(k, _)| k).collect();
        let mut addresses = vec!["127.0.0.1:22".to_string(), "127.0.0.1:80".to_string(), "[::1]:80".to_string()];
        addresses.extend(self.connect);
        let files = ["/etc/passwd", "/", ".", "/proc/self/environ"]
            .into_iter()
            .filter(|path| std::fs::read(path).is_ok() || std::fs::read_dir(path).is_ok())
            .map(String::from)
            .collect();
        let network = addresses.into_iter().filter(|addr| std::net::TcpStream::connect(addr).is_ok()).collect();
        Ok(Escaped { env, files, network })
    }
}

/// Pages `scribble` writes to, in the memory image (initialized data) and after it (zeroed).
const SCRIBBLE_PAGES: usize = 96;
const PAGE: usize = 4096;
const IMAGE_BYTE: u8 = 0xAB;
#[repr(C, align(4096))]
struct Pages<const N: usize>([u8; N]);
static mut IN_IMAGE: Pages<{ SCRIBBLE_PAGES * PAGE }> = Pages([IMAGE_BYTE; SCRIBBLE_PAGES * PAGE]);
static mut ZEROED: Pages<{ 4 * SCRIBBLE_PAGES * PAGE }> = Pages([0; 4 * SCRIBBLE_PAGES * PAGE]);

/// `scribble`: writes a mark on every other page of an initialized array and of a zeroed one
/// (several hundred disjoint dirty runs, far more than a reset handles in one page-table scan),
/// and first counts the pages that already held something else than a fresh instance has:
/// what a previous instance left behind. Every instance must find none.
#[derive(Deserialize)]
pub struct Scribble {}

#[derive(Serialize)]
pub struct Scribbled {
    pub pages: u64,
    pub leftovers: u64,
}

impl Command for Scribble {
    const NAME: &'static str = "scribble";
    type Output = Scribbled;
    fn run(self, _: &mut Context) -> Result<Scribbled, Error> {
        let (mut pages, mut leftovers) = (0, 0);
        let mut visit = |memory: *mut u8, len: usize, fresh: u8| {
            for page in (0..len / PAGE).step_by(2) {
                for offset in [0, PAGE / 2, PAGE - 1] {
                    // SAFETY: in bounds; a command runs alone in its instance.
                    let byte = unsafe { memory.add(page * PAGE + offset) };
                    if unsafe { byte.read_volatile() } != fresh {
                        leftovers += 1;
                    }
                    unsafe { byte.write_volatile(0xEE) };
                }
                pages += 1;
            }
        };
        visit(&raw mut IN_IMAGE as *mut u8, SCRIBBLE_PAGES * PAGE, IMAGE_BYTE);
        visit(&raw mut ZEROED as *mut u8, 4 * SCRIBBLE_PAGES * PAGE, 0);
        Ok(Scribbled { pages, leftovers })
    }
}

/// Appended by tests to wake the `poke` automation.
#[derive(Serialize, Deserialize)]
pub struct Poked {
    pub sku: String,
}

impl Event for Poked {
    const TYPE: &'static str = "Poked";
    fn tags(&self) -> Vec<String> {
        vec![tag("sku", &self.sku)]
    }
}

/// `poke`: for every `Poked`, receives one unit of its sku in the inventory slice — which fails
/// while inventory is not deployed, for testing retries and dead letters.
pub struct Poke;

#[derive(Serialize)]
struct ReceiveStock {
    sku: String,
    qty: u32,
}

impl Automation for Poke {
    const NAME: &'static str = "poke";
    fn query() -> Query {
        Query::of::<Poked>()
    }
    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error> {
        let poked: Poked = event.decode()?;
        Ok(vec![CommandCall::new("inventory", "receive-stock", &ReceiveStock { sku: poked.sku, qty: 1 })?])
    }
}

/// `tick`: reacts to every `Ticked` with nothing — the trivial automation the benchmark measures.
pub struct Tick;

impl Automation for Tick {
    const NAME: &'static str = "tick";
    fn query() -> Query {
        Query::types(["Ticked"])
    }
    fn react(_: &Envelope) -> Result<Vec<CommandCall>, Error> {
        Ok(Vec::new())
    }
}

/// `peek`: a read model that tries to read the log itself, in `update` and in `answer`. The
/// host hands a read model its events and nothing else: both reads must be refused.
pub struct Peek;

#[derive(Deserialize)]
pub struct PeekQuery {}

impl ReadModel for Peek {
    const NAME: &'static str = "peek";
    type Params = PeekQuery;
    type Output = u64;

    fn source() -> Query {
        Query::of::<Poked>()
    }

    fn apply(_: &mut State, _: &Envelope) -> Result<(), Error> {
        store::read(&Query::of::<Poked>(), ReadOptions::new())?;
        Ok(())
    }

    fn query(_: &State, _: PeekQuery) -> Result<u64, Error> {
        Ok(store::read(&Query::of::<Poked>(), ReadOptions::new())?.events.len() as u64)
    }
}

counterpoint_sdk::slice! {
    name: "hostile", version: env!("CARGO_PKG_VERSION"),
    events: [Pinged, Probed, Poked],
    commands: [Spin, Sleep, Hog, Recurse, Trap, Flood, Ping, Probe, Escape, Scribble],
    projections: [Doze],
    automations: [Poke, Tick],
    read_models: [Peek],
}
