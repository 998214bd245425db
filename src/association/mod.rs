//! Changing the host's role: the [`control`] socket takes requests from
//! `hostrole associate | replace | disassociate | status`, and [`state`]
//! keeps the association across restarts.

pub mod control;
pub mod state;
