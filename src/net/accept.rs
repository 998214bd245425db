//! The one accept loop every listener runs (IMDS, control socket, metrics):
//! accept until shutdown, and when accepting fails (out of descriptors,
//! `EMFILE`/`ENFILE`, or out of buffers) log it within a budget and pause,
//! doubling from [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], instead
//! of spinning on an error that needs a connection to close first.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::listen::Incoming;
use crate::logbudget::LogBudget;

/// First pause after a failed accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause after failed accepts in a row.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listening socket.
pub trait Listener: Send + Sync {
    /// The accepted connection.
    type Stream: Send + 'static;
    /// The peer's address.
    type Addr: Send + 'static;
    /// Accepts one connection.
    fn accept_one(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Addr = std::net::SocketAddr;
    fn accept_one(&self) -> impl Future<Output = io::Result<(TcpStream, Self::Addr)>> + Send {
        self.accept()
    }
}

impl Listener for Incoming {
    type Stream = std::net::TcpStream;
    type Addr = std::net::SocketAddr;
    fn accept_one(
        &self,
    ) -> impl Future<Output = io::Result<(std::net::TcpStream, Self::Addr)>> + Send {
        self.accept()
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn accept_one(&self) -> impl Future<Output = io::Result<(UnixStream, Self::Addr)>> + Send {
        self.accept()
    }
}

/// The pause after `failures` failed accepts in a row (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (ACCEPT_BACKOFF_MIN * factor).min(ACCEPT_BACKOFF_MAX)
}

/// Accepts connections on `listener` and hands each to `serve` until
/// `shutdown` is cancelled. `name` names the listener in the log.
pub async fn accept_until<L: Listener>(
    listener: &L,
    name: &'static str,
    shutdown: &CancellationToken,
    mut serve: impl FnMut(L::Stream, L::Addr),
) {
    let log = LogBudget::default();
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept_one() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                failures = 0;
                serve(stream, addr);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = backoff(failures);
                if let Some(suppressed) = log.take() {
                    tracing::warn!(listener = name, error = %e, pause_ms = pause.as_millis() as u64, suppressed, "accept failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Hands every connection already in the listen queue to `serve`: when a
/// listener closes, the kernel resets connections it had completed, so a
/// server that stops takes them first.
pub async fn take_queued<L: Listener>(listener: &L, mut serve: impl FnMut(L::Stream, L::Addr)) {
    while let Ok(Ok((stream, addr))) =
        tokio::time::timeout(Duration::ZERO, listener.accept_one()).await
    {
        serve(stream, addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_the_minimum_to_the_maximum() {
        assert_eq!(backoff(1), ACCEPT_BACKOFF_MIN);
        assert_eq!(backoff(2), ACCEPT_BACKOFF_MIN * 2);
        assert_eq!(backoff(3), ACCEPT_BACKOFF_MIN * 4);
        assert_eq!(backoff(8), ACCEPT_BACKOFF_MIN * 128);
        assert_eq!(backoff(9), ACCEPT_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), ACCEPT_BACKOFF_MAX);
    }

    #[tokio::test]
    async fn accepts_until_shutdown_then_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            accept_until(&listener, "test", &stop, |s, _| {
                let _ = tx.send(s);
            })
            .await;
            listener
        });
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        rx.recv().await.unwrap();
        rx.recv().await.unwrap();
        shutdown.cancel();
        let listener = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("returns at shutdown")
            .unwrap();
        // A connection made after shutdown waits in the queue for take_queued.
        let _c = TcpStream::connect(addr).await.unwrap();
        let mut queued = 0;
        take_queued(&listener, |_, _| queued += 1).await;
        assert_eq!(queued, 1);
    }
}
