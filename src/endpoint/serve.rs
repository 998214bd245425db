//! A connection served by hyper: keep-alive, requests in pieces, and
//! anything else the quick path ([`super::quick`]) leaves, until it
//! closes, is evicted to make room, or the server stops.

use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::admit::{self, Admitted, FirstBytes};
use super::app::App;
use super::conn::{Conn, Serves, FIRST_REQUEST_GRACE};
use crate::net::prefixed::Prefixed;
use crate::net::slots::EVICT_GRACE;

/// Serves one admitted connection until it closes, is evicted, or the
/// server stops.
pub async fn connection(
    admitted: Admitted,
    read: Bytes,
    serves: Serves,
    app: Arc<App>,
    mut builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
) {
    // Nothing was there at accept: wait for the first bytes, and answer
    // on the quick path if they make a request it takes.
    let (admitted, read) = if read.is_empty() {
        match admit::first_bytes(admitted, serves, &app, &shutdown).await {
            FirstBytes::Done => return,
            FirstBytes::Stopping(admitted) => (admitted, read),
            FirstBytes::Serve(admitted, read, left) => {
                // The head's time runs from the accept.
                builder.header_read_timeout(left);
                (admitted, read)
            }
        }
    } else {
        (admitted, read)
    };
    let Admitted {
        stream,
        peer: addr,
        local,
        owner,
        slot,
    } = admitted;
    let open = app.metrics.connection_opened();
    let caller = app.caller(addr, local, owner).await;
    let evict = slot.evict.clone();
    let conn = Arc::new(Conn::new(
        caller,
        Some(owner),
        serves,
        stream.as_raw_fd(),
        local,
        Some(slot),
    ));
    // Set once the first request head has been read.
    let asked = Arc::new(tokio::sync::Notify::new());
    let service = {
        let asked = asked.clone();
        service_fn(move |req: Request<Body>| {
            asked.notify_one();
            let response = app.respond(&req, &conn).map(Full::new);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(Prefixed::new(read, stream)), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = shutdown.cancelled() => None,
        _ = evict.notified() => {
            // Making room for a new caller: finish the request in progress,
            // if any, then close; at most EVICT_GRACE.
            tracing::debug!(peer = %addr, "closing the least recently active connection to make room");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(EVICT_GRACE, conn.as_mut()).await {
                Ok(r) => Some(r),
                Err(_) => Some(Ok(())),
            }
        }
    };
    let result = match result {
        Some(r) => r,
        None => {
            // Stopping. A connection that has not sent its request yet
            // looks idle to hyper, which would close it unanswered: give
            // it a moment to send one first.
            let first = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = asked.notified() => None,
                _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => None,
            };
            match first {
                Some(r) => r,
                None => {
                    // Finish the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
    drop(open);
}
