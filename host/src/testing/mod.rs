//! Given/when/then for compiled slices: the way a slice's author tests it, in any language.
//!
//! A spec file (JSON) lists scenarios: events already in the log, then a command or a
//! projection, then what must follow: the events appended, an error, or a result. Each
//! scenario runs the real component in the real host on a fresh in-memory store.
//!
//! ```json
//! { "scenarios": [ {
//!     "name": "an order cannot be placed twice",
//!     "given": [ { "type": "OrderPlaced", "data": { "order_id": "o-1", "customer_id": "c-1" } } ],
//!     "when":  { "command": "place-order", "input": { "order_id": "o-1", "customer_id": "c-2" } },
//!     "then":  { "error": "rejected" }
//! } ] }
//! ```
//!
//! A given event's tags are computed by the slice's `tags` export unless listed (`"tags"`),
//! which is how events of other slices are given. Expected objects match when every key they
//! list matches (extra keys in the actual value are fine); arrays and scalars match exactly.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::codec::{json_to_msgpack, msgpack_to_json};
use crate::runner::CommandRunner;
use crate::runtime::{Access, ReadAppender, Slice};
use crate::store::{Event, MemoryStore, Query, ReadOptions, SharedStore, Tenant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub given: Vec<GivenEvent>,
    pub when: When,
    pub then: Then,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    /// When absent, the slice under test computes them.
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum When {
    Command {
        command: String,
        #[serde(default)]
        input: Value,
    },
    Projection {
        projection: String,
        #[serde(default)]
        params: Value,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Then {
    /// Exactly these events were appended, in order (each matched by type, and by data and
    /// tags when listed).
    pub events: Option<Vec<ExpectedEvent>>,
    /// The error kind: `rejected`, `invalid-input`, `not-found`, `conflict`, `store`, `trapped`,
    /// `timeout`, `out-of-memory`.
    pub error: Option<String>,
    /// Text the error message contains.
    pub message: Option<String>,
    /// The command's or projection's result.
    pub result: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Option<Value>,
    pub tags: Option<Vec<String>>,
}

/// The outcome of one scenario: `Err` says what did not match.
pub struct Outcome {
    pub name: String,
    pub result: Result<(), String>,
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid spec: {e}"))
    }
}

/// Runs every scenario of `spec` against `slice`.
pub async fn run(slice: &Arc<Slice>, spec: &Spec) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for scenario in &spec.scenarios {
        let result = run_scenario(slice, scenario).await;
        outcomes.push(Outcome { name: scenario.name.clone(), result });
    }
    outcomes
}

async fn run_scenario(slice: &Arc<Slice>, scenario: &Scenario) -> Result<(), String> {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let tenant = Tenant::new("test").expect("valid");
    let mut given = Vec::new();
    for event in &scenario.given {
        let data = json_to_msgpack(&event.data);
        let tags = match &event.tags {
            Some(tags) => tags.clone(),
            None => {
                let io = ReadAppender::new(store.clone(), tenant.clone(), Access::ReadOnly);
                slice
                    .tags(io, &event.event_type, &data)
                    .await
                    .map_err(|e| format!("given {}: the slice could not tag it ({e}); list its tags", event.event_type))?
            }
        };
        given.push(Event { event_type: event.event_type.clone(), tags, data, metadata: Vec::new() });
    }
    let head = if given.is_empty() {
        crate::store::Position::ZERO
    } else {
        let positions = store.append(&tenant, given, vec![]).await.map_err(|e| format!("given: {e}"))?;
        *positions.last().expect("an append returns its positions")
    };

    let outcome = match &scenario.when {
        When::Command { command, input } => CommandRunner::default()
            .run(slice, &store, &tenant, command, &json_to_msgpack(input))
            .await
            .map(|out| out.output),
        When::Projection { projection, params } => {
            crate::projections::run(slice, &store, &tenant, projection, &json_to_msgpack(params)).await
        }
    };
    let then = &scenario.then;
    match (&outcome, &then.error) {
        (Err(err), Some(kind)) => {
            if err.kind() != kind {
                return Err(format!("expected a {kind} error, got {}: {err}", err.kind()));
            }
            if let Some(text) = &then.message
                && !err.to_string().contains(text.as_str())
            {
                return Err(format!("the error {err:?} does not contain {text:?}"));
            }
        }
        (Err(err), None) => return Err(format!("unexpected {} error: {err}", err.kind())),
        (Ok(_), Some(kind)) => return Err(format!("expected a {kind} error, but it succeeded")),
        (Ok(output), None) => {
            if let Some(expected) = &then.result {
                let actual = msgpack_to_json(output).unwrap_or(Value::Null);
                if !matches_json(expected, &actual) {
                    return Err(format!("result {actual} does not match {expected}"));
                }
            }
        }
    }

    let options = ReadOptions { after: Some(head), ..Default::default() };
    let read_error = |e: crate::store::StoreError| format!("reading what was appended: {e}");
    let (appended, _) = store.read(&tenant, Query::all(), options).await.map_err(read_error)?.collect().await.map_err(read_error)?;
    if let Some(expected) = &then.events {
        if expected.len() != appended.len() {
            let types: Vec<&str> = appended.iter().map(|e| e.event.event_type.as_str()).collect();
            return Err(format!("expected {} appended events, got {}: {types:?}", expected.len(), appended.len()));
        }
        for (i, (want, got)) in expected.iter().zip(&appended).enumerate() {
            if want.event_type != got.event.event_type {
                return Err(format!("event {i}: expected type {}, got {}", want.event_type, got.event.event_type));
            }
            if let Some(data) = &want.data {
                let actual = msgpack_to_json(&got.event.data).unwrap_or(Value::Null);
                if !matches_json(data, &actual) {
                    return Err(format!("event {i} ({}): data {actual} does not match {data}", want.event_type));
                }
            }
            if let Some(tags) = &want.tags {
                let mut tags = tags.clone();
                tags.sort();
                if tags != got.event.tags {
                    return Err(format!("event {i} ({}): tags {:?}, expected {tags:?}", want.event_type, got.event.tags));
                }
            }
        }
    } else if matches!(scenario.when, When::Command { .. }) && outcome.is_err() && !appended.is_empty() {
        return Err(format!("the command failed but appended {} events", appended.len()));
    }
    Ok(())
}

/// `expected` matches `actual` when every key of an expected object matches; arrays and
/// scalars must be equal (numbers compared as numbers).
pub fn matches_json(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            want.iter().all(|(k, v)| got.get(k).is_some_and(|g| matches_json(v, g)))
        }
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| matches_json(w, g))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == actual,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn objects_match_by_subset_arrays_exactly() {
        assert!(super::matches_json(&json!({"a": 1}), &json!({"a": 1.0, "b": 2})));
        assert!(!super::matches_json(&json!({"a": 1, "c": 3}), &json!({"a": 1})));
        assert!(!super::matches_json(&json!([1, 2]), &json!([1, 2, 3])));
        assert!(super::matches_json(&json!([{"x": 1}]), &json!([{"x": 1, "y": 0}])));
    }
}
