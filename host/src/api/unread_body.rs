//! Answering a request whose body was not read whole: over a limit, refused from its head, or
//! simply not needed.
//!
//! A server that answers and closes a connection with request bytes still unread resets it, and
//! a client still sending (hyper's client, most HTTP libraries: they write the whole body before
//! they read) then sees a broken pipe instead of the answer, say `413 payload_too_large`. So
//! every answer waits until what is left of its request's body is read and dropped, up to
//! [`DRAINED_AT_MOST`]. A client that sent `Expect: 100-continue` and whose body was never asked
//! for has sent none of it: it is answered at once (hyper sends no `100 Continue`). The
//! connection is kept when the body was read to its end, by the handler or here (a client
//! refused at its rate limit does not pay a new connection for each try); otherwise it is closed
//! after the answer.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// The most of an unread body read (and thrown away) before answering, and for how long: past
/// either, the answer goes out and the connection is closed.
const DRAINED_AT_MOST: (u64, Duration) = (super::COMPONENT_LIMIT as u64, Duration::from_secs(10));

/// The middleware: runs the request with its body watched, then reads what the handler left of
/// it before the answer goes out.
pub async fn answer_after_the_body(request: Request, next: Next) -> Response {
    let expects_continue = expects_continue(request.headers());
    let (parts, body) = request.into_parts();
    let watched = Watched(Arc::new(Mutex::new(WatchedBody { body, asked_for: false, ended: false })));
    let response = next.run(Request::from_parts(parts, Body::new(watched.clone()))).await;
    let still_held = Arc::strong_count(&watched.0) > 1;
    let (left, asked_for) = {
        let mut watched = watched.lock();
        if watched.ended || watched.body.is_end_stream() {
            return response;
        }
        // Still held past the answer (by a task, a streamed response), the body is not taken from
        // under its holder: the connection closes after the answer instead.
        if still_held {
            return closing(response);
        }
        (std::mem::take(&mut watched.body), watched.asked_for)
    };
    // Not asked for, a body behind `Expect: 100-continue` was never sent.
    let sent = asked_for || !expects_continue;
    if sent && drain(left).await { response } else { closing(response) }
}

fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and drops `body` to its end, within [`DRAINED_AT_MOST`]: whether it got there.
async fn drain(mut body: Body) -> bool {
    let (most_bytes, most_time) = DRAINED_AT_MOST;
    if body.size_hint().lower() > most_bytes {
        return false;
    }
    let read_to_the_end = async {
        let mut left = most_bytes;
        loop {
            let read = match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => frame.into_data().map_or(0, |data| data.len() as u64),
            };
            let Some(rest) = left.checked_sub(read) else { return false };
            left = rest;
        }
    };
    tokio::time::timeout(most_time, read_to_the_end).await.unwrap_or(false)
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// A request's body as the handler sees it, shared with the middleware, which takes back what
/// is left of it once the handler has answered.
#[derive(Clone)]
struct Watched(Arc<Mutex<WatchedBody>>);

struct WatchedBody {
    body: Body,
    /// Whether anyone polled the body (hyper then sends `100 Continue` to a client waiting for it).
    asked_for: bool,
    /// Whether it was read to its end.
    ended: bool,
}

impl Watched {
    fn lock(&self) -> MutexGuard<'_, WatchedBody> {
        // Nothing panics while holding it; a poisoned lock still holds a usable body.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut watched = self.lock();
        watched.asked_for = true;
        let polled = Pin::new(&mut watched.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            watched.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let watched = self.lock();
        watched.ended || watched.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().body.size_hint()
    }
}
