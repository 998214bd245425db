//! Socket plumbing shared by every listener: the accept loop ([`accept`]),
//! TCP listeners ([`listen`]), who is at the other end of a connection
//! ([`peer`] for TCP, [`peergroups`] for Unix sockets), bounded
//! connection slots ([`slots`]), and a stream whose first bytes were read
//! already ([`prefixed`]).

pub mod accept;
pub mod listen;
mod netlink;
pub mod peer;
pub mod peergroups;
pub mod prefixed;
pub mod slots;
