//! The `#[wasm_bindgen]` surface the web app's worker calls: forwarding to
//! [`Device`] and the core, with times as JavaScript numbers (Unix
//! milliseconds), ids as text, frames and the key store as `Uint8Array`s,
//! and events as one JSON array per [`Step`]. Errors reach JavaScript as
//! `Error`s whose text holds no secret.

use std::time::Duration;

use wasm_bindgen::prelude::*;
use wisp_core::envelope::KdfParams;
use wisp_proto::UnixMillis;
use wisp_proto::limits::INVITATION_LIFETIME;
use zeroize::Zeroizing;

use crate::device::{self, Device, DeviceError};

fn js_error(error: DeviceError) -> JsError {
    JsError::new(&error.to_string())
}

fn millis(now: f64) -> UnixMillis {
    // Date.now() is an integral number of milliseconds well inside i64.
    UnixMillis(now as i64)
}

/// What one call produced (see [`device::Step`]): store `sealed` (when
/// present) before sending the frames.
#[wasm_bindgen(js_name = Step)]
pub struct WasmStep {
    frames: Vec<Vec<u8>>,
    /// May hold message text: never in `Debug`.
    events: Zeroizing<String>,
    sealed: Option<Vec<u8>>,
}

impl std::fmt::Debug for WasmStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmStep")
            .field("frames", &self.frames.len())
            .field("events_bytes", &self.events.len())
            .field("sealed", &self.sealed.as_ref().map(Vec::len))
            .finish()
    }
}

impl From<device::Step> for WasmStep {
    fn from(step: device::Step) -> Self {
        Self {
            frames: step.frames,
            // Serialising owned strings and numbers cannot fail.
            events: Zeroizing::new(serde_json::to_string(&step.events).unwrap_or_default()),
            sealed: step.sealed,
        }
    }
}

#[wasm_bindgen(js_class = Step)]
impl WasmStep {
    /// How many frames to send.
    #[wasm_bindgen(getter, js_name = frameCount)]
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Frame `index`, encoded.
    pub fn frame(&self, index: usize) -> Vec<u8> {
        self.frames.get(index).cloned().unwrap_or_default()
    }

    /// The events, a JSON array.
    #[wasm_bindgen(getter)]
    pub fn events(&self) -> String {
        self.events.to_string()
    }

    /// The key store to keep, when the state changed.
    #[wasm_bindgen(getter)]
    pub fn sealed(&self) -> Option<Vec<u8>> {
        self.sealed.clone()
    }
}

/// The browser's device (see [`Device`]).
#[wasm_bindgen(js_name = Device)]
#[derive(Debug)]
pub struct WasmDevice(Device);

#[wasm_bindgen(js_class = Device)]
impl WasmDevice {
    /// A new identity sealed under `passphrase` (Argon2id, 64 MiB, as the
    /// CLI's key store). Slow on purpose: call it in a worker.
    pub fn create(passphrase: String) -> Result<WasmDevice, JsError> {
        let passphrase = Zeroizing::new(passphrase);
        Device::create(&passphrase, KdfParams::default())
            .map(Self)
            .map_err(js_error)
    }

    /// Opens the stored key store. Slow on purpose: call it in a worker.
    pub fn unlock(passphrase: String, sealed: &[u8]) -> Result<WasmDevice, JsError> {
        let passphrase = Zeroizing::new(passphrase);
        Device::unlock(&passphrase, sealed)
            .map(Self)
            .map_err(js_error)
    }

    /// The key store, sealed, to keep.
    pub fn sealed(&self) -> Result<Vec<u8>, JsError> {
        self.0.sealed().map_err(js_error)
    }

    /// This device's id.
    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.0.user_id().to_string()
    }

    /// Whether the identity is registered.
    #[wasm_bindgen(getter)]
    pub fn registered(&self) -> bool {
        self.0.is_registered()
    }

    /// Whether the server refused the session for good (no reconnect).
    #[wasm_bindgen(getter)]
    pub fn stopped(&self) -> bool {
        self.0.is_stopped()
    }

    /// A signed invitation link (`wisp://add/<ID>/<TOKEN>`), valid 30 days.
    #[wasm_bindgen(js_name = invitationLink)]
    pub fn invitation_link(&self, now: f64) -> Result<String, JsError> {
        self.0
            .invitation_link(millis(now).plus(INVITATION_LIFETIME))
            .map_err(js_error)
    }

    /// Marks `friend` verified, or not.
    #[wasm_bindgen(js_name = setVerified)]
    pub fn set_verified(&mut self, friend: &str, verified: bool) -> Result<WasmStep, JsError> {
        self.0
            .set_verified(friend, verified)
            .map(Into::into)
            .map_err(js_error)
    }

    /// This user's display name (what friends are sent), or `null`.
    #[wasm_bindgen(getter, js_name = displayName)]
    pub fn display_name(&self) -> Option<String> {
        self.0.display_name().map(str::to_owned)
    }

    /// Sets this user's display name (`null` or blank clears it) and sends
    /// it to friends, end-to-end encrypted. Refused with a message saying
    /// why (empty, too long, invisible characters, like an id).
    #[wasm_bindgen(js_name = setDisplayName)]
    pub fn set_display_name(
        &mut self,
        name: Option<String>,
        now: f64,
    ) -> Result<WasmStep, JsError> {
        self.0
            .set_display_name(name.as_deref(), millis(now))
            .map(Into::into)
            .map_err(js_error)
    }

    /// The user's own name for `id`, or `null`.
    pub fn petname(&self, id: &str) -> Result<Option<String>, JsError> {
        self.0.petname(id).map_err(js_error)
    }

    /// Gives `id` a petname (kept on this device only; `null` or blank
    /// removes it). Refused with a message saying why, among others when
    /// another friend has that name already.
    #[wasm_bindgen(js_name = setPetname)]
    pub fn set_petname(&mut self, id: &str, name: Option<String>) -> Result<WasmStep, JsError> {
        self.0
            .set_petname(id, name.as_deref())
            .map(Into::into)
            .map_err(js_error)
    }

    /// A WebSocket just opened.
    pub fn connected(&mut self) -> WasmStep {
        self.0.connected().into()
    }

    /// The WebSocket closed.
    pub fn disconnected(&mut self) {
        self.0.disconnected();
    }

    /// A binary frame from the server.
    pub fn receive(&mut self, frame: &[u8], now: f64) -> Result<WasmStep, JsError> {
        self.0
            .receive(frame, millis(now))
            .map(Into::into)
            .map_err(js_error)
    }

    /// Works on the registration puzzle for `attempts` candidates.
    pub fn work(&mut self, attempts: u32) -> Result<WasmStep, JsError> {
        self.0
            .work(u64::from(attempts))
            .map(Into::into)
            .map_err(js_error)
    }

    /// Candidates tried on the puzzle so far (0 when none is being solved).
    #[wasm_bindgen(getter, js_name = powTried)]
    pub fn pow_tried(&self) -> f64 {
        self.0.pow_progress().map_or(0.0, |(tried, _)| tried as f64)
    }

    /// Candidates expected in all (`2^difficulty`; 0 when none is being solved).
    #[wasm_bindgen(getter, js_name = powExpected)]
    pub fn pow_expected(&self) -> f64 {
        self.0
            .pow_progress()
            .map_or(0.0, |(_, expected)| expected as f64)
    }

    /// A friend operation: `request` (an id or an invitation link),
    /// `accept`, `decline`, `cancel`, `remove`, `block`, `unblock`.
    pub fn friend(&mut self, action: &str, peer: &str) -> Result<WasmStep, JsError> {
        let action = device::parse_action(action).map_err(js_error)?;
        self.0
            .friend(action, peer)
            .map(Into::into)
            .map_err(js_error)
    }

    /// Deletes this account on the server (then `account_deleted`).
    #[wasm_bindgen(js_name = deleteAccount)]
    pub fn delete_account(&mut self) -> Result<WasmStep, JsError> {
        self.0.delete_account().map(Into::into).map_err(js_error)
    }

    /// Lists friends and requests again.
    pub fn refresh(&mut self) -> WasmStep {
        self.0.refresh().into()
    }

    /// Sends `text` to `to`; `view_seconds` 0 shows it until its ceiling.
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(
        &mut self,
        to: &str,
        text: String,
        view_seconds: u32,
        ttl_seconds: u32,
        now: f64,
    ) -> Result<WasmStep, JsError> {
        let text = Zeroizing::new(text);
        self.0
            .send_text(
                to,
                &text,
                Duration::from_secs(u64::from(view_seconds)),
                Duration::from_secs(u64::from(ttl_seconds)),
                millis(now),
            )
            .map(Into::into)
            .map_err(js_error)
    }

    /// A friend's message is on screen: their device gets a read receipt.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&mut self, client_msg_id: &str, now: f64) -> Result<WasmStep, JsError> {
        self.0
            .mark_read(client_msg_id, millis(now))
            .map(Into::into)
            .map_err(js_error)
    }

    /// Time passed: expiries.
    pub fn tick(&mut self, now: f64) -> WasmStep {
        self.0.tick(millis(now)).into()
    }
}

/// The safety number of two ids: 60 digits in 12 groups of 5, separated by
/// spaces (the same as `wisp verify`).
#[wasm_bindgen(js_name = safetyNumber)]
pub fn safety_number(a: &str, b: &str) -> Result<String, JsError> {
    crate::device::safety_text(a, b).map_err(js_error)
}

/// The user id a typed id or invitation link names.
#[wasm_bindgen(js_name = parseInvitation)]
pub fn parse_invitation(text: &str) -> Result<String, JsError> {
    wisp_core::parse_invitation(text)
        .map(|id| id.to_string())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// The QR code of `text`: its width, then one byte per module (1 dark),
/// row by row.
#[wasm_bindgen(js_name = qrModules)]
pub fn qr_modules(text: &str) -> Result<Vec<u8>, JsError> {
    crate::device::qr_modules(text).map_err(js_error)
}
