// The device's worker: everything slow or secret happens here, off the
// page's thread. It runs the Rust core (wasm), which builds and reads every
// frame; owns the WebSocket (reconnecting with backoff) and the sealed key
// store in IndexedDB; and holds a Web Lock on the identity so two tabs never
// share one ratchet. Locking the app terminates this worker, which wipes
// its memory.
/// <reference lib="webworker" />

import init, { Device, type Step, qrModules, safetyNumber } from './wasm/wisp_wasm.js';
import wasmUrl from './wasm/wisp_wasm_bg.wasm?url';
import { deleteSealed, hasSealed, loadSealed, saveSealed } from './keystore';
import type { DeviceEvent, FromWorker, ToWorker } from './protocol';

declare const self: DedicatedWorkerGlobalScope;

const LOCK_NAME = 'wisp-identity';
const POW_SLICE = 1 << 13;

let device: Device | undefined;
let socket: WebSocket | undefined;
let reconnectAttempts = 0;
/** How long a connection must hold before the reconnect backoff resets. */
const STEADY_MS = 30_000;
let steadyTimer: ReturnType<typeof setTimeout> | undefined;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
let deleting = false;
/** Every step runs in order: a key store write finishes before the frames
 * that depend on it leave, and before the next frame is read. */
let queue: Promise<void> = Promise.resolve();

function post(message: FromWorker): void {
  self.postMessage(message);
}

function enqueue(work: () => Promise<void> | void): void {
  queue = queue.then(work).catch((error: unknown) => {
    post({ t: 'command-failed', message: error instanceof Error ? error.message : String(error) });
  });
}

/** Takes the identity's lock for as long as this worker lives. */
function takeLock(): Promise<boolean> {
  return new Promise((resolve) => {
    void navigator.locks.request(LOCK_NAME, { ifAvailable: true }, (lock) => {
      if (!lock) {
        resolve(false);
        return undefined;
      }
      resolve(true);
      // Held until the worker ends (lock or page close).
      return new Promise<void>(() => undefined);
    });
  });
}

/** Stores the sealed state (if any), sends the frames, tells the page. */
async function apply(step: Step): Promise<DeviceEvent[]> {
  const sealed = step.sealed;
  const frames: Uint8Array[] = [];
  for (let i = 0; i < step.frameCount; i++) frames.push(step.frame(i));
  const events = JSON.parse(step.events) as DeviceEvent[];
  step.free();
  if (sealed) await saveSealed(sealed);
  if (socket?.readyState === WebSocket.OPEN) for (const frame of frames) socket.send(frame as Uint8Array<ArrayBuffer>);
  if (events.length > 0) post({ t: 'events', events });
  for (const event of events) {
    if (event.type === 'pow') enqueue(solvePuzzle);
    if (event.type === 'ready') {
      // The backoff starts over only once a connection has held: a server
      // that closes right after each login is not retried every 0.25 s.
      clearTimeout(steadyTimer);
      const ready = socket;
      steadyTimer = setTimeout(() => {
        if (socket === ready) reconnectAttempts = 0;
      }, STEADY_MS);
      post({ t: 'connection', state: 'online' });
    }
    if (event.type === 'fatal') post({ t: 'connection', state: 'stopped', detail: event.message });
    if (event.type === 'account_deleted') enqueue(finishDeletion);
    if (event.type === 'error' && event.context === 'account') deleting = false;
  }
  return events;
}

/** Solves the registration puzzle in slices, telling the page how far. */
async function solvePuzzle(): Promise<void> {
  while (device && device.powExpected > 0) {
    const step = device.work(POW_SLICE);
    post({ t: 'progress', stage: 'pow', tried: device.powTried, expected: device.powExpected });
    await apply(step);
    // Let the socket's and the page's messages in between slices.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

function socketUrl(): string {
  const scheme = self.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${self.location.host}/`;
}

function connect(): void {
  if (!device || deleting) return;
  clearTimeout(reconnectTimer);
  post({ t: 'connection', state: 'connecting' });
  const ws = new WebSocket(socketUrl());
  ws.binaryType = 'arraybuffer';
  socket = ws;
  ws.onopen = () =>
    enqueue(async () => {
      if (device && socket === ws) await apply(device.connected());
    });
  ws.onmessage = (message: MessageEvent) =>
    enqueue(async () => {
      if (!device || socket !== ws || !(message.data instanceof ArrayBuffer)) return;
      await apply(device.receive(new Uint8Array(message.data), Date.now()));
    });
  ws.onclose = (close: CloseEvent) =>
    enqueue(() => {
      if (socket !== ws) return;
      socket = undefined;
      if (!device) return;
      device.disconnected();
      if (deleting) return;
      if (device.stopped) return;
      if (close.code === 1008 && /session/i.test(close.reason)) {
        post({ t: 'connection', state: 'superseded', detail: close.reason });
        return;
      }
      reconnectAttempts++;
      // Full jitter under a bound that doubles from 0.5 s up to 30 s.
      const bound = Math.min(30_000, 500 * 2 ** Math.min(reconnectAttempts - 1, 10));
      const wait = Math.random() * bound;
      post({ t: 'connection', state: 'offline', detail: close.reason || `reconnecting in ${Math.ceil(wait / 1000)} s` });
      reconnectTimer = setTimeout(connect, wait);
    });
}

async function opened(next: Device): Promise<void> {
  device = next;
  const invitation = next.invitationLink(Date.now());
  let qr: Uint8Array | null = null;
  try {
    qr = qrModules(`${self.location.origin}/#/add/${invitation.slice('wisp://add/'.length)}`);
  } catch {
    qr = null;
  }
  post({ t: 'unlocked', userId: next.userId, invitation, qr, webQr: true, displayName: next.displayName ?? null });
  setInterval(() => enqueue(async () => { if (device) await apply(device.tick(Date.now())); }), 1000);
  connect();
}

async function handle(message: ToWorker): Promise<void> {
  switch (message.t) {
    case 'create':
    case 'unlock': {
      if (device) return;
      const exists = await hasSealed();
      if (message.t === 'create' && exists) {
        post({ t: 'unlock-failed', reason: 'exists', message: 'An identity already exists in this browser; unlock it.' });
        return;
      }
      if (message.t === 'unlock' && !exists) {
        post({ t: 'unlock-failed', reason: 'no-store', message: 'There is no identity in this browser yet.' });
        return;
      }
      if (!(await takeLock())) {
        post({
          t: 'unlock-failed',
          reason: 'in-use',
          message: 'This identity is open in another tab or window. Close it there first.',
        });
        return;
      }
      post({ t: 'progress', stage: 'deriving' });
      try {
        if (message.t === 'create') {
          const created = Device.create(message.passphrase);
          await saveSealed(created.sealed());
          await opened(created);
        } else {
          const sealed = await loadSealed();
          if (!sealed) throw new Error('the key store disappeared');
          await opened(Device.unlock(message.passphrase, sealed));
        }
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        const wrong = /wrong passphrase/.test(text);
        post({ t: 'unlock-failed', reason: wrong ? 'wrong-passphrase' : 'other', message: wrong ? 'Wrong passphrase.' : text });
        // The lock goes with this worker; the page starts a fresh one.
      }
      return;
    }
    case 'friend':
      if (device) await apply(device.friend(message.action, message.peer));
      return;
    case 'send': {
      if (!device) return;
      const step = device.sendText(message.to, message.text, message.viewSeconds, message.ttlSeconds, Date.now());
      const events = JSON.parse(step.events) as DeviceEvent[];
      const queued = events.find((e) => e.type === 'queued');
      if (queued?.type === 'queued') post({ t: 'queued', tag: message.tag, id: queued.client_msg_id, expiresAt: queued.expires_unix_ms });
      await apply(step);
      return;
    }
    case 'read':
      if (device) await apply(device.markRead(message.id, Date.now()));
      return;
    case 'verify':
      if (device) await apply(device.setVerified(message.friend, message.verified));
      return;
    case 'safety':
      if (device) post({ t: 'safety', friend: message.friend, groups: safetyNumber(device.userId, message.friend) });
      return;
    case 'petname': {
      if (!device) return;
      let step: Step;
      try {
        step = device.setPetname(message.peer, message.name);
      } catch (error) {
        post({ t: 'petname-set', peer: message.peer, error: error instanceof Error ? error.message : String(error) });
        return;
      }
      await apply(step);
      post({ t: 'petname-set', peer: message.peer });
      return;
    }
    case 'display-name': {
      if (!device) return;
      let step: Step;
      try {
        step = device.setDisplayName(message.name, Date.now());
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        post({ t: 'display-name', name: device.displayName ?? null, error: text });
        return;
      }
      await apply(step);
      post({ t: 'display-name', name: device.displayName ?? null });
      return;
    }
    case 'refresh':
      if (device) await apply(device.refresh());
      return;
    case 'reconnect':
      if (device && !socket) connect();
      return;
    case 'delete-account':
      await deleteAccount();
      return;
  }
}

/** Deletes the account on the server, then the key store here. */
async function deleteAccount(): Promise<void> {
  if (!device) return;
  const step = device.deleteAccount();
  deleting = true;
  await apply(step);
}

async function finishDeletion(): Promise<void> {
  await deleteSealed();
  device?.free();
  device = undefined;
  socket?.close();
  post({ t: 'account-deleted' });
}

const ready = init({ module_or_path: wasmUrl });

self.onmessage = (message: MessageEvent<ToWorker>) => {
  const command = message.data;
  enqueue(async () => {
    await ready;
    try {
      await handle(command);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      post({ t: 'command-failed', tag: command.t === 'send' ? command.tag : undefined, message: text });
    }
  });
};
