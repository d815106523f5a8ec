// The page's view of conversations: messages with their timers and states,
// in memory only. Pure functions over plain data, with the time passed in,
// so the timers are tested in milliseconds (model.test.ts).

/** A friend's message, decrypted, waiting to be shown or counting down. */
export interface Incoming {
  kind: 'in';
  /** The sender's id for it (what the read receipt names). */
  id: string;
  peer: string;
  text: string;
  sentAt: number;
  /** Hard ceiling: gone by then, shown or not. */
  expiresAt: number;
  /** Seconds on screen once shown; 0: until the ceiling. */
  viewSeconds: number;
  /** When it was first shown; undefined while hidden. */
  shownAt?: number;
}

export type OutgoingState = 'sending' | 'sent' | 'read' | 'expired' | 'failed';

/** A message of ours. Its text goes when it is read or expires. */
export interface Outgoing {
  kind: 'out';
  id: string;
  peer: string;
  text: string;
  createdAt: number;
  expiresAt: number;
  state: OutgoingState;
  /** When it reached its final state (read, expired, failed). */
  settledAt?: number;
  failure?: string;
}

export type Message = Incoming | Outgoing;

/** How long a settled message of ours stays listed (without its text). */
export const SETTLED_LINGER_MS = 60_000;

/** The longest a message may live. */
export const MAX_TTL_SECONDS = 3600;
/** Unseen messages kept from one friend at most. */
export const MAX_UNSEEN_PER_FRIEND = 500;

/** When a shown message burns: its view timer from the moment it was
 * shown, never later than its ceiling. */
export function burnsAt(message: Incoming): number | undefined {
  if (message.shownAt === undefined) return undefined;
  if (message.viewSeconds <= 0) return message.expiresAt;
  return Math.min(message.shownAt + message.viewSeconds * 1000, message.expiresAt);
}

/** Marks a message shown at `now` (once); true if it was hidden before. */
export function show(message: Incoming, now: number): boolean {
  if (message.shownAt !== undefined) return false;
  message.shownAt = now;
  return true;
}

/** Whether a message is gone at `now` and must leave the screen. */
export function isGone(message: Message, now: number): boolean {
  if (message.kind === 'in') {
    const burn = burnsAt(message);
    return message.expiresAt <= now || (burn !== undefined && burn <= now);
  }
  return message.settledAt !== undefined && message.settledAt + SETTLED_LINGER_MS <= now;
}

/** The status line of a message of ours. */
export function outgoingLabel(message: Outgoing): string {
  switch (message.state) {
    case 'sending':
      return 'sending…';
    case 'sent':
      return 'sent · not read yet';
    case 'read':
      return 'read · burned';
    case 'expired':
      return 'expired unread';
    case 'failed':
      return `not sent: ${message.failure ?? 'refused'}`;
  }
}

/** "4:05", "0:09": whole seconds left until `at`, never negative. */
export function countdown(at: number, now: number): string {
  const seconds = Math.max(0, Math.ceil((at - now) / 1000));
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return `${minutes}:${rest.toString().padStart(2, '0')}`;
}

/** Every conversation, by friend id. */
export class Conversations {
  private readonly byPeer = new Map<string, Message[]>();

  list(peer: string): readonly Message[] {
    return this.byPeer.get(peer) ?? [];
  }

  private find(id: string): Message | undefined {
    for (const messages of this.byPeer.values()) {
      const found = messages.find((m) => m.id === id);
      if (found) return found;
    }
    return undefined;
  }

  private push(message: Message): void {
    const list = this.byPeer.get(message.peer) ?? [];
    list.push(message);
    this.byPeer.set(message.peer, list);
  }

  /** A friend's message. Its ceiling is never later than an hour from
   * now on this device's clock, whatever the sender or the server said;
   * past [`MAX_UNSEEN_PER_FRIEND`] unseen from one friend, the oldest
   * unseen is dropped (a friend who floods cannot fill this page's memory).
   * Returns how many were dropped. */
  received(message: Omit<Incoming, 'kind' | 'shownAt'>, now: number): number {
    if (this.find(message.id)) return 0;
    const expiresAt = Math.min(message.expiresAt, now + MAX_TTL_SECONDS * 1000);
    this.push({ ...message, expiresAt, kind: 'in' });
    const list = this.byPeer.get(message.peer) ?? [];
    let dropped = 0;
    while (list.filter((m) => m.kind === 'in' && m.shownAt === undefined).length > MAX_UNSEEN_PER_FRIEND) {
      const oldest = list.findIndex((m) => m.kind === 'in' && m.shownAt === undefined);
      const [gone] = list.splice(oldest, 1);
      if (gone) gone.text = '';
      dropped++;
    }
    return dropped;
  }

  /** A message of ours left the composer; `id` is its client message id. */
  queued(id: string, peer: string, text: string, now: number, expiresAt: number): void {
    this.push({ kind: 'out', id, peer, text, createdAt: now, expiresAt, state: 'sending' });
  }

  private settle(id: string, state: OutgoingState, now: number, failure?: string): void {
    const message = this.find(id);
    if (message?.kind !== 'out') return;
    if (message.state === 'read' || message.state === 'expired' || message.state === 'failed') return;
    message.state = state;
    if (state !== 'sent') {
      message.settledAt = now;
      // The sender's copy burns too.
      message.text = '';
      if (failure !== undefined) message.failure = failure;
    }
  }

  sent(id: string, expiresAt: number): void {
    const message = this.find(id);
    if (message?.kind === 'out' && message.state === 'sending') {
      message.state = 'sent';
      // Never later than the ceiling it was written with.
      message.expiresAt = Math.min(expiresAt, message.expiresAt);
    }
  }

  read(id: string, now: number): void {
    this.settle(id, 'read', now);
  }

  expired(id: string, now: number): void {
    this.settle(id, 'expired', now);
  }

  failed(id: string, reason: string, now: number): void {
    this.settle(id, 'failed', now, reason);
  }

  /** Shows every hidden message from `peer`; returns the ids newly shown
   * (each needs a read receipt). */
  showAll(peer: string, now: number): string[] {
    const shown: string[] = [];
    for (const message of this.list(peer)) {
      if (message.kind === 'in' && !isGone(message, now) && show(message, now)) shown.push(message.id);
    }
    return shown;
  }

  /** Shows one message; true if it was hidden. */
  showOne(id: string, now: number): boolean {
    const message = this.find(id);
    return message?.kind === 'in' && !isGone(message, now) && show(message, now);
  }

  /** Drops what is gone at `now` (texts included); true if anything went. */
  sweep(now: number): boolean {
    let changed = false;
    for (const [peer, messages] of this.byPeer) {
      // Ours past their ceiling with no word from the device (offline, or
      // never sent): expired unread here too, their text dropped.
      for (const m of messages) {
        if (m.kind === 'out' && (m.state === 'sending' || m.state === 'sent') && m.expiresAt <= now) {
          this.settle(m.id, 'expired', now);
          changed = true;
        }
      }
      const kept = messages.filter((m) => !isGone(m, now));
      if (kept.length !== messages.length) {
        changed = true;
        for (const gone of messages) if (!kept.includes(gone)) gone.text = '';
        this.byPeer.set(peer, kept);
      }
    }
    return changed;
  }

  /** Messages from `peer` not shown yet. */
  unseen(peer: string): number {
    return this.list(peer).filter((m) => m.kind === 'in' && m.shownAt === undefined).length;
  }

  /** Forgets everything (lock). */
  clear(): void {
    for (const messages of this.byPeer.values()) for (const m of messages) m.text = '';
    this.byPeer.clear();
  }

  /** Forgets a friend's conversation (removed, blocked). */
  forget(peer: string): void {
    for (const m of this.list(peer)) m.text = '';
    this.byPeer.delete(peer);
  }
}
