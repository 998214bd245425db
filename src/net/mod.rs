//! Socket plumbing shared by every listener: the accept loop ([`accept`]),
//! who is at the other end of a connection ([`peer`] for TCP,
//! [`peergroups`] for Unix sockets), and bounded
//! connection slots ([`slots`]).

pub mod accept;
mod netlink;
pub mod peer;
pub mod peergroups;
pub mod slots;
