//! A connection the quick path did not close: its slot, keyed by who the
//! caller is ([`admit`]); the wait for its first bytes when it had none at
//! accept ([`first_bytes`]); the rest of an answer the socket did not take
//! at once ([`finish_answer`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::app::App;
use super::conn::{Serves, HEADER_READ_TIMEOUT, WRITE_TIMEOUT};
use super::quick::{self, Outcome, Rest};
use crate::logbudget::LogBudget;
use crate::net::peer::{tcp_socket_owner, SocketOwner};
use crate::net::slots::{Holder, Slot, Slots};

/// An accepted connection that has its slot.
pub struct Admitted {
    /// The socket, registered with the runtime.
    pub stream: TcpStream,
    /// The caller's address.
    pub peer: SocketAddr,
    /// Ours.
    pub local: SocketAddr,
    /// The owner of the caller's socket.
    pub owner: Option<SocketOwner>,
    /// Its slot.
    pub slot: Slot,
}

/// Takes a slot for an accepted connection, or gives the connection back
/// (for a 503, see [`refuse`]). `owner` is the caller's socket owner if
/// the quick path looked it up.
pub fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    owner: Option<Option<SocketOwner>>,
    slots: &Arc<Slots>,
    log: &LogBudget,
) -> Result<Admitted, TcpStream> {
    // One exact kernel query (sock_diag) for the caller's socket, unless
    // the quick path made it: the key of its slot, and its uid for the
    // allow-list.
    let owner = owner.unwrap_or_else(|| match tcp_socket_owner(peer, local) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "cannot look up the caller's socket");
            None
        }
    });
    let holder = match owner {
        Some(o) => Holder::Uid(o.uid),
        None => Holder::Addr(peer.ip().to_canonical()),
    };
    match slots.acquire(holder) {
        Ok(slot) => Ok(Admitted {
            stream,
            peer,
            local,
            owner,
            slot,
        }),
        Err(why) => {
            if let Some(suppressed) = log.take() {
                tracing::warn!(%peer, %holder, suppressed, "{why}; refusing");
            }
            Err(stream)
        }
    }
}

/// Tells a connection that found no slot so, and closes it.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
    let _ = stream.shutdown().await;
}

/// Writes what is left of an answer the quick path began, within
/// [`WRITE_TIMEOUT`] and while its slot is not wanted, and closes the
/// connection.
pub async fn finish_answer(admitted: Admitted, rest: Zeroizing<Vec<u8>>) {
    let Admitted {
        mut stream, slot, ..
    } = admitted;
    tokio::select! {
        _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&rest)) => {}
        _ = slot.evict.notified() => {}
    }
    let _ = stream.shutdown().await;
}

/// How the wait for a connection's first bytes ended.
pub enum FirstBytes {
    /// The connection was answered on the quick path, or closed: silent
    /// for [`HEADER_READ_TIMEOUT`], gone, or its slot wanted.
    Done,
    /// The server is stopping before any byte came: hyper gives the
    /// connection its grace to send a request.
    Stopping(Admitted),
    /// For hyper, with the bytes read and the time left for the head.
    Serve(Admitted, Bytes, Duration),
}

/// Waits for the first bytes of a connection that had none at accept, and
/// answers it on the quick path if they make a request it takes.
pub async fn first_bytes(
    admitted: Admitted,
    serves: Serves,
    app: &App,
    shutdown: &CancellationToken,
) -> FirstBytes {
    let since = tokio::time::Instant::now();
    let peer = admitted.peer;
    tokio::select! {
        r = tokio::time::timeout(HEADER_READ_TIMEOUT, admitted.stream.readable()) => {
            if !matches!(r, Ok(Ok(()))) {
                return FirstBytes::Done;
            }
        }
        _ = shutdown.cancelled() => return FirstBytes::Stopping(admitted),
        _ = admitted.slot.evict.notified() => {
            tracing::debug!(%peer, "closing the least recently active connection to make room");
            return FirstBytes::Done;
        }
    }
    let left = HEADER_READ_TIMEOUT
        .saturating_sub(since.elapsed())
        .max(Duration::from_millis(1));
    let Admitted {
        stream,
        peer,
        local,
        owner,
        slot,
    } = admitted;
    let Ok(std) = stream.into_std() else {
        return FirstBytes::Done;
    };
    let Outcome::Left { stream, rest, .. } =
        quick::answer(std, peer, local, Some(owner), serves, app)
    else {
        return FirstBytes::Done;
    };
    let Ok(stream) = TcpStream::from_std(stream) else {
        return FirstBytes::Done;
    };
    let admitted = Admitted {
        stream,
        peer,
        local,
        owner,
        slot,
    };
    match rest {
        Rest::Write(rest) => {
            finish_answer(admitted, rest).await;
            FirstBytes::Done
        }
        Rest::Serve(read) => FirstBytes::Serve(admitted, read, left),
    }
}
