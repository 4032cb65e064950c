//! Commands: decode the input, read, decide, append once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::exports::counterpoint::slice::slice::CommandInfo;
use crate::input::{decode_input, fields_of};
use crate::{Error, Event, Events, Field, Projection, Query, RawEvent, ReadOptions, Store};

/// A command: its input is the struct itself, decoded from the MessagePack payload.
pub trait Command: DeserializeOwned {
    /// The name callers run it by, e.g. `place-order`.
    const NAME: &'static str;
    /// One line for people and generated forms.
    const DESCRIPTION: &'static str = "";
    /// What the caller gets back, encoded as MessagePack with named fields.
    type Output: Serialize;

    /// The business logic. Events passed to [`Context::append`] are appended together
    /// when this returns `Ok`, guarded by every read made through `ctx`; on `Err` nothing is.
    fn run(self, ctx: &mut Context) -> Result<Self::Output, Error>;

    /// The input's fields for `describe`; by default found from the struct's serde impl.
    fn fields() -> Vec<Field> {
        fields_of::<Self>()
    }
}

/// A command's view of the tenant's log during one invocation.
pub struct Context<'s> {
    store: &'s mut dyn Store,
    command: &'static str,
    pending: Vec<RawEvent>,
    // An event that failed to encode, reported when the command returns: keeps `append`
    // infallible in business code, where such a failure is a bug, not a decision.
    failed: Option<Error>,
}

impl<'s> Context<'s> {
    pub(crate) fn new(store: &'s mut dyn Store, command: &'static str) -> Self {
        Context {
            store,
            command,
            pending: Vec::new(),
            failed: None,
        }
    }

    /// Reads every event matching `query`, oldest first. The read becomes part of the
    /// command's consistency boundary.
    pub fn read(&mut self, query: impl Into<Query>) -> Result<Events, Error> {
        self.read_with(query, ReadOptions::new())
    }

    /// Reads with options: `after`, `limit`, `backwards` ("the last N": `ReadOptions::last(n)`).
    pub fn read_with(
        &mut self,
        query: impl Into<Query>,
        options: ReadOptions,
    ) -> Result<Events, Error> {
        self.store.read(&query.into(), options).map(Events::new)
    }

    /// Reads a projection's source and folds it: a decision model shared with a query
    /// (the projection's state, before `output`).
    pub fn fold<P: Projection>(&mut self, params: P::Params) -> Result<P, Error> {
        let events = self.read_with(P::source(&params), P::options(&params))?;
        crate::projection::fold(&params, &events)
    }

    /// Queues an event; all queued events are appended at once when the command succeeds.
    pub fn append<E: Event>(&mut self, event: E) {
        match RawEvent::encode(&event) {
            Ok(mut raw) => {
                raw.metadata.push(("command".into(), self.command.into()));
                self.pending.push(raw);
            }
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Queues several events of one type.
    pub fn append_all<E: Event>(&mut self, events: impl IntoIterator<Item = E>) {
        events.into_iter().for_each(|e| self.append(e));
    }

    fn commit(self) -> Result<(), Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.pending.is_empty() {
            self.store.append(&self.pending)?;
        }
        Ok(())
    }
}

/// Runs a decoded command against `store`: its reads, then its one append.
pub(crate) fn run<C: Command>(store: &mut dyn Store, command: C) -> Result<C::Output, Error> {
    invoke(store, command, Ok)
}

/// The WIT `execute` export for one command.
pub fn execute<C: Command>(store: &mut dyn Store, payload: &[u8]) -> Result<Vec<u8>, Error> {
    // The output is encoded before appending, so that failing to encode it appends nothing.
    invoke(store, decode_input::<C>(payload)?, |output| {
        rmp_serde::to_vec_named(&output)
            .map_err(|e| Error::store(format!("cannot encode the output of {}: {e}", C::NAME)))
    })
}

fn invoke<C: Command, T>(
    store: &mut dyn Store,
    command: C,
    finish: impl FnOnce(C::Output) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut ctx = Context::new(store, C::NAME);
    let output = finish(command.run(&mut ctx)?)?;
    ctx.commit()?;
    Ok(output)
}

pub fn info<C: Command>() -> CommandInfo {
    CommandInfo {
        name: C::NAME.into(),
        description: C::DESCRIPTION.into(),
        fields: C::fields(),
    }
}
