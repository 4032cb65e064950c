//! A component for a contract version the host does not speak: `wit/` is a copy of the
//! contract with the package version raised to 0.2.0. It is built directly on wit-bindgen
//! because the SDK is bound to 0.1.0. The host must refuse it before running anything.

wit_bindgen::generate!({ path: "wit", world: "slice-world" });

use exports::counterpoint::slice::slice::{CommandCall, Error, Query, ReadOptions, SequencedEvent};
use exports::counterpoint::slice::slice::{Description, Guest, GuestProjection, Projection};

struct FutureSlice;

fn unsupported() -> Error {
    Error::NotFound("the future-version fixture implements nothing".into())
}

impl Guest for FutureSlice {
    type Projection = NoProjection;

    fn describe() -> Description {
        Description {
            name: "future-version".into(),
            version: "0.2.0".into(),
            commands: Vec::new(),
            projections: Vec::new(),
            emits: Vec::new(),
            automations: Vec::new(),
        }
    }

    fn execute(_: String, _: Vec<u8>) -> Result<Vec<u8>, Error> {
        Err(unsupported())
    }

    fn tags(_: String, _: Vec<u8>) -> Result<Vec<String>, Error> {
        Err(unsupported())
    }

    fn react(_: String, _: SequencedEvent) -> Result<Vec<CommandCall>, Error> {
        Err(unsupported())
    }
}

struct NoProjection;

impl GuestProjection for NoProjection {
    fn open(_: String, _: Vec<u8>) -> Result<Projection, Error> {
        Err(unsupported())
    }

    fn source(&self) -> (Query, ReadOptions) {
        unreachable!("never opened")
    }

    fn fold(&self, _: Vec<SequencedEvent>) -> Result<(), Error> {
        Err(unsupported())
    }

    fn finish(&self) -> Result<Vec<u8>, Error> {
        Err(unsupported())
    }
}

export!(FutureSlice);
