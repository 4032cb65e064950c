//! What the handlers and the OpenAPI document both say about the wire format. A leaf: it
//! imports neither, so neither has to import the other.

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
