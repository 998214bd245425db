//! hostrole: gives a Linux host one IAM role through an endpoint that is
//! wire-compatible with the EC2 Instance Metadata Service, fed by STS
//! AssumeRole and refreshed in the background.
//!
//! The folders follow the flow of a credential:
//! - [`role`]: the role and how to assume it (validated in one place);
//! - [`credentials`]: issuers fetch credentials for it, the refresher keeps
//!   them fresh and publishes snapshots, revocation cuts old sessions;
//! - [`endpoint`]: the IMDS handler answers callers from the latest
//!   snapshot; tokens, caller identity and the HTTP server around it;
//! - [`association`]: the one service that changes the role, the control
//!   socket that drives it, and the state file that keeps it;
//! - [`consumers`]: the container endpoint's callers and their tokens;
//! - [`daemon`]: configuration, paths, exit codes, systemd, and the wiring
//!   of all the above; [`cli`] is the command line over it.
//! - [`net`], [`metrics`], [`clock`], [`logbudget`], [`atomicfile`]: shared
//!   plumbing.

#![warn(missing_docs)]

pub mod association;
pub mod atomicfile;
pub mod cli;
pub mod clock;
pub mod consumers;
pub mod credentials;
pub mod daemon;
pub mod endpoint;
pub mod logbudget;
pub mod metrics;
pub mod net;
pub mod role;
