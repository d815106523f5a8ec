//! Wisp in the browser: a thin `wasm-bindgen` layer over [`wisp_core`] and
//! [`wisp_proto`], run by the web app's worker. The core stays free of I/O;
//! the page owns the WebSocket and IndexedDB (where only the sealed key
//! store is kept), as matrix-rust-sdk-crypto-wasm does.
//!
//! # Layout
//! - [`device`]: [`Device`], sans IO: server frames in; client frames,
//!   [`Event`]s and the re-sealed key store out ([`Step`]). Registration
//!   (proof-of-work in slices, for a progress bar), login, key top-ups,
//!   friends, sealing and opening, read receipts, expiries, reconnects,
//!   and names: petnames kept on the device, this user's display name
//!   sent to friends until their devices confirm it, theirs received.
//! - [`event`]: [`Event`], what the page is told, serialised as JSON.
//! - [`bindings`]: the `#[wasm_bindgen]` surface: `Device`, `Step`, and
//!   helpers that need no device (safety numbers, invitation parsing, QR
//!   codes). Forwarding only; what has logic lives in the modules above and
//!   is tested natively (`cargo test -p wisp-wasm`).

pub mod bindings;
pub mod device;
pub mod event;

pub use device::{Device, DeviceError, Step};
pub use event::Event;
