//! Socket plumbing shared by every listener: who is at the other end of a
//! connection ([`peer`]), and bounded connection slots ([`slots`]).

pub mod peer;
pub mod slots;
