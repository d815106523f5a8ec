// What the page and the device's worker say to each other. The worker holds
// the keys (the Rust core through wasm), the WebSocket and the sealed key
// store in IndexedDB; the page holds only what it shows.

export type ToWorker =
  | { t: 'create'; passphrase: string }
  | { t: 'unlock'; passphrase: string }
  | { t: 'friend'; action: FriendAction; peer: string }
  | { t: 'send'; tag: number; to: string; text: string; viewSeconds: number; ttlSeconds: number }
  | { t: 'read'; id: string }
  | { t: 'verify'; friend: string; verified: boolean }
  | { t: 'safety'; friend: string }
  | { t: 'petname'; peer: string; name: string | null }
  | { t: 'display-name'; name: string | null }
  | { t: 'refresh' }
  | { t: 'reconnect' }
  | { t: 'delete-account' };

export type FriendAction = 'request' | 'accept' | 'decline' | 'cancel' | 'remove' | 'block' | 'unblock';

export type Connection = 'connecting' | 'online' | 'offline' | 'superseded' | 'stopped';

export type FromWorker =
  | { t: 'unlocked'; userId: string; invitation: string; qr: Uint8Array | null; webQr: boolean; displayName: string | null }
  | { t: 'unlock-failed'; reason: 'wrong-passphrase' | 'in-use' | 'no-store' | 'exists' | 'other'; message: string }
  | { t: 'progress'; stage: 'deriving' | 'pow'; tried?: number; expected?: number }
  | { t: 'connection'; state: Connection; detail?: string }
  | { t: 'events'; events: DeviceEvent[] }
  | { t: 'queued'; tag: number; id: string; expiresAt: number }
  | { t: 'command-failed'; tag?: number; message: string }
  | { t: 'safety'; friend: string; groups: string }
  /** A petname was set or removed, or refused (`error` says why). */
  | { t: 'petname-set'; peer: string; error?: string }
  /** This user's display name as kept now, and why a change was refused. */
  | { t: 'display-name'; name: string | null; error?: string }
  | { t: 'account-deleted' };

/** Someone with the names this device knows for them. */
export interface PeerView {
  id: string;
  /** The user's own name for them, kept on this device only. */
  petname: string | null;
  /** The name they gave themselves: only their claim. */
  display_name: string | null;
}

export interface FriendView extends PeerView {
  since_unix_ms: number;
  verified: boolean;
}

/** The Rust device's events (crates/wisp-wasm/src/event.rs), as JSON. */
export type DeviceEvent =
  | { type: 'status'; status: string }
  | { type: 'pow'; difficulty: number }
  | { type: 'registered'; user_id: string }
  | { type: 'ready'; user_id: string; server_name: string }
  | { type: 'friends'; friends: FriendView[] }
  | { type: 'requests'; incoming: PeerView[]; outgoing: PeerView[]; blocked: PeerView[] }
  | { type: 'display_name'; from: string; display_name: string | null }
  | { type: 'friend_request'; from: string }
  | { type: 'friend_accepted'; by: string }
  | { type: 'friend_removed'; by: string }
  | { type: 'friend_op_done'; action: FriendAction; id: string; friends: boolean }
  | {
      type: 'message';
      message_id: string;
      client_msg_id: string;
      from: string;
      text: string;
      sent_unix_ms: number;
      expires_unix_ms: number;
      view_seconds: number;
    }
  | { type: 'queued'; to: string; client_msg_id: string; expires_unix_ms: number }
  | { type: 'sent'; to: string; client_msg_id: string; expires_unix_ms: number }
  | { type: 'read'; by: string; client_msg_id: string }
  | { type: 'expired_unread'; to: string; client_msg_id: string }
  | { type: 'send_failed'; to: string; client_msg_id: string; code: string; message: string }
  | { type: 'forged_key'; peer: string }
  | { type: 'undecryptable'; from: string }
  | { type: 'mailbox_drained' }
  | { type: 'error'; context: string; code: string; message: string }
  | { type: 'fatal'; code: string; message: string }
  | { type: 'account_deleted' };
