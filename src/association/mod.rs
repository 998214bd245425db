//! Changing the host's role: the [`service`] is the one way to change it,
//! used at start, on reload and by the [`control`] socket; [`state`] keeps
//! the association across restarts.

pub mod control;
pub mod service;
pub mod state;
