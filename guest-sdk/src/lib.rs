//! The Rust SDK for Counterpoint feature slices.
//!
//! A slice is a set of [`Event`]s, [`Command`]s, [`Projection`]s and (optionally)
//! [`Automation`]s and persistent [`ReadModel`]s, exported as a WebAssembly component with one [`slice!`] invocation.
//! Commands read the tenant's log with a [`Query`] and append events; the host guards
//! the append with every read the command made (DCB), and retries the command on conflict.
//!
//! ```
//! use counterpoint_sdk::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct OrderPlaced { order_id: String }
//!
//! impl Event for OrderPlaced {
//!     const TYPE: &'static str = "OrderPlaced";
//!     fn tags(&self) -> Vec<String> { vec![tag("order_id", &self.order_id)] }
//! }
//!
//! #[derive(Deserialize)]
//! struct PlaceOrder { order_id: String }
//!
//! impl Command for PlaceOrder {
//!     const NAME: &'static str = "place-order";
//!     type Output = ();
//!     fn run(self, ctx: &mut Context) -> Result<(), Error> {
//!         let order = ctx.read(Query::of::<OrderPlaced>().tag(tag("order_id", &self.order_id)))?;
//!         if !order.is_empty() {
//!             return Err(Error::rejected("order already placed"));
//!         }
//!         ctx.append(OrderPlaced { order_id: self.order_id });
//!         Ok(())
//!     }
//! }
//!
//! counterpoint_sdk::slice! {
//!     name: "orders", version: "0.1.0",
//!     events: [OrderPlaced],
//!     commands: [PlaceOrder],
//! }
//! ```

// The generated `export!` macro names this crate by its public name, so that name must
// also resolve inside the crate.
extern crate self as counterpoint_sdk;

/// The bindings of the WIT contract (`counterpoint:slice@0.1.0`, world `slice-world`),
/// generated once here so that slices depend on this crate only.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "slice-world",
        pub_export_macro: true,
        default_bindings_module: "counterpoint_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

mod automation;
mod command;
mod error;
mod event;
mod input;
mod projection;
mod query;
mod read_model;
mod slice;
pub mod testing;

pub use automation::{Automation, CommandCall};
pub use command::{Command, Context};
pub use event::{Envelope, Event, Events, RawEvent, tag};
pub use input::fields_of;
pub use projection::Projection;
pub use query::{Item, Position, Query, ReadOptions, ReadResult, position_number, position_of};
pub use read_model::{Kv, MemoryKv, ReadModel, State};
pub use slice::{Slice, Store};

/// The error every fallible SDK call returns: the WIT `error` variant.
pub use bindings::counterpoint::slice::types::Error;
/// A named input of a command or projection, as listed by `describe`.
pub use bindings::exports::counterpoint::slice::slice::Field;

/// Everything a slice usually needs, plus serde's derives.
pub mod prelude {
    pub use crate::{
        Automation, Command, CommandCall, Context, Envelope, Error, Event, Events, Item,
        Projection, Query, ReadModel, ReadOptions, State, tag,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Used by the code [`slice!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::automation::info as automation_info;
    pub use crate::bindings::exports::counterpoint::slice::slice::Description;
    pub use crate::command::{execute, info as command_info};
    pub use crate::event::tags_of;
    pub use crate::bindings::exports::counterpoint::slice::read_models::ReadModelInfo;
    pub use crate::projection::{Running, info as projection_info, open};
    pub use crate::read_model::{info as read_model_info, query, update};
    pub use crate::slice::unknown;
}

/// Capabilities beyond the log, for slices the tenant grants them (`[tenants.<t>.effects.<slice>]`):
/// outbound HTTP to allow-listed hosts, configuration values and secrets, a clock and randomness
/// that tests can fix. A slice that uses any of these is refused at deploy unless granted.
pub mod effects {
    pub use crate::bindings::counterpoint::slice::effects::{HttpRequest, HttpResponse};
    use crate::bindings::counterpoint::slice::effects as host;
    use crate::Error;

    /// Sends an HTTP request (`http://` only) to a host on the slice's allow-list.
    pub fn http(request: &HttpRequest) -> Result<HttpResponse, Error> {
        host::http(request)
    }

    /// A GET with no headers.
    pub fn get(url: &str) -> Result<HttpResponse, Error> {
        http(&HttpRequest { method: "GET".into(), url: url.into(), headers: Vec::new(), body: Vec::new() })
    }

    /// A configuration value or secret granted to this slice.
    pub fn config(key: &str) -> Option<String> {
        host::config(key)
    }

    /// Milliseconds since the Unix epoch (fixed in tests that say so).
    pub fn now_ms() -> u64 {
        host::now_ms()
    }

    /// `len` random bytes (repeatable in tests that seed them).
    pub fn random_bytes(len: u32) -> Vec<u8> {
        host::random_bytes(len)
    }
}
