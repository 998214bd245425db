//! hostrole: gives a Linux host one IAM role through an endpoint that is
//! wire-compatible with the EC2 Instance Metadata Service, fed by STS
//! AssumeRole and refreshed in the background.

#![warn(missing_docs)]

pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod identity;
pub mod imds;
pub mod issuer;
pub mod logbudget;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod refresh;
pub mod revoke;
pub mod server;
pub mod slots;
pub mod state;
pub mod token;
