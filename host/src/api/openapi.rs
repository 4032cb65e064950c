//! The OpenAPI document at `/v1/openapi.json`, generated from the handlers' annotations and the
//! schema types of `schema.rs` (which mirror the JSON the handlers read and write).

use axum::Json;
use serde_json::Value;
use utoipa::OpenApi;

use super::schema::{
    AppendRequestDoc, AppendResponse, CommandResponse, ConditionDoc, DataDoc, ErrorBody, ErrorDetail, EventDoc, HotBoundariesDoc,
    HotBoundaryDoc, NewEventDoc, PositionDoc, ProjectionResponse, QueryDoc, QueryItemDoc, ReadRequestDoc, ReadResponse, SliceDoc, SliceList, StreamedValueDoc,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Counterpoint", description = "Feature slices over a DCB event store. Every /v1/t/{tenant} route needs `Authorization: Bearer <token>`. \
Positions are decimal strings everywhere (JSON bodies, SSE ids); integers are accepted on input."),
    paths(
        super::commands::run,
        super::commands::query,
        super::hot_boundaries::list,
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
        HotBoundariesDoc, HotBoundaryDoc, crate::backup::BackupReport
    ))
)]
struct Document;

pub async fn document() -> Json<Value> {
    Json(serde_json::to_value(Document::openapi()).expect("the OpenAPI document serializes"))
}
