//! SMART App Launch 2.2.0 in pure terms: the scope grammar and the events of the
//! authorization server (apps, users, codes, grants, launches). No IO, no crypto: the
//! application crate signs, hashes and stores; this crate says what the values mean.

pub mod events;
pub mod scope;
