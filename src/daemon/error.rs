//! Why the daemon could not start or run, and the exit code for each.

use std::io;
use std::path::PathBuf;

use super::exit::{EX_CANTCREAT, EX_CONFIG, EX_TEMPFAIL, EX_UNAVAILABLE};
use crate::association::state::StateError;
use crate::credentials::issuer::sts::StsSetupError;
use crate::endpoint::token::KeyError;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The token key cannot be loaded.
    #[error(transparent)]
    TokenKey(#[from] KeyError),
    /// No region for the STS issuer.
    #[error("no region for STS: set region in the config file, pass --region, or set AWS_REGION")]
    NoRegion,
    /// The STS client could not be set up.
    #[error(transparent)]
    Sts(#[from] StsSetupError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({set_by}): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The flag or key that set it, or the default.
        set_by: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container endpoint's token file cannot be read.
    #[error(transparent)]
    ConsumerTokens(#[from] crate::consumers::ConsumerError),
    /// The state directory's lock or association file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Socket activation was attempted but failed.
    #[error("cannot use the sockets passed by systemd: {0}")]
    Activation(#[source] io::Error),
}

impl DaemonError {
    /// The process exit code for this error (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::NoRegion | DaemonError::Sts(_) => EX_CONFIG,
            DaemonError::StateDir { .. } | DaemonError::TokenKey(_) => EX_CANTCREAT,
            DaemonError::Bind { .. } | DaemonError::Activation(_) => EX_UNAVAILABLE,
            DaemonError::State(StateError::Corrupt { .. }) | DaemonError::ConsumerTokens(_) => {
                EX_CONFIG
            }
            DaemonError::State(StateError::Locked { .. }) => EX_TEMPFAIL,
            DaemonError::State(_) | DaemonError::ControlSocket { .. } => EX_CANTCREAT,
        }
    }
}
