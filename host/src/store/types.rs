//! The DCB vocabulary: events, positions, queries, read options and append conditions.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// A position in one tenant's log: unique and strictly increasing, gaps allowed; opaque to
/// slices, which only compare positions.
///
/// 128 bits, so that every backend's positions fit: the embedded and in-memory stores count
/// 1, 2, 3, ...; the FoundationDB backend uses 12-byte versionstamps.
/// `Position::ZERO` is "before the first event": the head of an empty log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(u128);

impl Position {
    pub const ZERO: Position = Position(0);

    pub const fn new(value: u64) -> Self {
        Position(value as u128)
    }

    pub const fn from_u128(value: u128) -> Self {
        Position(value)
    }

    pub const fn get(self) -> u128 {
        self.0
    }

    /// For backends that count positions 1, 2, 3, ...: the count, saturating.
    pub fn dense(self) -> u64 {
        u64::try_from(self.0).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant's name: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
///
/// Each tenant has its own log; positions are per tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

impl Tenant {
    pub const MAX_LEN: usize = 64;

    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if name.is_empty() || name.len() > Self::MAX_LEN || !name.chars().all(valid_char) {
            return Err(StoreError::InvalidInput(format!(
                "tenant name {name:?} must be 1 to {} characters of a-z, 0-9, '-' and '_'",
                Self::MAX_LEN
            )));
        }
        Ok(Tenant(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tenant {
    type Error = StoreError;
    fn try_from(name: String) -> Result<Self, StoreError> {
        Tenant::new(name)
    }
}

impl From<Tenant> for String {
    fn from(tenant: Tenant) -> String {
        tenant.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event: a type, a set of tags, opaque data and optional metadata.
///
/// Tags are a set: the store keeps them sorted and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
}

impl Event {
    /// Whether this is one of the host's own records (`counterpoint.*`: checkpoints, dead
    /// letters, idempotency keys), which automations and read models never see.
    pub fn is_host_record(&self) -> bool {
        self.event_type.starts_with("counterpoint.")
    }

    pub fn new(event_type: impl Into<String>) -> Self {
        Event { event_type: event_type.into(), ..Default::default() }
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// The bytes this event occupies, as counted against the limits.
    pub fn payload_len(&self) -> usize {
        self.data.len() + self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

/// A stored event with its position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedEvent {
    pub position: Position,
    #[serde(flatten)]
    pub event: Event,
}

/// One alternative of a query: the event's type is one of `types` (none: any type) and its
/// tags contain every one of `tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryItem {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl QueryItem {
    pub fn types<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        QueryItem { types: types.into_iter().map(Into::into).collect(), tags: Vec::new() }
    }

    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(tags: I) -> Self {
        QueryItem { types: Vec::new(), tags: tags.into_iter().map(Into::into).collect() }
    }

    pub fn with_type(mut self, event_type: impl Into<String>) -> Self {
        self.types.push(event_type.into());
        self
    }

    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && self.tags.iter().all(|t| event.tags.iter().any(|e| e == t))
    }
}

/// A DCB query: items OR'ed. No items matches every event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    #[serde(default)]
    pub items: Vec<QueryItem>,
}

impl Query {
    /// Matches every event.
    pub fn all() -> Self {
        Query::default()
    }

    pub fn item(item: QueryItem) -> Self {
        Query { items: vec![item] }
    }

    pub fn or(mut self, item: QueryItem) -> Self {
        self.items.push(item);
        self
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.items.is_empty() || self.items.iter().any(|item| item.matches(event))
    }
}

impl From<QueryItem> for Query {
    fn from(item: QueryItem) -> Self {
        Query::item(item)
    }
}

/// Which matching events a read selects: those after `after` (exclusive), in position order
/// (newest first when `backwards`), at most `limit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    #[serde(default)]
    pub after: Option<Position>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub backwards: bool,
}

impl ReadOptions {
    pub fn after(mut self, position: Position) -> Self {
        self.after = Some(position);
        self
    }

    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn backwards(mut self) -> Self {
        self.backwards = true;
        self
    }
}

/// "Fail the append if any event matching `query` exists after `after`" (exclusive; `None`:
/// any matching event ever fails it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCondition {
    pub query: Query,
    #[serde(default)]
    pub after: Option<Position>,
}

impl AppendCondition {
    pub fn new(query: impl Into<Query>, after: Option<Position>) -> Self {
        AppendCondition { query: query.into(), after }
    }
}
