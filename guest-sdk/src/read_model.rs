//! Persistent read models: state the host keeps between calls, in a key-value namespace of the
//! read model's own. The host follows the log for the model's [`source`](ReadModel::source) and
//! calls [`apply`](ReadModel::apply) for every event exactly once (the state and the model's
//! checkpoint commit together); [`query`](ReadModel::query) answers from the state without
//! replaying the log.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::counterpoint::slice::read_model_state as host;
use crate::bindings::exports::counterpoint::slice::read_models::{Param, ReadModelInfo};
use crate::input::{decode_input, fields_of};
use crate::{Envelope, Error, Query};

/// A read model kept by the host.
///
/// ```ignore
/// impl ReadModel for StockLevels {
///     const NAME: &'static str = "stock-levels";
///     type Params = SkuRef;
///     type Output = Level;
///     fn source() -> Query { Query::of::<StockReceived>() }
///     fn apply(state: &mut State, event: &Envelope) -> Result<(), Error> {
///         let received: StockReceived = event.decode()?;
///         state.update(&received.sku, |level: &mut Level| level.units += received.qty)
///     }
///     fn query(state: &State, params: SkuRef) -> Result<Level, Error> {
///         Ok(state.get(&params.sku)?.unwrap_or_default())
///     }
/// }
/// ```
pub trait ReadModel: 'static {
    /// The name callers query it by, e.g. `stock-levels`.
    const NAME: &'static str;
    /// One line for people and generated forms.
    const DESCRIPTION: &'static str = "";
    /// The query's parameters, decoded from MessagePack (a struct).
    type Params: DeserializeOwned;
    /// The query's answer, encoded as MessagePack with named fields.
    type Output: Serialize;

    /// The events that change the state. Changing it makes the host rebuild the state.
    fn source() -> Query;

    /// Applies one event to the state. An error leaves the whole batch unapplied; the host
    /// retries it, and the read model stays where it was until the event applies.
    fn apply(state: &mut State, event: &Envelope) -> Result<(), Error>;

    /// Answers from the state (read only).
    fn query(state: &State, params: Self::Params) -> Result<Self::Output, Error>;
}

/// Keys and values, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a read model's state lives: the host's namespace during an invocation, or a map in
/// native tests.
pub trait Kv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Result<Entries, Error>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error>;
    fn delete(&mut self, key: &[u8]) -> Result<(), Error>;
}

/// A read model's state: string keys (sorted bytewise), values as MessagePack with named fields.
pub struct State<'a> {
    kv: &'a mut dyn Kv,
}

impl<'a> State<'a> {
    pub fn new(kv: &'a mut dyn Kv) -> Self {
        State { kv }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.kv.get(key.as_bytes())?.map(|bytes| decode(key, &bytes)).transpose()
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = rmp_serde::to_vec_named(value)
            .map_err(|e| Error::store(format!("cannot encode the value of {key:?}: {e}")))?;
        self.kv.put(key.as_bytes(), &bytes)
    }

    pub fn delete(&mut self, key: &str) -> Result<(), Error> {
        self.kv.delete(key.as_bytes())
    }

    /// Reads the value under `key` (the default when there is none), changes it, writes it back.
    pub fn update<T: DeserializeOwned + Serialize + Default>(
        &mut self,
        key: &str,
        change: impl FnOnce(&mut T),
    ) -> Result<(), Error> {
        let mut value = self.get(key)?.unwrap_or_default();
        change(&mut value);
        self.put(key, &value)
    }

    /// Entries whose key starts with `prefix` and sorts after `after`, in key order, at most `limit`.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, T)>, Error> {
        let entries = self.kv.scan(prefix.as_bytes(), after.map(str::as_bytes), limit)?;
        entries
            .into_iter()
            .map(|(key, value)| {
                let key = String::from_utf8(key)
                    .map_err(|_| Error::store("a read model key is not UTF-8"))?;
                let value = decode(&key, &value)?;
                Ok((key, value))
            })
            .collect()
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| Error::store(format!("the value of {key:?} does not decode: {e}")))
}

/// The host's namespace for the read model being updated or queried.
pub(crate) struct HostKv;

impl Kv for HostKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        host::get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Result<Entries, Error> {
        host::scan(prefix, after, limit)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        host::put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        host::delete(key)
    }
}

/// A read model's state in memory, for native tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryKv(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Result<Entries, Error> {
        let start = after.map_or(std::ops::Bound::Included(prefix.to_vec()), |a| std::ops::Bound::Excluded(a.to_vec()));
        Ok(self
            .0
            .range((start, std::ops::Bound::Unbounded))
            .skip_while(|(key, _)| key.as_slice() < prefix)
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.0.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        self.0.remove(key);
        Ok(())
    }
}

/// The WIT `update` for one read model.
pub fn update<R: ReadModel>(kv: &mut dyn Kv, events: &[Envelope]) -> Result<(), Error> {
    let mut state = State::new(kv);
    events.iter().try_for_each(|event| R::apply(&mut state, event))
}

/// The WIT `query` for one read model.
pub fn query<R: ReadModel>(kv: &mut dyn Kv, params: &[u8]) -> Result<Vec<u8>, Error> {
    let params = decode_input::<R::Params>(params)?;
    let output = R::query(&State::new(kv), params)?;
    rmp_serde::to_vec_named(&output)
        .map_err(|e| Error::store(format!("cannot encode the answer of {}: {e}", R::NAME)))
}

pub fn info<R: ReadModel>() -> ReadModelInfo {
    ReadModelInfo {
        name: R::NAME.into(),
        description: R::DESCRIPTION.into(),
        query: R::source(),
        params: fields_of::<R::Params>()
            .into_iter()
            .map(|f| Param { name: f.name, kind: f.kind })
            .collect(),
    }
}
