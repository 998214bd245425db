//! The client side of the control socket, for `hostrole associate |
//! replace | disassociate | status | rotate-base-key`.

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

/// How long a client waits for an answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `rotate-base-key` waits: IAM may take up to a minute to make a
/// new key usable.
pub const ROTATION_TIMEOUT: Duration = Duration::from_secs(180);

/// Sends one request and waits (at most [`ANSWER_TIMEOUT`]) for the answer.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    call_within(path, request, ANSWER_TIMEOUT)
}

/// Sends one request and waits at most `timeout` for the answer.
pub fn call_within(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let io_err = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .set_write_timeout(Some(ANSWER_TIMEOUT))
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
