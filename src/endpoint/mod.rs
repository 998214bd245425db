//! The endpoint callers talk to: an HTTP server ([`server`]) that hands
//! each request to one pure handler ([`imds`]) over the latest credential
//! snapshot. [`token`] issues and checks IMDSv2 session tokens,
//! [`access`] decides who may read the role, [`identity`] is what the
//! instance reports about itself.

pub mod access;
pub mod identity;
pub mod imds;
pub mod server;
pub mod token;
