//! The quick path. A connection whose whole first request is already in
//! the socket when it is accepted, and which asks to be closed after the
//! answer (`Connection: close`, as SDK clients that open a connection per
//! request send), is answered and closed at once by the task that accepted
//! it: no registration with the runtime's epoll, no task, no hyper. That
//! is most of what a connection costs when it carries one request.
//!
//! Everything else goes to hyper ([`Rest::Serve`]) with the bytes
//! already read: a request not complete yet, keep-alive, a body, bytes
//! after the request, HTTP/1.0, a method other than GET, HEAD or PUT, a
//! target that is not a path, `Expect`, `Upgrade`, `Transfer-Encoding`, or
//! an allow-list that needs the caller's groups before they are cached.
//! The answer is the one [`App::respond`] gives through hyper, written as
//! hyper writes it, byte for byte (the tests compare them).

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, Version};
use zeroize::{Zeroize, Zeroizing};

use super::app::App;
use super::conn::{Conn, Serves, MAX_HEADERS};
use crate::net::peer::{tcp_socket_owner, SocketOwner};

/// Bytes read from a new connection at once. A longer request head (up to
/// hyper's limit) is read on by hyper.
pub const FIRST_READ: usize = 4096;

/// What became of a connection offered to the quick path.
#[derive(Debug)]
pub enum Outcome {
    /// Answered and closed, or found closed.
    Done,
    /// Not closed: what is left to do with it.
    Left {
        /// The socket.
        stream: TcpStream,
        /// The caller's socket owner, when looked up.
        owner: Option<Option<SocketOwner>>,
        /// What is left.
        rest: Rest,
    },
}

/// What is left of a connection the quick path did not close.
#[derive(Debug)]
pub enum Rest {
    /// Serve it with hyper, these bytes (already read from the socket)
    /// first.
    Serve(Bytes),
    /// Answered in part: the socket did not take the whole answer at once
    /// (a full send buffer). This rest, which may hold credentials, must
    /// be written before closing.
    Write(Zeroizing<Vec<u8>>),
}

/// Answers the connection `stream` (non-blocking, from `peer` to `local`)
/// on the quick path if it can be, or says what is left to do. `owner` is
/// the caller's socket owner when it has been looked up already.
pub fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    owner: Option<Option<SocketOwner>>,
    serves: Serves,
    app: &App,
) -> Outcome {
    let mut buf = [0u8; FIRST_READ];
    let n = match stream.read(&mut buf) {
        Ok(0) => return Outcome::Done,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Outcome::Left {
                stream,
                owner,
                rest: Rest::Serve(Bytes::new()),
            }
        }
        Err(_) => return Outcome::Done,
    };
    let read = &mut buf[..n];
    let outcome = answer_read(stream, read, peer, local, owner, serves, app);
    // The request may carry a container token.
    read.zeroize();
    outcome
}

fn answer_read(
    stream: TcpStream,
    read: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
    owner: Option<Option<SocketOwner>>,
    serves: Serves,
    app: &App,
) -> Outcome {
    let Some(req) = parse(read) else {
        return Outcome::Left {
            stream,
            owner,
            rest: Rest::Serve(Bytes::copy_from_slice(read)),
        };
    };
    let owner = owner.or_else(|| {
        app.needs_owner()
            .then(|| tcp_socket_owner(peer, local).ok().flatten())
    });
    let Some(caller) = app.caller_now(peer, local, owner.flatten()) else {
        return Outcome::Left {
            stream,
            owner,
            rest: Rest::Serve(Bytes::copy_from_slice(read)),
        };
    };
    let open = app.metrics.connection_opened();
    let conn = Conn::new(caller, owner, serves, stream.as_raw_fd(), local, None);
    let response = app.respond(&req, &conn);
    let head_only = req.method() == Method::HEAD;
    let head = encode_head(&response, head_only, &date_now());
    let body: &[u8] = if head_only { &[] } else { response.body() };
    let outcome = write_or_keep(stream, &head, body, conn.owner_if_known());
    drop(open);
    outcome
}

/// Writes `head` and `body` with one call; what the socket does not take
/// comes back as [`Rest::Write`].
fn write_or_keep(
    mut stream: TcpStream,
    head: &[u8],
    body: &[u8],
    owner: Option<Option<SocketOwner>>,
) -> Outcome {
    let total = head.len() + body.len();
    let written = match stream.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        // The caller is gone.
        Err(_) => return Outcome::Done,
    };
    if written >= total {
        return Outcome::Done;
    }
    let mut rest = Zeroizing::new(Vec::with_capacity(total - written));
    if written < head.len() {
        rest.extend_from_slice(&head[written..]);
        rest.extend_from_slice(body);
    } else {
        rest.extend_from_slice(&body[written - head.len()..]);
    }
    Outcome::Left {
        stream,
        owner,
        rest: Rest::Write(rest),
    }
}

/// The request in `buf` when the quick path can answer it: complete, with
/// nothing after it, and as the module documentation says.
pub fn parse(buf: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {}
        _ => return None,
    }
    if parsed.version != Some(1) {
        return None;
    }
    let method = match parsed.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "PUT" => Method::PUT,
        _ => return None,
    };
    let path = parsed.path?;
    if !path.starts_with('/') {
        return None;
    }
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .version(Version::HTTP_11)
        .body(())
        .ok()?;
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return None;
        }
        if name == CONTENT_LENGTH && h.value != b"0" {
            return None;
        }
        if name == CONNECTION {
            close |= has_token(h.value, b"close");
        }
        let value = HeaderValue::from_bytes(h.value).ok()?;
        req.headers_mut().append(name, value);
    }
    close.then_some(req)
}

/// Whether a comma-separated header value lists `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The response head hyper writes for `response` on an HTTP/1.1
/// connection that closes after it, to a HEAD request if `head_only`: the
/// status line; the handler's headers in order; `connection: close`,
/// `content-length` and `date` unless the handler set them, and no
/// `content-length: 0` for HEAD. (No handler answers 1xx, 204 or 304, the
/// statuses hyper writes without a length.)
pub fn encode_head(response: &Response<Bytes>, head_only: bool, date: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + 64 * response.headers().len());
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let headers = response.headers();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let implicit_zero = head_only && response.body().is_empty();
    if !headers.contains_key(CONTENT_LENGTH) && !implicit_zero {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(response.body().len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The current time as an HTTP date, formatted once a second per thread.
fn date_now() -> String {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != second {
            *c = (second, httpdate::fmt_http_date(now));
        }
        c.1.clone()
    })
}

#[cfg(test)]
mod tests;
