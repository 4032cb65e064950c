//! What the handlers and the OpenAPI document both say about the wire format. A leaf: it
//! imports neither, so neither has to import the other.

use serde_json::Value;
use utoipa::ToSchema;

/// How every position travels.
pub const POSITION: &str = "A position in the tenant's log, as a decimal string; integers accepted on input (below 2^64). \
A string because positions can exceed 2^53, where JavaScript numbers stop being exact, and 2^64 (FoundationDB's \
versionstamps have 96 bits).";

/// The same, for an exclusive lower bound given in a query string or header.
pub const POSITION_AFTER: &str = "Only events after this position (exclusive): a decimal string, as the API gives positions";

/// The same, for a position a query waits for.
pub const POSITION_AT_LEAST: &str =
    "A position (e.g. one a command returned), as a decimal string: answer only once the read model includes it";

/// A position: see [`POSITION`].
#[derive(ToSchema)]
#[schema(as = Position, pattern = "^[0-9]+$", example = "42", description = POSITION)]
#[allow(dead_code)]
pub struct PositionDoc(String);

/// The media types `events/read` answers in (`Accept`).
pub const MEDIA_JSON: &str = "application/json";
pub const MEDIA_NDJSON: &str = "application/x-ndjson";
pub const MEDIA_MSGPACK: &str = "application/msgpack";

/// What `events/read` says about its formats.
pub const READ_FORMATS: &str = "By `Accept`: `application/json` (the default) answers `{events, position}`, at most 10,000 \
events per response (page on with `after`). `application/x-ndjson` and `application/msgpack` stream the whole read \
(chunked, no page cap; `limit` still applies): one value per event, then a last value `{\"position\": \"N\"}` — the \
read's consistency position, and the sign that the read completed (a stream cut short has none). NDJSON events are the \
JSON events, one per line; MessagePack events are maps with `position` (decimal string), `type`, `tags`, `data` \
(`bin`: the stored bytes, not re-encoded) and `metadata`. Any other type is `406 not_acceptable`.";

/// Every error: a stable `code` (`condition_failed`, `conflict`, `rejected`, `invalid_input`,
/// `not_found`, `unauthorized`, `forbidden`, `payload_too_large`, `rate_limited`,
/// `quota_exceeded`, `slice_trapped`, `slice_timeout`, `slice_out_of_memory`, `slice_busy`,
/// `invalid_component`, `incompatible_contract`, `store_unavailable`, `catalog_damaged`, `method_not_allowed`, `not_acceptable`)
/// and a message for people.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    code: String,
    message: String,
}

/// A command's result.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CommandResponse {
    /// What the command returned, as JSON.
    result: Value,
    /// Positions of the events it appended.
    positions: Vec<PositionDoc>,
    /// Times it ran (re-runs after conflicts); 0 when an Idempotency-Key replayed a result.
    attempts: u32,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProjectionResponse {
    result: Value,
}

/// Items are OR'ed; no items matches every event.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct QueryDoc {
    items: Vec<QueryItemDoc>,
}

/// Matches an event whose type is one of `types` (none: any) and whose tags include all `tags`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct QueryItemDoc {
    types: Vec<String>,
    tags: Vec<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadRequestDoc {
    query: Option<QueryDoc>,
    /// Exclusive.
    after: Option<PositionDoc>,
    /// At most 10,000 per response.
    limit: Option<u64>,
    backwards: Option<bool>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadResponse {
    events: Vec<EventDoc>,
    /// Up to where the read saw every matching event; guard an append with it.
    position: PositionDoc,
}

/// One value of a streamed read (`application/x-ndjson`: a line; `application/msgpack`: a
/// MessagePack value): an event, or — last, without `type` — `{"position": "N"}`, the read's
/// consistency position. MessagePack events carry `data` as `bin`, the stored bytes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamedValueDoc {
    /// The event's position; in the last value, the read's consistency position.
    position: PositionDoc,
    /// Absent in the last value.
    #[schema(rename = "type")]
    event_type: Option<String>,
    tags: Option<Vec<String>>,
    data: Option<DataDoc>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventDoc {
    position: PositionDoc,
    #[schema(rename = "type")]
    event_type: String,
    tags: Vec<String>,
    data: DataDoc,
    metadata: std::collections::BTreeMap<String, String>,
}

/// `{"json": …}` when the data is MessagePack, else `{"base64": "…"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DataDoc {
    json: Option<Value>,
    base64: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AppendRequestDoc {
    events: Vec<NewEventDoc>,
    conditions: Option<Vec<ConditionDoc>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewEventDoc {
    #[schema(rename = "type")]
    event_type: String,
    tags: Option<Vec<String>>,
    data: Option<DataDoc>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// Fail the append if an event matching `query` exists after `after` (none: ever).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConditionDoc {
    query: QueryDoc,
    after: Option<PositionDoc>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AppendResponse {
    positions: Vec<PositionDoc>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SliceDoc {
    name: String,
    version: String,
    /// SHA-256 of the component, hex.
    hash: String,
    size: u64,
    contract: String,
    /// Seconds since the Unix epoch.
    deployed_at: u64,
    /// Commands, projections (with their fields), emitted event types, automations.
    description: Value,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SliceList {
    slices: Vec<SliceDoc>,
    /// What the tenant's catalog holds but could not load because a file is damaged:
    /// `{"name": slice (null: the whole manifest), "error": the file and what to do}`. Deploying
    /// the slice again heals it.
    unavailable: Vec<Value>,
}

/// What `GET /v1/t/{tenant}/hot-boundaries` answers: empty while nothing is contended.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HotBoundariesDoc {
    /// The longest queue first.
    hot_boundaries: Vec<HotBoundaryDoc>,
}

/// A query item commands queue on now.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HotBoundaryDoc {
    /// The item's event types, sorted (empty: any type).
    types: Vec<String>,
    /// The item's tags, sorted.
    tags: Vec<String>,
    /// Commands holding or waiting for a turn on it (the one running included).
    queued: u64,
    /// Whether a command decides in its turn on it now.
    running: bool,
}
