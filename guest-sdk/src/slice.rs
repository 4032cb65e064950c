//! The glue between a slice's types and the WIT exports: the [`Slice`] trait that
//! [`slice!`](crate::slice) implements, and the one implementation of the generated traits.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::automation::CommandCall;
use crate::bindings::counterpoint::slice::store as host;
use crate::bindings::exports::counterpoint::slice::slice::{
    Description, Guest, GuestProjection, Projection as ProjectionResource,
};
use crate::bindings::exports::counterpoint::slice::read_models::{
    Guest as ReadModelsGuest, ReadModelInfo,
};
use crate::projection::Running;
use crate::read_model::{HostKv, Kv};
use crate::query::ReadResult;
use crate::{Envelope, Error, Query, RawEvent, ReadOptions};

/// Where a command's reads and appends go: the host during an invocation, or
/// [`TestStore`](crate::testing::TestStore) in native tests.
pub trait Store {
    fn read(&mut self, query: &Query, options: ReadOptions) -> Result<ReadResult, Error>;
    /// Stages the command's events; the host appends them when the command succeeds.
    fn append(&mut self, events: &[RawEvent]) -> Result<(), Error>;
}

/// The host's store, bound to the current invocation's ReadAppender and tenant.
struct Host;

impl Store for Host {
    fn read(&mut self, query: &Query, options: ReadOptions) -> Result<ReadResult, Error> {
        host::read(query, options)
    }

    fn append(&mut self, events: &[RawEvent]) -> Result<(), Error> {
        host::append(events)
    }
}

/// A whole slice, as [`slice!`](crate::slice) declares it: dispatch by name to its types.
pub trait Slice: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    fn describe() -> Description;
    fn execute(store: &mut dyn Store, command: &str, payload: &[u8]) -> Result<Vec<u8>, Error>;
    fn tags(event_type: &str, data: &[u8]) -> Result<Vec<String>, Error>;
    fn open(projection: &str, params: &[u8]) -> Result<Box<dyn Running>, Error>;
    fn react(automation: &str, event: &Envelope) -> Result<Vec<CommandCall>, Error>;
    fn read_models() -> Vec<ReadModelInfo>;
    fn update(read_model: &str, kv: &mut dyn Kv, events: &[Envelope]) -> Result<(), Error>;
    fn query(read_model: &str, kv: &mut dyn Kv, params: &[u8]) -> Result<Vec<u8>, Error>;
}

impl<S: Slice> ReadModelsGuest for S {
    fn read_models() -> Vec<ReadModelInfo> {
        S::read_models()
    }

    fn update(name: String, events: Vec<Envelope>) -> Result<(), Error> {
        S::update(&name, &mut HostKv, &events)
    }

    fn answer(name: String, params: Vec<u8>) -> Result<Vec<u8>, Error> {
        S::query(&name, &mut HostKv, &params)
    }
}

impl<S: Slice> Guest for S {
    type Projection = ProjectionHandle<S>;

    fn describe() -> Description {
        S::describe()
    }

    fn execute(command: String, payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        S::execute(&mut Host, &command, &payload)
    }

    fn tags(event_type: String, data: Vec<u8>) -> Result<Vec<String>, Error> {
        S::tags(&event_type, &data)
    }

    fn react(automation: String, event: Envelope) -> Result<Vec<CommandCall>, Error> {
        S::react(&automation, &event)
    }
}

/// The state behind a WIT `projection` resource. The host calls it through shared
/// references, one call at a time, hence the `RefCell`.
#[doc(hidden)]
pub struct ProjectionHandle<S> {
    running: RefCell<Box<dyn Running>>,
    slice: PhantomData<S>,
}

impl<S: Slice> GuestProjection for ProjectionHandle<S> {
    fn open(name: String, params: Vec<u8>) -> Result<ProjectionResource, Error> {
        let running = RefCell::new(S::open(&name, &params)?);
        Ok(ProjectionResource::new(ProjectionHandle::<S> {
            running,
            slice: PhantomData,
        }))
    }

    fn source(&self) -> (Query, ReadOptions) {
        self.running.borrow().source()
    }

    fn fold(&self, events: Vec<Envelope>) -> Result<(), Error> {
        self.running.borrow_mut().fold(events)
    }

    fn finish(&self) -> Result<Vec<u8>, Error> {
        self.running.borrow_mut().finish()
    }
}

#[doc(hidden)]
pub fn unknown(what: &str, name: &str, known: &[&str]) -> Error {
    Error::not_found(format!(
        "unknown {what} `{name}` (this slice has: {})",
        known.join(", ")
    ))
}

/// Exports a slice: its events (the types it appends), commands, projections and
/// automations, dispatched by name. Use it once per `cdylib` crate; it defines the type
/// `CounterpointSlice` (which implements [`Slice`], for native tests) and the component's exports.
///
/// ```ignore
/// counterpoint_sdk::slice! {
///     name: "orders", version: "0.1.0",
///     events: [OrderPlaced, ItemAdded],
///     commands: [PlaceOrder, AddItem],
///     projections: [OrderSummary],   // optional
///     automations: [],               // optional
///     read_models: [],               // optional
/// }
/// ```
#[macro_export]
macro_rules! slice {
    (
        name: $name:expr, version: $version:expr,
        events: [$($event:ty),* $(,)?],
        commands: [$($command:ty),* $(,)?]
        $(, projections: [$($projection:ty),* $(,)?])?
        $(, automations: [$($automation:ty),* $(,)?])?
        $(, read_models: [$($read_model:ty),* $(,)?])?
        $(,)?
    ) => {
        /// This crate's slice, as exported to the host.
        pub struct CounterpointSlice;

        impl $crate::Slice for CounterpointSlice {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;

            fn describe() -> $crate::__private::Description {
                $crate::__private::Description {
                    name: $name.into(),
                    version: $version.into(),
                    commands: ::std::vec![$($crate::__private::command_info::<$command>()),*],
                    projections: ::std::vec![$($($crate::__private::projection_info::<$projection>()),*)?],
                    emits: ::std::vec![$(<$event as $crate::Event>::TYPE.into()),*],
                    automations: ::std::vec![$($($crate::__private::automation_info::<$automation>()),*)?],
                }
            }

            fn execute(
                store: &mut dyn $crate::Store,
                command: &str,
                payload: &[u8],
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::Error> {
                $(if command == <$command as $crate::Command>::NAME {
                    return $crate::__private::execute::<$command>(store, payload);
                })*
                let known: &[&str] = &[$(<$command as $crate::Command>::NAME),*];
                ::std::result::Result::Err($crate::__private::unknown("command", command, known))
            }

            fn tags(event_type: &str, data: &[u8]) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::Error> {
                $(if event_type == <$event as $crate::Event>::TYPE {
                    return $crate::__private::tags_of::<$event>(data);
                })*
                let known: &[&str] = &[$(<$event as $crate::Event>::TYPE),*];
                ::std::result::Result::Err($crate::__private::unknown("event type", event_type, known))
            }

            fn open(
                projection: &str,
                params: &[u8],
            ) -> ::std::result::Result<::std::boxed::Box<dyn $crate::__private::Running>, $crate::Error> {
                $($(if projection == <$projection as $crate::Projection>::NAME {
                    return $crate::__private::open::<$projection>(params);
                })*)?
                let known: &[&str] = &[$($(<$projection as $crate::Projection>::NAME),*)?];
                ::std::result::Result::Err($crate::__private::unknown("projection", projection, known))
            }

            fn react(
                automation: &str,
                event: &$crate::Envelope,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::CommandCall>, $crate::Error> {
                $($(if automation == <$automation as $crate::Automation>::NAME {
                    return <$automation as $crate::Automation>::react(event);
                })*)?
                let known: &[&str] = &[$($(<$automation as $crate::Automation>::NAME),*)?];
                ::std::result::Result::Err($crate::__private::unknown("automation", automation, known))
            }

            fn read_models() -> ::std::vec::Vec<$crate::__private::ReadModelInfo> {
                ::std::vec![$($($crate::__private::read_model_info::<$read_model>()),*)?]
            }

            fn update(
                read_model: &str,
                kv: &mut dyn $crate::Kv,
                events: &[$crate::Envelope],
            ) -> ::std::result::Result<(), $crate::Error> {
                $($(if read_model == <$read_model as $crate::ReadModel>::NAME {
                    return $crate::__private::update::<$read_model>(kv, events);
                })*)?
                let known: &[&str] = &[$($(<$read_model as $crate::ReadModel>::NAME),*)?];
                ::std::result::Result::Err($crate::__private::unknown("read model", read_model, known))
            }

            fn query(
                read_model: &str,
                kv: &mut dyn $crate::Kv,
                params: &[u8],
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::Error> {
                $($(if read_model == <$read_model as $crate::ReadModel>::NAME {
                    return $crate::__private::query::<$read_model>(kv, params);
                })*)?
                let known: &[&str] = &[$($(<$read_model as $crate::ReadModel>::NAME),*)?];
                ::std::result::Result::Err($crate::__private::unknown("read model", read_model, known))
            }
        }

        $crate::bindings::export!(CounterpointSlice with_types_in $crate::bindings);
    };
}
