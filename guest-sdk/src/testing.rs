//! An in-memory store for testing a slice's logic natively (`cargo test`), without a host.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::command::run;
use crate::input::decode_input;
use crate::projection::fold;
use crate::query::{Position, ReadResult, position_number, position_of};
use crate::{
    Command, Envelope, Error, Event, MemoryKv, Projection, Query, RawEvent, ReadModel,
    ReadOptions, Slice, State, Store,
};

/// One tenant's log in memory, with the host's read semantics (not its concurrency control:
/// tests run one command at a time).
#[derive(Debug, Default)]
pub struct TestStore {
    events: Vec<Envelope>,
    /// Each read model's state and how many events of the log it has seen.
    read_models: BTreeMap<&'static str, (MemoryKv, usize)>,
}

impl TestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event directly, e.g. another slice's, as a test's "given".
    pub fn given<E: Event>(&mut self, event: E) -> &mut Self {
        let raw = RawEvent::encode(&event).expect("encodable event");
        self.append(&[raw]).expect("in-memory append");
        self
    }

    /// Runs a command, typed, as the host would: reads, then one append if it succeeds.
    pub fn run<C: Command>(&mut self, command: C) -> Result<C::Output, Error> {
        run(self, command)
    }

    /// Runs a command of slice `S` by name with a payload, through its MessagePack path.
    pub fn execute<S: Slice>(
        &mut self,
        command: &str,
        payload: &impl Serialize,
    ) -> Result<Vec<u8>, Error> {
        let payload = rmp_serde::to_vec_named(payload).expect("encodable payload");
        S::execute(self, command, &payload)
    }

    /// Computes a projection as the host would: decode the params, read the source, fold.
    pub fn project<P: Projection>(&mut self, params: &impl Serialize) -> Result<P::Output, Error> {
        let params = rmp_serde::to_vec_named(params).expect("encodable params");
        let params = decode_input::<P::Params>(&params)?;
        let events = self.read(&P::source(&params), P::options(&params))?.events;
        fold::<P>(&params, &events)?.output()
    }

    /// Queries a read model as the host would: first its state catches up with the log (each
    /// event applied once, in order), then it answers.
    pub fn read_model<R: ReadModel>(&mut self, params: &impl Serialize) -> Result<R::Output, Error> {
        let (kv, seen) = self.read_models.entry(R::NAME).or_default();
        let source = R::source();
        let new: Vec<Envelope> = self.events[*seen..]
            .iter()
            .filter(|e| source.matches(&e.event.event_type, &e.event.tags))
            .cloned()
            .collect();
        crate::read_model::update::<R>(kv, &new)?;
        *seen = self.events.len();
        let params = rmp_serde::to_vec_named(params).expect("encodable params");
        R::query(&State::new(kv), decode_input::<R::Params>(&params)?)
    }

    /// Everything appended so far, oldest first.
    pub fn events(&self) -> &[Envelope] {
        &self.events
    }

    fn head(&self) -> Position {
        self.events.last().map_or((0, 0), |e| e.position)
    }
}

impl Store for TestStore {
    fn read(&mut self, query: &Query, options: ReadOptions) -> Result<ReadResult, Error> {
        let matching = self
            .events
            .iter()
            .filter(|e| options.after.is_none_or(|after| e.position > after))
            .filter(|e| query.matches(&e.event.event_type, &e.event.tags));
        let mut events: Vec<Envelope> = if options.backwards {
            matching.rev().cloned().collect()
        } else {
            matching.cloned().collect()
        };
        let cut = options
            .limit
            .is_some_and(|limit| (events.len() as u64) > limit);
        if let Some(limit) = options.limit {
            events.truncate(limit as usize);
        }
        // The ReadAppender's rule: a forward read cut by `limit` has seen up to its last event.
        let position = match events.last() {
            Some(last) if cut && !options.backwards => last.position,
            _ => self.head(),
        };
        Ok(ReadResult { events, position })
    }

    fn append(&mut self, events: &[RawEvent]) -> Result<(), Error> {
        let first = position_number(self.head()) + 1;
        self.events.extend((first..).zip(events).map(|(position, e)| Envelope {
            position: position_of(position),
            event: e.clone(),
        }));
        Ok(())
    }
}
