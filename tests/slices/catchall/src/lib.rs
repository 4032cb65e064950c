//! An automation and a read model with empty queries, which match every event: the host must
//! hand them every event but its own records (`counterpoint.*`), and the automation must not
//! loop on the checkpoints it leaves behind.

use counterpoint_sdk::prelude::*;

/// What `nudge` appends; `echo` answers each one.
#[derive(Serialize, Deserialize)]
pub struct Nudged {
    pub n: u64,
}

impl Event for Nudged {
    const TYPE: &'static str = "Nudged";
    fn tags(&self) -> Vec<String> {
        vec![tag("n", self.n)]
    }
}

/// What `answer` appends: one per reaction of `echo`.
#[derive(Serialize, Deserialize)]
pub struct Answered {
    pub n: u64,
}

impl Event for Answered {
    const TYPE: &'static str = "Answered";
    fn tags(&self) -> Vec<String> {
        vec![tag("n", self.n)]
    }
}

#[derive(Deserialize)]
pub struct Nudge {
    pub n: u64,
}

impl Command for Nudge {
    const NAME: &'static str = "nudge";
    type Output = ();
    fn run(self, ctx: &mut Context) -> Result<(), Error> {
        ctx.append(Nudged { n: self.n });
        Ok(())
    }
}

#[derive(Deserialize, Serialize)]
pub struct Answer {
    pub n: u64,
}

impl Command for Answer {
    const NAME: &'static str = "answer";
    type Output = ();
    fn run(self, ctx: &mut Context) -> Result<(), Error> {
        ctx.append(Answered { n: self.n });
        Ok(())
    }
}

fn refuse_host_record(event: &Envelope) -> Result<(), Error> {
    if event.event_type().starts_with("counterpoint.") {
        return Err(Error::store(format!("the host handed over its own record {}", event.event_type())));
    }
    Ok(())
}

/// `echo`: every event; answers each `Nudged` with one `answer`, ignores the rest, and fails on a
/// host record (which then shows as failures and a dead letter).
pub struct Echo;

impl Automation for Echo {
    const NAME: &'static str = "echo";
    fn query() -> Query {
        Query::all()
    }
    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error> {
        refuse_host_record(event)?;
        if !event.is::<Nudged>() {
            return Ok(Vec::new());
        }
        let nudged: Nudged = event.decode()?;
        Ok(vec![CommandCall::new("catchall", "answer", &Answer { n: nudged.n })?])
    }
}

/// `census`: every event, counted by type; fails on a host record (the read model then stays
/// where it is and reports the error).
pub struct Census;

#[derive(Deserialize)]
pub struct CensusQuery {}

impl ReadModel for Census {
    const NAME: &'static str = "census";
    type Params = CensusQuery;
    type Output = std::collections::BTreeMap<String, u64>;

    fn source() -> Query {
        Query::all()
    }

    fn apply(state: &mut State, event: &Envelope) -> Result<(), Error> {
        refuse_host_record(event)?;
        state.update(&format!("type:{}", event.event_type()), |n: &mut u64| *n += 1)
    }

    fn query(state: &State, _: CensusQuery) -> Result<Self::Output, Error> {
        let counts = state.scan::<u64>("type:", None, 1_000)?;
        Ok(counts.into_iter().map(|(key, n)| (key.trim_start_matches("type:").to_string(), n)).collect())
    }
}

counterpoint_sdk::slice! {
    name: "catchall", version: env!("CARGO_PKG_VERSION"),
    events: [Nudged, Answered],
    commands: [Nudge, Answer],
    automations: [Echo],
    read_models: [Census],
}
