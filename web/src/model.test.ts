import { describe, expect, it } from 'vitest';
import { Conversations, MAX_UNSEEN_PER_FRIEND, SETTLED_LINGER_MS, burnsAt, countdown, isGone, outgoingLabel, type Incoming } from './model';

const T0 = 1_800_000_000_000;
const ALICE = 'n4mag7x5iurlqsokoemzddqof4c64act';

function incoming(overrides: Partial<Incoming> = {}): Omit<Incoming, 'kind' | 'shownAt'> {
  return { id: 'm1', peer: ALICE, text: 'the door code is 4711', sentAt: T0, expiresAt: T0 + 3_600_000, viewSeconds: 10, ...overrides };
}

describe('received messages', () => {
  it('wait hidden, then count down their view timer from the moment shown, then burn', () => {
    const c = new Conversations();
    c.received(incoming(), T0);
    expect(c.unseen(ALICE)).toBe(1);
    // Hidden messages do not burn before their ceiling.
    c.sweep(T0 + 600_000);
    expect(c.list(ALICE)).toHaveLength(1);
    expect(c.showAll(ALICE, T0 + 600_000)).toEqual(['m1']);
    expect(c.showAll(ALICE, T0 + 600_001)).toEqual([]);
    const [message] = c.list(ALICE);
    expect(message?.kind === 'in' && burnsAt(message)).toBe(T0 + 610_000);
    expect(c.sweep(T0 + 609_999)).toBe(false);
    expect(c.sweep(T0 + 610_000)).toBe(true);
    expect(c.list(ALICE)).toHaveLength(0);
    expect(message?.text).toBe('');
  });

  it('never outlive their ceiling, shown or not, with or without a view timer', () => {
    const c = new Conversations();
    c.received(incoming({ id: 'a', expiresAt: T0 + 5_000, viewSeconds: 60 }), T0);
    c.received(incoming({ id: 'b', expiresAt: T0 + 5_000, viewSeconds: 0 }), T0);
    c.received(incoming({ id: 'c', expiresAt: T0 + 5_000 }), T0);
    c.showOne('a', T0 + 1_000);
    c.showOne('b', T0 + 1_000);
    const [a, b] = c.list(ALICE);
    expect(a?.kind === 'in' && burnsAt(a)).toBe(T0 + 5_000);
    expect(b?.kind === 'in' && burnsAt(b)).toBe(T0 + 5_000);
    c.sweep(T0 + 5_000);
    expect(c.list(ALICE)).toHaveLength(0);
  });

  it('are kept once when delivered twice', () => {
    const c = new Conversations();
    c.received(incoming(), T0);
    c.received(incoming(), T0);
    expect(c.list(ALICE)).toHaveLength(1);
  });

  it('cannot be shown once gone', () => {
    const c = new Conversations();
    c.received(incoming({ expiresAt: T0 + 1 }), T0);
    expect(c.showOne('m1', T0 + 2)).toBe(false);
  });
});

describe('messages of ours', () => {
  it('go sending, sent, then read and burned (text dropped), then leave', () => {
    const c = new Conversations();
    c.queued('x', ALICE, 'hello', T0, T0 + 60_000);
    const [m] = c.list(ALICE);
    if (m?.kind !== 'out') throw new Error('no message');
    expect(outgoingLabel(m)).toBe('sending…');
    c.sent('x', T0 + 59_000);
    expect(outgoingLabel(m)).toBe('sent · not read yet');
    expect(m.expiresAt).toBe(T0 + 59_000);
    c.read('x', T0 + 1_000);
    expect(outgoingLabel(m)).toBe('read · burned');
    expect(m.text).toBe('');
    // A late expiry does not undo a read.
    c.expired('x', T0 + 60_000);
    expect(outgoingLabel(m)).toBe('read · burned');
    expect(isGone(m, T0 + 1_000 + SETTLED_LINGER_MS - 1)).toBe(false);
    c.sweep(T0 + 1_000 + SETTLED_LINGER_MS);
    expect(c.list(ALICE)).toHaveLength(0);
  });

  it('say "expired unread" when no receipt came in time', () => {
    const c = new Conversations();
    c.queued('y', ALICE, 'anyone?', T0, T0 + 5_000);
    c.sent('y', T0 + 5_000);
    c.expired('y', T0 + 5_000);
    const [m] = c.list(ALICE);
    expect(m?.kind === 'out' && outgoingLabel(m)).toBe('expired unread');
    expect(m?.text).toBe('');
  });

  it('report a refusal', () => {
    const c = new Conversations();
    c.queued('z', ALICE, 'hi', T0, T0 + 5_000);
    c.failed('z', 'forged key', T0);
    const [m] = c.list(ALICE);
    expect(m?.kind === 'out' && outgoingLabel(m)).toBe('not sent: forged key');
  });
});

describe('what a peer cannot stretch', () => {
  it('keeps a received message at most an hour on this clock, whatever its ceiling says', () => {
    const c = new Conversations();
    c.received(incoming({ expiresAt: T0 + 10 * 3_600_000, viewSeconds: 0 }), T0);
    expect(c.sweep(T0 + 3_599_999)).toBe(false);
    expect(c.sweep(T0 + 3_600_000)).toBe(true);
    expect(c.list(ALICE)).toHaveLength(0);
  });

  it('keeps at most MAX_UNSEEN_PER_FRIEND unseen messages from one friend, dropping the oldest', () => {
    const c = new Conversations();
    let dropped = 0;
    for (let i = 0; i < MAX_UNSEEN_PER_FRIEND + 3; i++) dropped += c.received(incoming({ id: `m${i}` }), T0);
    expect(dropped).toBe(3);
    expect(c.unseen(ALICE)).toBe(MAX_UNSEEN_PER_FRIEND);
    expect(c.list(ALICE)[0]?.id).toBe('m3');
  });

  it('expires our own message at its ceiling even if the device never says so, and never extends it', () => {
    const c = new Conversations();
    c.queued('x', ALICE, 'hello', T0, T0 + 60_000);
    c.sent('x', T0 + 3_600_000);
    const [message] = c.list(ALICE);
    expect(message?.expiresAt).toBe(T0 + 60_000);
    c.queued('y', ALICE, 'never sent', T0, T0 + 30_000);
    expect(c.sweep(T0 + 60_000)).toBe(true);
    expect(c.list(ALICE).map((m) => m.kind === 'out' && m.state)).toEqual(['expired', 'expired']);
    expect(c.list(ALICE).every((m) => m.text === '')).toBe(true);
  });
});

describe('countdowns', () => {
  it('show minutes and seconds left, rounded up, never negative', () => {
    expect(countdown(T0 + 3_600_000, T0)).toBe('60:00');
    expect(countdown(T0 + 9_001, T0)).toBe('0:10');
    expect(countdown(T0 + 9_000, T0)).toBe('0:09');
    expect(countdown(T0 - 5, T0)).toBe('0:00');
  });
});

describe('locking', () => {
  it('forgets every text', () => {
    const c = new Conversations();
    c.received(incoming(), T0);
    c.queued('x', ALICE, 'hello', T0, T0 + 60_000);
    const kept = [...c.list(ALICE)];
    c.clear();
    expect(c.list(ALICE)).toHaveLength(0);
    expect(kept.every((m) => m.text === '')).toBe(true);
  });
});
