//! The endpoint callers talk to: an HTTP server ([`server`], on one
//! thread per core, [`shards`], each running a [`shard`]; with the per-connection state in [`conn`],
//! [`quick`] for a connection that carries one request, [`admit`] and
//! [`serve`] for every other) that hands each
//! request, through [`app`], to one pure handler ([`imds`]) over the
//! latest credential snapshot. The handler checks the request
//! ([`request`]), answers with EC2's documents ([`documents`]), issues and
//! checks IMDSv2 session tokens ([`token`]), and decides who may read the
//! role ([`access`]); [`identity`] is what the instance reports about
//! itself. [`container`] is the second handler, the container credentials
//! endpoint, over the same snapshot.

pub mod access;
pub mod admit;
pub mod app;
pub mod conn;
pub mod container;
pub mod documents;
pub mod identity;
pub mod imds;
pub mod quick;
pub mod request;
pub mod route;
pub mod serve;
pub mod server;
pub mod shard;
pub mod shards;
pub mod token;
