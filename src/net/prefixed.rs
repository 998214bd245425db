//! A stream whose first bytes were already read from it: reads give those
//! bytes back first, then read the stream. It lets a connection whose
//! first request was looked at by the quick path (see
//! [`crate::endpoint::quick`]) be served by hyper from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `stream`, with `prefix` read first.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    stream: S,
}

impl<S> Prefixed<S> {
    /// `stream`, whose reads start with `prefix`.
    pub fn new(prefix: Bytes, stream: S) -> Self {
        Prefixed { prefix, stream }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_give_the_prefix_then_the_stream_and_writes_go_to_the_stream() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = Prefixed::new(Bytes::from_static(b"GET / HT"), ours);
        theirs.write_all(b"TP/1.1\r\n").await.unwrap();
        // A small buffer takes the prefix in pieces.
        let mut small = [0u8; 5];
        assert_eq!(s.read(&mut small).await.unwrap(), 5);
        assert_eq!(&small, b"GET /");
        let mut rest = vec![0u8; 16];
        let n = s.read(&mut rest).await.unwrap();
        assert_eq!(
            &rest[..n],
            b" HT",
            "the prefix ends before the stream starts"
        );
        let n = s.read(&mut rest).await.unwrap();
        assert_eq!(&rest[..n], b"TP/1.1\r\n");
        s.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        theirs.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n");
    }

    #[tokio::test]
    async fn an_empty_prefix_reads_the_stream() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = Prefixed::new(Bytes::new(), ours);
        theirs.write_all(b"x").await.unwrap();
        drop(theirs);
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"x");
    }
}
