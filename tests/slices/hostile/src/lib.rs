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
            event_type: "Flooded".into(),
            tags: vec![tag("fixture", "flood")],
            data,
            metadata: Vec::new(),
        };
        let events = vec![event; count as usize];
        Ok(store::append(&events)?.len() as u64)
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

counterpoint_sdk::slice! {
    name: "hostile", version: env!("CARGO_PKG_VERSION"),
    events: [Pinged],
    commands: [Spin, Hog, Recurse, Trap, Flood, Ping],
}
