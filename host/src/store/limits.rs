//! Limits on what one append may carry, and the validation of every request against them.
//!
//! Validation runs before anything is written, so a refused request leaves the log as it was.

use serde::{Deserialize, Serialize};

use super::{AppendCondition, Event, Query, ReadOptions, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Bytes in an event type name.
    pub max_type_len: usize,
    /// Bytes in one tag.
    pub max_tag_len: usize,
    pub max_tags_per_event: usize,
    /// Bytes of an event's data plus its metadata.
    pub max_event_bytes: usize,
    pub max_metadata_entries: usize,
    pub max_events_per_append: usize,
    /// Bytes of data and metadata of all events of one append.
    pub max_append_bytes: usize,
    /// Items in a query, and conditions in an append.
    pub max_query_items: usize,
    pub max_conditions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_type_len: 256,
            max_tag_len: 256,
            max_tags_per_event: 64,
            max_event_bytes: 1 << 20,
            max_metadata_entries: 64,
            max_events_per_append: 10_000,
            max_append_bytes: 16 << 20,
            max_query_items: 256,
            max_conditions: 256,
        }
    }
}

fn over(what: &'static str, limit: usize, actual: usize) -> Result<(), StoreError> {
    if actual > limit {
        Err(StoreError::LimitExceeded { what, limit: limit as u64, actual: actual as u64 })
    } else {
        Ok(())
    }
}

fn invalid(message: String) -> Result<(), StoreError> {
    Err(StoreError::InvalidInput(message))
}

impl Limits {
    pub fn check_query(&self, query: &Query) -> Result<(), StoreError> {
        over("number of query items", self.max_query_items, query.items.len())?;
        for item in &query.items {
            for t in &item.types {
                self.check_name("event type in a query", t, self.max_type_len)?;
            }
            for t in &item.tags {
                self.check_name("tag in a query", t, self.max_tag_len)?;
            }
        }
        Ok(())
    }

    pub fn check_read(&self, query: &Query, options: &ReadOptions) -> Result<(), StoreError> {
        if options.limit == Some(0) {
            return invalid("limit must be at least 1 (omit it to read everything)".into());
        }
        self.check_query(query)
    }

    /// Checks an append and puts each event's tags in canonical order (sorted, no duplicates).
    pub fn check_append(&self, events: &mut [Event], conditions: &[AppendCondition]) -> Result<(), StoreError> {
        if events.is_empty() {
            return invalid("an append needs at least one event".into());
        }
        over("events in one append", self.max_events_per_append, events.len())?;
        over("conditions in one append", self.max_conditions, conditions.len())?;
        let mut total = 0usize;
        for event in events.iter_mut() {
            self.check_name("event type", &event.event_type, self.max_type_len)?;
            over("tags on one event", self.max_tags_per_event, event.tags.len())?;
            for tag in &event.tags {
                self.check_name("tag", tag, self.max_tag_len)?;
            }
            over("metadata entries on one event", self.max_metadata_entries, event.metadata.len())?;
            for (key, _) in &event.metadata {
                if key.is_empty() {
                    return invalid("a metadata key is empty".into());
                }
            }
            over("event size in bytes", self.max_event_bytes, event.payload_len())?;
            total += event.payload_len();
            event.tags.sort_unstable();
            event.tags.dedup();
        }
        over("append size in bytes", self.max_append_bytes, total)?;
        for condition in conditions {
            self.check_query(&condition.query)?;
        }
        Ok(())
    }

    fn check_name(&self, what: &'static str, name: &str, max: usize) -> Result<(), StoreError> {
        if name.is_empty() {
            return invalid(format!("{what} is empty"));
        }
        over(what_len(what), max, name.len())
    }
}

fn what_len(what: &'static str) -> &'static str {
    match what {
        "event type" | "event type in a query" => "event type length in bytes",
        _ => "tag length in bytes",
    }
}
