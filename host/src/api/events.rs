//! The raw DCB API, for clients and tools that are not slices: read, append with conditions,
//! and a live stream (Server-Sent Events) resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OwnedSemaphorePermit;

use super::commands::json_body;
use super::read_formats::{self, Format};
use super::{ApiError, SharedState};
use crate::codec::data_from_json;
use crate::store::{AppendCondition, Event, Position, Query, QueryItem, ReadOptions, Subscription};
use crate::tenants::AccessWatch;

/// The most events one read response holds; page on with `after`.
pub const MAX_READ: u64 = 10_000;

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::invalid_input(format!("{what}: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadRequest {
    #[serde(default)]
    query: Query,
    after: Option<Position>,
    limit: Option<u64>,
    #[serde(default)]
    backwards: bool,
}

#[utoipa::path(post, path = "/v1/t/{tenant}/events/read",
    params(("tenant" = String, Path), ("Accept" = Option<String>, Header, description = super::schema::READ_FORMATS)),
    request_body = super::schema::ReadRequestDoc,
    responses((status = 200, description = super::schema::READ_FORMATS, content((super::schema::ReadResponse = "application/json"),
            (super::schema::StreamedValueDoc = "application/x-ndjson"), (super::schema::StreamedValueDoc = "application/msgpack"))),
        (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody),
        (status = 406, description = "not_acceptable: Accept names none of the formats", body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/events/read`: `{query: {items: [{types, tags}]}, after, limit, backwards}`
/// → `{events, position}`, at most 10,000 events per response; with `Accept:
/// application/x-ndjson` or `application/msgpack`, the whole read streamed, then its position.
pub async fn read(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let format = Format::negotiate(&headers)?;
    let request: ReadRequest = parse(json_body(body)?, "read request")?;
    if request.limit == Some(0) {
        return Err(ApiError::invalid_input("limit must be at least 1 (omit it to read everything)"));
    }
    // NDJSON and MessagePack stream the whole read (no page cap); JSON is a page.
    let limit = match format {
        Format::Json => Some(request.limit.unwrap_or(MAX_READ).min(MAX_READ)),
        Format::Ndjson | Format::Msgpack => request.limit,
    };
    let options = ReadOptions { after: request.after, limit, backwards: request.backwards };
    let read = state.store.read(&caller.tenant, request.query, options).await?;
    Ok(read_formats::answer(format, read).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendRequest {
    events: Vec<NewEvent>,
    #[serde(default)]
    conditions: Vec<AppendCondition>,
}

#[utoipa::path(post, path = "/v1/t/{tenant}/events/append", params(("tenant" = String, Path)),
    request_body = super::schema::AppendRequestDoc,
    responses((status = 200, body = super::schema::AppendResponse), (status = 409, description = "condition_failed", body = super::schema::ErrorBody),
        (status = 413, body = super::schema::ErrorBody), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/events/append`: `{events: [{type, tags, data: {json}|{base64},
/// metadata}], conditions: [{query, after}]}` → `{positions}`; a failed condition is
/// `409 condition_failed`.
pub async fn append(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let request: AppendRequest = parse(json_body(body)?, "append request")?;
    let mut events = Vec::with_capacity(request.events.len());
    for (i, e) in request.events.into_iter().enumerate() {
        let data = data_from_json(&e.data).map_err(|m| ApiError::invalid_input(format!("events[{i}]: {m}")))?;
        events.push(Event { event_type: e.event_type, tags: e.tags, data, metadata: e.metadata.into_iter().collect() });
    }
    Event::refuse_host_records(&events)?;
    caller.check_log_size(&state.store).await?;
    let started = Instant::now();
    let positions = state.store.append(&caller.tenant, events, request.conditions).await?;
    state.metrics.store_append_seconds.observe(started.elapsed().as_secs_f64());
    let tenant_labels = super::metrics::TenantLabels { tenant: caller.tenant.to_string() };
    state.metrics.appended_events.get_or_create(&tenant_labels).inc_by(positions.len() as u64);
    Ok(Json(json!({ "positions": positions })))
}

#[utoipa::path(get, path = "/v1/t/{tenant}/events/stream",
    params(("tenant" = String, Path), ("type" = Option<Vec<String>>, Query), ("tag" = Option<Vec<String>>, Query),
        ("query" = Option<String>, Query, description = "A JSON query instead of type/tag"),
        ("after" = Option<String>, Query, pattern = "^[0-9]+$", description = super::schema::POSITION_AFTER),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]+$", description = "The `id` of the last event received (a position): resume after it")),
    responses((status = 200, description = "text/event-stream: id = position, data = the event", content_type = "text/event-stream"), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, description = "rate_limited, or too_many_streams: the tenant has `max_streams` open", body = super::schema::ErrorBody)))]
/// `GET /v1/t/{tenant}/events/stream?type=T&tag=x&after=N` (or `query=<JSON query>`): every
/// matching event after `N` (or after `Last-Event-ID`), then each new one as it is appended.
/// Each SSE event has `id` = its position (decimal) and `data` = the event as JSON. A tenant has
/// at most `max_streams` open; a stream ends when its token is replaced or its tenant removed.
pub async fn stream(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    // Taken first, so a refused stream costs no parsing and no subscription.
    let slot = caller.state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::too_many_streams(format!(
            "tenant {} has all its {} live streams open; close one first",
            caller.tenant, caller.state.limits.max_streams
        ))
    })?;
    let access = state.tenants.watch_access(super::bearer(&headers)?, &caller.tenant, caller.state.clone());
    let mut item = QueryItem::default();
    let mut query: Option<Query> = None;
    let mut after: Option<Position> = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "type" => item.types.push(value.into_owned()),
            "tag" => item.tags.push(value.into_owned()),
            "query" => {
                let parsed: Value = serde_json::from_str(&value).map_err(|e| ApiError::invalid_input(format!("query: {e}")))?;
                query = Some(parse(parsed, "query")?);
            }
            "after" => after = Some(parse_position(&value)?),
            other => return Err(ApiError::invalid_input(format!("unknown parameter {other:?}; use type, tag, query, after"))),
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let last = last.to_str().map_err(|_| ApiError::invalid_input("Last-Event-ID is not ASCII"))?;
        after = Some(parse_position(last)?);
    }
    let query = match (query, item.types.is_empty() && item.tags.is_empty()) {
        (Some(_), false) => return Err(ApiError::invalid_input("give either query or type/tag, not both")),
        (Some(query), true) => query,
        (None, true) => Query::all(),
        (None, false) => Query::item(item),
    };
    let subscription = state.store.subscribe(&caller.tenant, query, after).await?;
    let shutdown = state.shutdown.subscribe();
    let live = Live { subscription, shutdown, access, _slot: slot, _state: state.clone() };
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let next = tokio::select! {
            next = live.subscription.next() => Some(next),
            _ = live.shutdown.wait_for(|stopping| *stopping) => None,
            () = live.access.lost() => None,
        };
        match next? {
            Ok(event) => {
                let id = event.position.to_string();
                let sse = SseEvent::default().id(id).event("event").data(read_formats::event_json(&event));
                Some((Ok(sse), live))
            }
            Err(err) => {
                tracing::warn!("live stream ended: {err}");
                None
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A live stream's subscription and the server state it keeps alive, dropped in this order: once
/// the server sees its state released at shutdown, no stream holds the store either. The stream
/// ends when the server shuts down or the token it was opened with stops giving access; its slot
/// among the tenant's streams is given back when it is dropped (the client went away, or it ended).
struct Live {
    subscription: Subscription,
    shutdown: tokio::sync::watch::Receiver<bool>,
    access: AccessWatch,
    _slot: OwnedSemaphorePermit,
    _state: SharedState,
}

/// A position in a query string or header: decimal digits, as the API gives positions.
pub(super) fn parse_position(text: &str) -> Result<Position, ApiError> {
    text.parse::<Position>().map_err(|e| ApiError::invalid_input(e.to_string()))
}
