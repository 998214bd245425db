//! The control socket: `hostrole associate | replace | disassociate |
//! status | rotate-base-key | container-token` talk to the running daemon
//! over a Unix socket. [`protocol`] is the wire format, [`server`] the
//! daemon's side (`tokens.rs` its container-token requests), [`client`] the
//! command's.

pub mod client;
pub mod protocol;
pub mod server;
mod tokens;

pub use protocol::{Request, Response, RoleRequest, Status};
pub use server::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID};
