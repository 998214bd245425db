//! The client side of the control socket, for `hostrole associate |
//! replace | disassociate | status`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response};

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the hostrole daemon at {path}: {source} (is it running? pass --control-socket if it listens elsewhere)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer was not understood.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

/// Sends one request and waits (at most 30 s) for the answer.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let io_err = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    let mut body = serde_json::to_vec(request).expect("plain data serializes");
    body.push(b'\n');
    stream.write_all(&body).map_err(io_err)?;
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    serde_json::from_str(&line)
        .map_err(|e| ClientError::Protocol(format!("{e}: {:?}", line.trim())))
}
