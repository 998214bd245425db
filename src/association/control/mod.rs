//! The control socket: `hostrole associate | replace | disassociate |
//! status` talk to the running daemon over a Unix socket. [`protocol`] is
//! the wire format, [`server`] the daemon's side, [`client`] the command's.

pub mod client;
pub mod protocol;
pub mod server;

pub use protocol::{Request, Response, RoleRequest, Status};
pub use server::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID};
