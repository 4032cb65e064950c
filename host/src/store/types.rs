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
///
/// Serialized as a **decimal string** (`"42"`), everywhere: JSON numbers lose precision past
/// 2^53 in JavaScript, and `serde_json::Value` cannot hold integers past u64 at all.
/// Deserialized from such a string or, for compatibility, from an integer (JSON, MessagePack,
/// and the 16-byte big-endian form a derived `u128` took in MessagePack). Anything else
/// (negative, fractional, not only digits, past u128) is refused. The formats used need to be
/// self-describing (JSON and MessagePack are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// A text that is not a position: positions are 1 to 39 decimal digits, below 2^128.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a position (a decimal string of digits only, below 2^128)")]
pub struct InvalidPosition(String);

impl InvalidPosition {
    fn of(text: &str) -> Self {
        // Quoted, and cut short: the text may be anything a client sent.
        let shown: String = text.chars().take(48).collect();
        InvalidPosition(if shown.len() < text.len() { format!("{shown:?}…") } else { format!("{shown:?}") })
    }
}

/// Digits only: no sign, no blanks, no fraction, no exponent, no hex.
impl std::str::FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, InvalidPosition> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPosition::of(text));
        }
        text.parse::<u128>().map(Position).map_err(|_| InvalidPosition::of(text))
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PositionVisitor)
    }
}

struct PositionVisitor;

impl serde::de::Visitor<'_> for PositionVisitor {
    type Value = Position;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a position: a decimal string (or a non-negative integer)")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Position, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Position, E> {
        Ok(Position::new(value))
    }

    fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<Position, E> {
        Ok(Position(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Position, E> {
        u64::try_from(value).map(Position::new).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(value), &self))
    }

    fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<Position, E> {
        u128::try_from(value).map(Position).map_err(|_| E::custom(format!("{value} is not a position (negative)")))
    }

    /// A JSON number with a fraction or an exponent, or an integer past u64 (which JSON parsers
    /// turn into a float, losing digits).
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Position, E> {
        Err(E::custom(format!(
            "{value} is not a position: give positions as decimal strings (a JSON number must be a whole number below 2^64)"
        )))
    }

    /// The 16 big-endian bytes MessagePack holds for a `u128` (how a derived `Position` was
    /// written there).
    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Position, E> {
        let wide: [u8; 16] = bytes.try_into().map_err(|_| E::invalid_length(bytes.len(), &"16 bytes of a 128-bit position"))?;
        Ok(Position(u128::from_be_bytes(wide)))
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

    /// Refuses events that claim to be the host's own records: only the host writes
    /// `counterpoint.*` events (a forged checkpoint, dead letter or idempotency record would
    /// make it skip work or answer for a command that never ran). For what slices and clients
    /// append.
    pub fn refuse_host_records(events: &[Event]) -> Result<(), StoreError> {
        match events.iter().position(Event::is_host_record) {
            Some(i) => Err(StoreError::InvalidInput(format!(
                "event {i} has type {:?}: the prefix \"counterpoint.\" is reserved for the host's own records",
                events[i].event_type
            ))),
            None => Ok(()),
        }
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

    /// An item with no types and no tags matches every event.
    pub fn matches_every_event(&self) -> bool {
        self.types.is_empty() && self.tags.is_empty()
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

    /// No items, or an item that matches every event: the index need not be searched.
    pub fn matches_every_event(&self) -> bool {
        self.items.is_empty() || self.items.iter().any(QueryItem::matches_every_event)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A position past u64 (FoundationDB's versionstamps reach 96 bits).
    const WIDE: u128 = (1 << 95) + 1;

    #[test]
    fn positions_are_decimal_strings_in_json_past_u64() {
        let position = Position::from_u128(WIDE);
        let text = serde_json::to_string(&position).unwrap();
        assert_eq!(text, format!("\"{WIDE}\""));
        assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), position);
        // Through serde_json::Value (what the API's `json!` builds): no panic, a string.
        let value = serde_json::to_value(position).unwrap();
        assert_eq!(value, serde_json::Value::String(WIDE.to_string()));
        assert_eq!(serde_json::from_value::<Position>(value).unwrap(), position);
        let event = SequencedEvent { position, event: Event::new("T") };
        assert_eq!(serde_json::to_value(&event).unwrap()["position"], WIDE.to_string());
        let extremes = [Position::ZERO, Position::from_u128(u128::MAX)];
        for p in extremes {
            assert_eq!(serde_json::from_value::<Position>(serde_json::to_value(p).unwrap()).unwrap(), p);
        }
    }

    #[test]
    fn positions_round_trip_through_messagepack() {
        let position = Position::from_u128(WIDE);
        let bytes = rmp_serde::to_vec_named(&position).unwrap();
        assert_eq!(rmp_serde::from_slice::<Position>(&bytes).unwrap(), position);
        let options = ReadOptions::default().after(position);
        assert_eq!(rmp_serde::from_slice::<ReadOptions>(&rmp_serde::to_vec_named(&options).unwrap()).unwrap(), options);
    }

    #[test]
    fn integers_written_before_still_deserialize() {
        // JSON integers, as clients sent and as older versions wrote.
        assert_eq!(serde_json::from_str::<Position>("42").unwrap(), Position::new(42));
        assert_eq!(serde_json::from_str::<Position>(&u64::MAX.to_string()).unwrap(), Position::new(u64::MAX));
        assert_eq!(serde_json::from_value::<Position>(serde_json::json!(7)).unwrap(), Position::new(7));
        let options: ReadOptions = serde_json::from_str(r#"{"after": 3, "limit": 2}"#).unwrap();
        assert_eq!(options.after, Some(Position::new(3)));
        // MessagePack integers, and the 16-byte form a derived u128 wrote.
        assert_eq!(rmp_serde::from_slice::<Position>(&rmp_serde::to_vec(&42u64).unwrap()).unwrap(), Position::new(42));
        assert_eq!(rmp_serde::from_slice::<Position>(&rmp_serde::to_vec(&WIDE).unwrap()).unwrap(), Position::from_u128(WIDE));
        assert_eq!(rmp_serde::from_slice::<Position>(&rmp_serde::to_vec(&5i64).unwrap()).unwrap(), Position::new(5));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["-1", "1.5", "1e3", "\"\"", "\"-1\"", "\"+1\"", "\" 1\"", "\"0x10\"", "\"abc\"", "\"340282366920938463463374607431768211456\"", "true", "null", "{}", "[1]", "340282366920938463463374607431768211455"] {
            assert!(serde_json::from_str::<Position>(bad).is_err(), "{bad} is not a position");
        }
        assert!(rmp_serde::from_slice::<Position>(&rmp_serde::to_vec(&-1i64).unwrap()).is_err());
        assert!(rmp_serde::from_slice::<Position>(&rmp_serde::to_vec(&1.5f64).unwrap()).is_err());
    }
}
