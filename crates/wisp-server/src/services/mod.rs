//! The services: what the server does, independent of how frames arrive.
//! Each takes the shared state and typed arguments and returns typed
//! results or a [`WireError`](crate::error::WireError).

pub(crate) mod accounts;
pub(crate) mod friends;
pub(crate) mod keys;
pub(crate) mod messages;
