//! Automations: react to events by asking the host to run commands (at least once, in
//! position order). The host side comes later; the contract is here already.

use serde::Serialize;

use crate::bindings::exports::counterpoint::slice::slice::AutomationInfo;
pub use crate::bindings::exports::counterpoint::slice::slice::CommandCall;
use crate::{Envelope, Error, Query};

/// Watches the log for `query` and turns each matching event into commands to run.
pub trait Automation {
    /// The automation's name; its checkpoint is kept under it.
    const NAME: &'static str;
    /// One line for people.
    const DESCRIPTION: &'static str = "";

    /// The events it reacts to.
    fn query() -> Query;

    /// The commands to run for one event. Must be deterministic: it may see an event twice.
    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error>;
}

impl CommandCall {
    /// Asks for `command` of `slice` (any slice of the tenant) with `payload` as its input.
    pub fn new(slice: &str, command: &str, payload: &impl Serialize) -> Result<Self, Error> {
        let payload = rmp_serde::to_vec_named(payload)
            .map_err(|e| Error::store(format!("cannot encode the input of {command}: {e}")))?;
        Ok(CommandCall {
            slice: slice.into(),
            command: command.into(),
            payload,
        })
    }
}

pub fn info<A: Automation>() -> AutomationInfo {
    AutomationInfo {
        name: A::NAME.into(),
        description: A::DESCRIPTION.into(),
        query: A::query(),
    }
}
