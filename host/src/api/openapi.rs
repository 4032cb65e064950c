//! The OpenAPI document at `/v1/openapi.json`, generated from the handlers' annotations and the
//! schema types below (which mirror the JSON the handlers read and write).

use axum::Json;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::schema::PositionDoc;

#[derive(OpenApi)]
#[openapi(
    info(title = "Counterpoint", description = "Feature slices over a DCB event store. Every /v1/t/{tenant} route needs `Authorization: Bearer <token>`. \
Positions are decimal strings everywhere (JSON bodies, SSE ids); integers are accepted on input."),
    paths(
        super::commands::run,
        super::commands::query,
        super::commands::hot_boundaries,
        super::events::read,
        super::events::append,
        super::events::stream,
        super::slices::list,
        super::slices::describe,
        super::slices::deploy,
        super::slices::remove,
        super::automations::list,
        super::automations::dead_letters,
        super::automations::resolve,
        super::readmodels::list,
        super::readmodels::query,
        super::readmodels::rebuild,
        super::admin::create,
        super::admin::list,
        super::admin::remove,
        super::admin::replace_token,
        super::backup::backup,
    ),
    components(schemas(
        PositionDoc, ErrorBody, ErrorDetail, CommandResponse, ProjectionResponse, QueryDoc, QueryItemDoc, ReadRequestDoc,
        ReadResponse, StreamedValueDoc, EventDoc, DataDoc, AppendRequestDoc, NewEventDoc, ConditionDoc, AppendResponse, SliceDoc, SliceList,
        crate::backup::BackupReport
    ))
)]
struct Document;

pub async fn document() -> Json<Value> {
    Json(serde_json::to_value(Document::openapi()).expect("the OpenAPI document serializes"))
}

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
