//! One HTTP request, from its head to its answer: `POST` to a method (anything else is `405`, or a CORS
//! preflight), the checks a request must pass before it is a call (route, JSON, headers, body), then the call
//! itself through the same layers as a binary call (the server's own, then the user's, then dispatch, with
//! `Head.json` set), in the connection's task, stopped at the deadline or when the client goes away; then its
//! answer, with the CORS headers of the page that asked.

use std::sync::Arc;

use hyper::Method;
use hyper::body::Incoming;
use rpc_codec::Status;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::connection::Conn;
use super::reply::{self, HttpResponse};
use super::{body, headers, route};
use crate::server::handler::{self, Outcome};
use crate::server::layer::{Head, Layers, Own, Parts, Payload, Started};

/// The answer to `request`.
pub(crate) async fn serve<L: Layers>(
    conn: &Conn<L>,
    request: hyper::Request<Incoming>,
) -> HttpResponse {
    // A whole request head ends the connection's handshake, as a binary connection's first frame does.
    conn.established();
    let cors = conn.http.cors.as_ref();
    let origin = cors.and_then(|cors| cors.origin(request.headers()));
    let mut response = match (request.method(), cors) {
        (&Method::POST, _) => call(conn, request).await,
        (&Method::OPTIONS, Some(cors)) => return cors.preflight(origin),
        (method, None) => reply::not_allowed(method, "POST"),
        (method, Some(_)) => reply::not_allowed(method, "POST, OPTIONS"),
    };
    if let Some(cors) = cors {
        cors.decorate(&mut response, origin);
    }
    response
}

/// The answer to a `POST`: a refusal, or the call's end.
async fn call<L: Layers>(conn: &Conn<L>, request: hyper::Request<Incoming>) -> HttpResponse {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let entry = match route::find(&conn.registry, parts.uri.path()) {
        Ok(entry) => entry,
        Err(e) => return reply::failure(404, Status::NotFound, &e.to_string()),
    };
    if let Some(message) = crate::server::json::refusal(entry) {
        return reply::failed(Status::Unimplemented, &message);
    }
    let checked = headers::content_type(&parts.headers).and_then(|()| {
        let deadline = headers::deadline(&parts.headers, arrived)?;
        Ok((
            deadline,
            headers::metadata(&parts.headers, &conn.config.codec, &[])?,
        ))
    });
    let (deadline, metadata) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            let (http, status) = e.statuses();
            return reply::failure(http, status, &e.to_string());
        }
    };
    let limits = &conn.http;
    let read = body::read(
        body,
        limits.max_body_len,
        limits.config.body_timeout,
        deadline,
    );
    let payload = match read.await {
        Ok(payload) => payload,
        Err(e) => {
            let (http, status) = e.statuses();
            return reply::failure(http, status, &e.to_string());
        }
    };
    let mut head = Head {
        request_id: conn.next_id(),
        method: entry.method,
        metadata,
        arrived,
        deadline,
        one_way: false,
        json: true,
        // One request at a time on an HTTP/1.1 connection.
        in_flight: 0,
        extras: None,
    };
    // The user's layers may hold calls back (a concurrency limit); then the server's own see the call start.
    std::future::poll_fn(|cx| L::poll_ready(&mut conn.stack(), cx)).await;
    let (started, passed) = conn.own.start(&mut head);
    if let Err(refusal) = passed {
        conn.own.end(started, || refusal.ended());
        return reply::answer(entry, &refusal);
    }
    let parts = Parts {
        head,
        peer: Arc::clone(&conn.peer),
        service: &*entry.service,
        payload: Payload::Shared(payload),
    };
    let future = L::call(&mut conn.stack(), parts);
    // Run here, in the connection's task, as a binary call is polled in place: no task of its own, no hand-off
    // before the answer is written. If hyper drops this request (its client went away), `Ending` notes the
    // call `Cancelled`.
    let mut ending = Ending {
        own: &conn.own,
        started: Some(started),
    };
    let span = ending
        .started
        .as_ref()
        .and_then(|s| s.span().cloned())
        .unwrap_or_else(tracing::Span::none);
    // Nothing cancels an HTTP call but its client going away, which drops this future.
    let (_never, cancelled) = oneshot::channel::<()>();
    let outcome = handler::run(future, deadline, cancelled)
        .instrument(span)
        .await;
    if let Some(started) = ending.started.take() {
        conn.own.end(started, || outcome.ended());
    }
    let method = entry.method;
    match outcome {
        Outcome::Done(response) => reply::answer(entry, &response),
        Outcome::Panicked(why) => reply::failed(
            Status::Internal,
            &format!("{method} panicked in a layer: {why}"),
        ),
        Outcome::DeadlineExceeded => {
            let message = format!("{method} did not finish within the caller's deadline");
            reply::failed(Status::DeadlineExceeded, &message)
        }
        Outcome::Cancelled => reply::failed(Status::Cancelled, &format!("{method} was cancelled")),
    }
}

/// The server's own layers' record of a call under way: ended by the call's outcome, or, if the request's
/// future is dropped first (hyper drops it when its client goes away), as `Cancelled`.
struct Ending<'a> {
    own: &'a Own,
    started: Option<Started>,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            self.own
                .end(started, || crate::metrics::Ended::Status(Status::Cancelled));
        }
    }
}
