//! Projections: on-demand read models the host feeds in batches. They never append.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::exports::counterpoint::slice::slice::ProjectionInfo;
use crate::input::{decode_input, fields_of};
use crate::{Envelope, Error, Query, ReadOptions};

/// A read model: the host reads `source` with `options` and folds the events into the state.
pub trait Projection: Sized + 'static {
    /// The name callers query it by, e.g. `order-summary`.
    const NAME: &'static str;
    /// One line for people and generated forms.
    const DESCRIPTION: &'static str = "";
    /// The parameters, decoded from MessagePack (a struct; no payload is an empty map).
    type Params: DeserializeOwned;
    /// The result, encoded as MessagePack with named fields.
    type Output: Serialize;

    /// The state before any event.
    fn init(params: &Self::Params) -> Self;

    /// The events to fold.
    fn source(params: &Self::Params) -> Query;

    /// How to read them; by default all, oldest first. "The last N": `ReadOptions::last(n)`.
    fn options(params: &Self::Params) -> ReadOptions {
        let _ = params;
        ReadOptions::new()
    }

    /// Folds one event into the state.
    fn apply(&mut self, event: &Envelope) -> Result<(), Error>;

    /// The result, once every event is folded (e.g. `not-found` for an unknown entity).
    fn output(self) -> Result<Self::Output, Error>;
}

/// Folds `events` into a fresh state.
pub(crate) fn fold<P: Projection>(params: &P::Params, events: &[Envelope]) -> Result<P, Error> {
    let mut state = P::init(params);
    events.iter().try_for_each(|event| state.apply(event))?;
    Ok(state)
}

/// A projection being computed, behind the WIT resource.
pub trait Running {
    fn source(&self) -> (Query, ReadOptions);
    fn fold(&mut self, events: Vec<Envelope>) -> Result<(), Error>;
    fn finish(&mut self) -> Result<Vec<u8>, Error>;
}

struct Run<P> {
    state: Option<P>,
    query: Query,
    options: ReadOptions,
}

impl<P: Projection> Running for Run<P> {
    fn source(&self) -> (Query, ReadOptions) {
        (self.query.clone(), self.options)
    }

    fn fold(&mut self, events: Vec<Envelope>) -> Result<(), Error> {
        let state = self.state.as_mut().ok_or_else(finished)?;
        events.iter().try_for_each(|event| state.apply(event))
    }

    fn finish(&mut self) -> Result<Vec<u8>, Error> {
        let output = self.state.take().ok_or_else(finished)?.output()?;
        rmp_serde::to_vec_named(&output)
            .map_err(|e| Error::store(format!("cannot encode the output of {}: {e}", P::NAME)))
    }
}

fn finished() -> Error {
    Error::invalid_input("the projection is already finished")
}

/// The WIT `projection.open` for one projection.
pub fn open<P: Projection>(params: &[u8]) -> Result<Box<dyn Running>, Error> {
    let params = decode_input::<P::Params>(params)?;
    let (query, options) = (P::source(&params), P::options(&params));
    Ok(Box::new(Run {
        state: Some(P::init(&params)),
        query,
        options,
    }))
}

pub fn info<P: Projection>() -> ProjectionInfo {
    ProjectionInfo {
        name: P::NAME.into(),
        description: P::DESCRIPTION.into(),
        params: fields_of::<P::Params>(),
    }
}
