// The page: onboarding, unlock, friends, chat, safety numbers, settings.
// It holds no key: it talks to the device's worker (worker.ts). Every text
// from the network is rendered by Preact as text, never as HTML, and names
// and message texts sit inside <bdi>, so a direction override in one cannot
// reorder what is around it.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import {
  Conversations,
  MAX_TTL_SECONDS,
  burnsAt,
  countdown,
  outgoingLabel,
  type Incoming,
  type Message,
  type Outgoing,
} from './model';
import type { Connection, DeviceEvent, FriendAction, FriendView, FromWorker, PeerView, ToWorker } from './protocol';
import {
  MAX_NAME_CHARS,
  invitationFromHash,
  nameOf,
  normaliseInvitation,
  passphraseStrength,
  safetyRows,
  typedName,
  webLink,
  type Named,
} from './text';

const AUTO_LOCK_MS = 5 * 60_000;

type Screen = 'loading' | 'onboarding' | 'unlock' | 'main';
type Pane = { kind: 'none' } | { kind: 'chat'; peer: string } | { kind: 'safety'; peer: string } | { kind: 'settings' };

interface Requests {
  incoming: PeerView[];
  outgoing: PeerView[];
  blocked: PeerView[];
}

interface Notice {
  kind: 'info' | 'error' | 'warning';
  /** Who it is about, shown by name before the text. */
  peer?: string;
  text: string;
}

/** What a name that someone gave themselves is worth. */
const CLAIM_TITLE =
  'The name they gave themselves: anyone can pick any name, "Alice" included. Only the safety number proves who they are.';

function startWorker(): Worker {
  return new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
}

/** Someone's name, as text, isolated from what is around it: the user's
 * petname; else the name they gave themselves, in quotes, marked as only
 * their claim; else their short id. */
function Name(props: { peer: Named }): JSX.Element {
  const label = nameOf(props.peer);
  switch (label.kind) {
    case 'petname':
      return (
        <bdi class="name petname" data-testid="name">
          {label.text}
        </bdi>
      );
    case 'claimed':
      return (
        <span class="name claimed" title={CLAIM_TITLE} data-testid="name">
          “<bdi>{label.text}</bdi>”<span class="claim-mark"> (their name)</span>
        </span>
      );
    case 'id':
      return (
        <code class="name" data-testid="name">
          {label.text}
        </code>
      );
  }
}

export function App(props: { hasStore: boolean }): JSX.Element {
  // One worker at a time (created once here, replaced on lock); never a
  // new one per render.
  const worker = useRef<Worker | null>(null);
  if (worker.current === null) worker.current = startWorker();
  const conversations = useRef(new Conversations());
  const [, setVersion] = useState(0);
  const rerender = (): void => setVersion((v) => v + 1);
  const [screen, setScreen] = useState<Screen>(props.hasStore ? 'unlock' : 'onboarding');
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const [pow, setPow] = useState<{ tried: number; expected: number } | undefined>(undefined);
  const [failure, setFailure] = useState<string | undefined>(undefined);
  const [userId, setUserId] = useState('');
  const [invitation, setInvitation] = useState('');
  const [qr, setQr] = useState<Uint8Array | null>(null);
  const [connection, setConnection] = useState<{ state: Connection; detail?: string }>({ state: 'connecting' });
  const [friends, setFriends] = useState<FriendView[]>([]);
  const [displayName, setDisplayName] = useState<string | null>(null);
  const [displayNameError, setDisplayNameError] = useState<string | undefined>(undefined);
  const [petnameResult, setPetnameResult] = useState<{ peer: string; error?: string; seq: number }>({ peer: '', seq: 0 });
  const [requests, setRequests] = useState<Requests>({ incoming: [], outgoing: [], blocked: [] });
  const [pane, setPane] = useState<Pane>({ kind: 'none' });
  const [notices, setNotices] = useState<Notice[]>([]);
  const [forged, setForged] = useState<string[]>([]);
  const [safety, setSafety] = useState<Record<string, string>>({});
  const [addText, setAddText] = useState(() => invitationFromHash(location.hash) ?? '');
  const [showOnOpen, setShowOnOpen] = useState(true);
  const [visible, setVisible] = useState(document.visibilityState === 'visible');
  const pendingSends = useRef(new Map<number, { to: string; text: string }>());
  const nextTag = useRef(1);
  const paneRef = useRef(pane);
  paneRef.current = pane;

  const send = (message: ToWorker): void => worker.current?.postMessage(message);
  const notify = (notice: Notice): void => setNotices((list) => [...list.slice(-3), notice]);

  const onEvent = (event: DeviceEvent): void => {
    const now = Date.now();
    const c = conversations.current;
    switch (event.type) {
      case 'ready':
        setConnection({ state: 'online' });
        break;
      case 'registered':
        notify({ kind: 'info', text: 'Registered. Your identity is ready.' });
        setPow(undefined);
        break;
      case 'friends':
        setFriends(event.friends);
        break;
      case 'requests':
        setRequests({ incoming: event.incoming, outgoing: event.outgoing, blocked: event.blocked });
        break;
      case 'friend_request':
        notify({ kind: 'info', peer: event.from, text: 'asks to be your friend.' });
        break;
      case 'friend_accepted':
        notify({ kind: 'info', peer: event.by, text: 'accepted: you are friends now.' });
        break;
      case 'friend_removed':
        c.forget(event.by);
        notify({ kind: 'info', peer: event.by, text: 'ended the friendship.' });
        break;
      case 'friend_op_done':
        if (event.action === 'remove' || event.action === 'block') c.forget(event.id);
        break;
      case 'message': {
        const dropped = c.received(
          {
            id: event.client_msg_id,
            peer: event.from,
            text: event.text,
            sentAt: event.sent_unix_ms,
            expiresAt: event.expires_unix_ms,
            viewSeconds: event.view_seconds,
          },
          now,
        );
        if (dropped > 0)
          notify({ kind: 'warning', peer: event.from, text: 'sent more unread messages than this page keeps; the oldest unread went unseen.' });
        break;
      }
      case 'sent':
        c.sent(event.client_msg_id, event.expires_unix_ms);
        break;
      case 'read':
        c.read(event.client_msg_id, now);
        break;
      case 'expired_unread':
        c.expired(event.client_msg_id, now);
        break;
      case 'send_failed':
        c.failed(event.client_msg_id, event.code === 'FORGED_KEY' ? 'forged key' : event.message, now);
        break;
      case 'forged_key':
        setForged((list) => (list.includes(event.peer) ? list : [...list, event.peer]));
        break;
      case 'undecryptable':
        notify({ kind: 'warning', peer: event.from, text: 'sent a message that could not be decrypted; a fresh session is being set up.' });
        break;
      case 'error':
        notify({ kind: 'error', text: `${event.message} (${event.code})` });
        break;
      case 'fatal':
        setConnection({ state: 'stopped', detail: event.message });
        break;
      default:
        break;
    }
  };

  const onWorker = (message: FromWorker): void => {
    switch (message.t) {
      case 'unlocked':
        setUserId(message.userId);
        setDisplayName(message.displayName);
        setInvitation(message.invitation);
        setQr(message.qr);
        setBusy(undefined);
        setFailure(undefined);
        setScreen('main');
        break;
      case 'unlock-failed':
        setBusy(undefined);
        setFailure(message.message);
        // A failed attempt's worker may hold the lock: start afresh.
        replaceWorker();
        break;
      case 'progress':
        if (message.stage === 'deriving') setBusy('Deriving the key from your passphrase…');
        else if (message.tried !== undefined && message.expected !== undefined)
          setPow({ tried: message.tried, expected: message.expected });
        break;
      case 'connection':
        setConnection({ state: message.state, detail: message.detail });
        break;
      case 'events':
        for (const event of message.events) onEvent(event);
        break;
      case 'queued': {
        const pending = pendingSends.current.get(message.tag);
        pendingSends.current.delete(message.tag);
        if (pending) conversations.current.queued(message.id, pending.to, pending.text, Date.now(), message.expiresAt);
        break;
      }
      case 'command-failed':
        if (message.tag !== undefined) pendingSends.current.delete(message.tag);
        notify({ kind: 'error', text: message.message });
        break;
      case 'safety':
        setSafety((all) => ({ ...all, [message.friend]: message.groups }));
        break;
      case 'petname-set':
        setPetnameResult((last) => ({ peer: message.peer, error: message.error, seq: last.seq + 1 }));
        break;
      case 'display-name':
        setDisplayName(message.name);
        setDisplayNameError(message.error);
        break;
      case 'account-deleted':
        lock('onboarding');
        notify({ kind: 'info', text: 'Your account was deleted, and the keys in this browser with it.' });
        break;
    }
    rerender();
  };

  useEffect(() => {
    if (worker.current) worker.current.onmessage = (m: MessageEvent<FromWorker>) => onWorker(m.data);
  }, []);

  /** Ends the worker, and with it every key in its memory and its lock. */
  function replaceWorker(): void {
    worker.current?.terminate();
    const next = startWorker();
    next.onmessage = (m: MessageEvent<FromWorker>) => onWorker(m.data);
    worker.current = next;
  }

  /** Wipes the keys: the worker (and its memory) goes, and the messages. */
  const lock = (next: Screen = 'unlock'): void => {
    replaceWorker();
    conversations.current.clear();
    pendingSends.current.clear();
    setFriends([]);
    setRequests({ incoming: [], outgoing: [], blocked: [] });
    setPane({ kind: 'none' });
    setSafety({});
    setForged([]);
    setUserId('');
    setDisplayName(null);
    setDisplayNameError(undefined);
    setPetnameResult((last) => ({ peer: '', seq: last.seq + 1 }));
    // Nothing of the identity stays on screen: notices name friends.
    setNotices([]);
    setInvitation('');
    setQr(null);
    setAddText('');
    setPow(undefined);
    setFailure(undefined);
    setConnection({ state: 'connecting' });
    setScreen(next);
  };

  // Timers: a second's tick moves the countdowns and burns what is due;
  // opened, visible conversations show what arrives (and send receipts).
  useEffect(() => {
    const timer = setInterval(() => {
      const now = Date.now();
      const current = paneRef.current;
      if (current.kind === 'chat' && document.visibilityState === 'visible' && showOnOpen) {
        for (const id of conversations.current.showAll(current.peer, now)) send({ t: 'read', id });
      }
      conversations.current.sweep(now);
      rerender();
    }, 250);
    return () => clearInterval(timer);
  }, [showOnOpen]);

  useEffect(() => {
    const onVisibility = (): void => setVisible(document.visibilityState === 'visible');
    document.addEventListener('visibilitychange', onVisibility);
    return () => document.removeEventListener('visibilitychange', onVisibility);
  }, []);

  // Auto-lock after inactivity.
  useEffect(() => {
    if (screen !== 'main') return undefined;
    let timer = setTimeout(() => lock(), AUTO_LOCK_MS);
    const touch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => lock(), AUTO_LOCK_MS);
    };
    const kinds = ['keydown', 'pointerdown', 'wheel', 'touchstart'] as const;
    for (const kind of kinds) window.addEventListener(kind, touch, { passive: true });
    return () => {
      clearTimeout(timer);
      for (const kind of kinds) window.removeEventListener(kind, touch);
    };
  }, [screen]);

  useEffect(() => {
    const onHash = (): void => {
      const found = invitationFromHash(location.hash);
      if (found) setAddText(found);
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  if (screen === 'onboarding' || screen === 'unlock') {
    return (
      <main class="narrow">
        <h1>Wisp</h1>
        <Status text={busy} />
        {screen === 'onboarding' ? (
          <Onboarding
            busy={busy !== undefined}
            failure={failure}
            onCreate={(passphrase) => {
              setFailure(undefined);
              setBusy('Starting…');
              send({ t: 'create', passphrase });
            }}
          />
        ) : (
          <Unlock
            busy={busy !== undefined}
            failure={failure}
            onUnlock={(passphrase) => {
              setFailure(undefined);
              setBusy('Starting…');
              send({ t: 'unlock', passphrase });
            }}
          />
        )}
        {addText ? <p class="hint">After unlocking you can send the friend request from the link you opened.</p> : null}
      </main>
    );
  }

  const now = Date.now();
  const friendIds = new Set(friends.map((f) => f.id));
  /** Whoever `id` is, with the names the lists carry. */
  const named = (id: string): Named =>
    friends.find((f) => f.id === id) ??
    [...requests.incoming, ...requests.outgoing, ...requests.blocked].find((p) => p.id === id) ?? { id };
  const rename = (peer: string, name: string | null): void => send({ t: 'petname', peer, name });
  const act = (action: FriendAction, peer: string): void => send({ t: 'friend', action, peer });
  const openChat = (peer: string): void => {
    setPane({ kind: 'chat', peer });
  };
  const registering = connection.state !== 'online' && pow !== undefined;

  return (
    <div class="app">
      <header class="bar">
        <h1>Wisp</h1>
        <p class={`connection ${connection.state}`} role="status" aria-live="polite" data-testid="connection">
          {connectionText(connection.state)}
          {connection.detail ? ` — ${connection.detail}` : ''}
        </p>
        {connection.state === 'superseded' ? (
          <button type="button" onClick={() => send({ t: 'reconnect' })}>
            Take the session back
          </button>
        ) : null}
        <button type="button" onClick={() => setPane({ kind: 'settings' })}>
          Settings
        </button>
        <button type="button" onClick={() => lock()}>
          Lock
        </button>
      </header>
      {registering && pow ? (
        <div class="registering">
          <label for="pow">Registering: proof of work</label>
          <progress id="pow" max={pow.expected} value={Math.min(pow.tried, pow.expected)} />
        </div>
      ) : null}
      <ul class="notices" aria-live="polite">
        {notices.map((n, i) => (
          <li key={i} class={n.kind}>
            {n.peer !== undefined ? (
              <>
                <Name peer={named(n.peer)} />{' '}
              </>
            ) : null}
            {n.text}
          </li>
        ))}
      </ul>
      {forged.map((peer) => (
        <div key={peer} class="warning" role="alert" data-testid="forged-key">
          <strong>
            Warning: a key for <Name peer={named(peer)} /> (<code>{peer}</code>) is forged.
          </strong> The server handed out a key their identity did not
          sign, so someone may be intercepting. Nothing was sent. Compare your safety number with them in person or on
          a call.{' '}
          <button type="button" onClick={() => setPane({ kind: 'safety', peer })}>
            Show the safety number
          </button>
        </div>
      ))}
      <div class="columns">
        <nav class="side" aria-label="Friends">
          <section aria-labelledby="you">
            <h2 id="you">You</h2>
            <p>
              Your id: <code data-testid="my-id">{userId}</code>
            </p>
            <Invite link={webLink(location.origin, invitation)} qr={qr} />
          </section>
          <section aria-labelledby="add">
            <h2 id="add">Add a friend</h2>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                const text = normaliseInvitation(addText);
                if (text) act('request', text);
                setAddText('');
                if (location.hash.startsWith('#/add/')) history.replaceState(null, '', location.pathname);
              }}
            >
              <label for="add-id">Their id or invitation link</label>
              <input
                id="add-id"
                value={addText}
                autocomplete="off"
                spellcheck={false}
                onInput={(e) => setAddText(e.currentTarget.value)}
              />
              <button type="submit" disabled={addText.trim() === ''}>
                Send friend request
              </button>
            </form>
          </section>
          <section aria-labelledby="friends">
            <h2 id="friends">Friends ({friends.length}/20)</h2>
            {friends.length === 0 ? <p class="hint">No friends yet: share your invitation link.</p> : null}
            <ul class="friends" data-testid="friends">
              {friends.map((f) => {
                const unseen = conversations.current.unseen(f.id);
                return (
                  <li key={f.id}>
                    <button
                      type="button"
                      class="friend"
                      aria-current={pane.kind === 'chat' && pane.peer === f.id ? 'true' : undefined}
                      onClick={() => openChat(f.id)}
                      title={f.id}
                    >
                      <Name peer={f} />
                      {f.verified ? <span class="verified"> ✓ verified</span> : null}
                      {unseen > 0 ? <span class="unseen"> ({unseen} new)</span> : null}
                    </button>
                  </li>
                );
              })}
            </ul>
          </section>
          <Pending requests={requests} act={act} />
        </nav>
        <main class="pane">
          {pane.kind === 'chat' && friendIds.has(pane.peer) ? (
            <Chat
              peer={named(pane.peer)}
              petnameResult={petnameResult}
              onRename={(name) => rename(pane.peer, name)}
              verified={friends.find((f) => f.id === pane.peer)?.verified ?? false}
              messages={conversations.current.list(pane.peer)}
              now={now}
              visible={visible}
              showOnOpen={showOnOpen}
              onShow={(id) => {
                if (conversations.current.showOne(id, Date.now())) send({ t: 'read', id });
                rerender();
              }}
              onSend={(text, viewSeconds, ttlSeconds) => {
                const tag = nextTag.current++;
                pendingSends.current.set(tag, { to: pane.peer, text });
                send({ t: 'send', tag, to: pane.peer, text, viewSeconds, ttlSeconds });
              }}
              onSafety={() => setPane({ kind: 'safety', peer: pane.peer })}
              onRemove={() => act('remove', pane.peer)}
              onBlock={() => act('block', pane.peer)}
            />
          ) : null}
          {pane.kind === 'safety' ? (
            <Safety
              me={userId}
              peer={named(pane.peer)}
              groups={safety[pane.peer]}
              verified={friends.find((f) => f.id === pane.peer)?.verified ?? false}
              isFriend={friendIds.has(pane.peer)}
              request={() => send({ t: 'safety', friend: pane.peer })}
              mark={(verified) => send({ t: 'verify', friend: pane.peer, verified })}
              back={() => setPane({ kind: 'chat', peer: pane.peer })}
            />
          ) : null}
          {pane.kind === 'settings' ? (
            <Settings
              userId={userId}
              displayName={displayName}
              displayNameError={displayNameError}
              setDisplayName={(name) => send({ t: 'display-name', name })}
              showOnOpen={showOnOpen}
              setShowOnOpen={setShowOnOpen}
              deleteAccount={() => send({ t: 'delete-account' })}
            />
          ) : null}
          {pane.kind === 'none' || (pane.kind === 'chat' && !friendIds.has(pane.peer)) ? (
            <p class="hint">Pick a friend to chat, or share your invitation link.</p>
          ) : null}
        </main>
      </div>
    </div>
  );
}

function connectionText(state: Connection): string {
  switch (state) {
    case 'connecting':
      return 'Connecting…';
    case 'online':
      return 'Online';
    case 'offline':
      return 'Offline, reconnecting';
    case 'superseded':
      return 'Closed: this account is open on too many devices';
    case 'stopped':
      return 'Stopped';
  }
}

function Status(props: { text: string | undefined }): JSX.Element {
  return (
    <p role="status" aria-live="polite" class="status" data-testid="status">
      {props.text ?? ''}
    </p>
  );
}

function Onboarding(props: { busy: boolean; failure?: string; onCreate: (passphrase: string) => void }): JSX.Element {
  const [passphrase, setPassphrase] = useState('');
  const [repeat, setRepeat] = useState('');
  const strength = passphraseStrength(passphrase);
  const mismatch = repeat !== '' && repeat !== passphrase;
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        if (passphrase && passphrase === repeat) props.onCreate(passphrase);
      }}
    >
      <h2>Create your identity</h2>
      <p>
        No phone number, no e-mail: your identity is a key made in this browser. A passphrase protects it here. Nobody
        can reset it.
      </p>
      <label for="new-passphrase">Passphrase</label>
      <input
        id="new-passphrase"
        type="password"
        autocomplete="new-password"
        value={passphrase}
        onInput={(e) => setPassphrase(e.currentTarget.value)}
        aria-describedby="strength"
      />
      <p id="strength" class={`strength s${strength.score}`}>
        {passphrase ? `Strength: ${strength.label}. ${strength.advice}` : 'Use a long passphrase: four or more words.'}
      </p>
      <label for="repeat-passphrase">Repeat the passphrase</label>
      <input
        id="repeat-passphrase"
        type="password"
        autocomplete="new-password"
        value={repeat}
        onInput={(e) => setRepeat(e.currentTarget.value)}
        aria-invalid={mismatch}
      />
      {mismatch ? <p class="error">The two passphrases differ.</p> : null}
      {props.failure ? (
        <p class="error" role="alert">
          {props.failure}
        </p>
      ) : null}
      <button type="submit" disabled={props.busy || !passphrase || passphrase !== repeat}>
        Create identity
      </button>
    </form>
  );
}

function Unlock(props: { busy: boolean; failure?: string; onUnlock: (passphrase: string) => void }): JSX.Element {
  const [passphrase, setPassphrase] = useState('');
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        if (passphrase) props.onUnlock(passphrase);
        setPassphrase('');
      }}
    >
      <h2>Unlock</h2>
      <label for="passphrase">Passphrase</label>
      <input
        id="passphrase"
        type="password"
        autocomplete="current-password"
        value={passphrase}
        onInput={(e) => setPassphrase(e.currentTarget.value)}
        autofocus
      />
      {props.failure ? (
        <p class="error" role="alert" data-testid="unlock-error">
          {props.failure}
        </p>
      ) : null}
      <button type="submit" disabled={props.busy || !passphrase}>
        Unlock
      </button>
    </form>
  );
}

function Invite(props: { link: string; qr: Uint8Array | null }): JSX.Element {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const modules = props.qr;
    const element = canvas.current;
    if (!modules || !element) return;
    const width = modules[0] ?? 0;
    const scale = 4;
    const quiet = 4;
    const size = (width + 2 * quiet) * scale;
    element.width = size;
    element.height = size;
    const context = element.getContext('2d');
    if (!context) return;
    context.fillStyle = '#fff';
    context.fillRect(0, 0, size, size);
    context.fillStyle = '#000';
    for (let y = 0; y < width; y++)
      for (let x = 0; x < width; x++)
        if (modules[1 + y * width + x] === 1) context.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
  }, [props.qr]);
  return (
    <div class="invite">
      <label for="invite-link">Your invitation link</label>
      <input id="invite-link" readOnly value={props.link} data-testid="invite-link" onFocus={(e) => e.currentTarget.select()} />
      <button type="button" onClick={() => void navigator.clipboard?.writeText(props.link)}>
        Copy link
      </button>
      {props.qr ? <canvas ref={canvas} class="qr" role="img" aria-label="QR code of your invitation link" /> : null}
    </div>
  );
}

/** Someone in a list where the whole id matters: their name, if the
 * device knows one, then the id. */
function Who(props: { peer: Named }): JSX.Element {
  if (nameOf(props.peer).kind === 'id') return <code>{props.peer.id}</code>;
  return (
    <>
      <Name peer={props.peer} /> (<code>{props.peer.id}</code>)
    </>
  );
}

function Pending(props: { requests: Requests; act: (action: FriendAction, peer: string) => void }): JSX.Element {
  const { incoming, outgoing, blocked } = props.requests;
  return (
    <section aria-labelledby="pending">
      <h2 id="pending">Requests</h2>
      {incoming.length + outgoing.length + blocked.length === 0 ? <p class="hint">None pending.</p> : null}
      <ul class="requests" data-testid="requests">
        {incoming.map(({ id, ...names }) => (
          <li key={`in-${id}`}>
            <span>
              From <Who peer={{ id, ...names }} /> (not verified: check the id you were given)
            </span>
            <button type="button" onClick={() => props.act('accept', id)}>
              Accept
            </button>
            <button type="button" onClick={() => props.act('decline', id)}>
              Decline
            </button>
            <button type="button" onClick={() => props.act('block', id)}>
              Block
            </button>
          </li>
        ))}
        {outgoing.map(({ id, ...names }) => (
          <li key={`out-${id}`}>
            <span>
              To <Who peer={{ id, ...names }} />, waiting
            </span>
            <button type="button" onClick={() => props.act('cancel', id)}>
              Cancel
            </button>
          </li>
        ))}
        {blocked.map(({ id, ...names }) => (
          <li key={`blocked-${id}`}>
            <span>
              Blocked <Who peer={{ id, ...names }} />
            </span>
            <button type="button" onClick={() => props.act('unblock', id)}>
              Unblock
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The user's own name for a friend: set, changed or removed; kept on this
 * device only, unique on it. */
/** A name being typed: its label, the field (twice the longest name, so
 * that a name too long reaches the check and is refused with its reason),
 * and why the last one was refused (test id `<id>-error`). */
function NameField(props: {
  id: string;
  label: string;
  value: string;
  onInput: (value: string) => void;
  autocomplete: string;
  error: string | undefined;
}): JSX.Element {
  return (
    <>
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        value={props.value}
        maxLength={MAX_NAME_CHARS * 2}
        autocomplete={props.autocomplete}
        spellcheck={false}
        onInput={(e) => props.onInput(e.currentTarget.value)}
      />
      {props.error !== undefined ? (
        <p class="error" role="alert" data-testid={`${props.id}-error`}>
          {props.error}
        </p>
      ) : null}
    </>
  );
}

function Rename(props: {
  peer: Named;
  result: { peer: string; error?: string; seq: number };
  onRename: (name: string | null) => void;
}): JSX.Element {
  const [text, setText] = useState(props.peer.petname ?? '');
  // Waiting for the worker's answer to our request; then why it was refused.
  const [asked, setAsked] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const details = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    if (!asked || props.result.peer !== props.peer.id) return;
    setAsked(false);
    setError(props.result.error);
    if (props.result.error === undefined && details.current) details.current.open = false;
  }, [props.result.seq]);
  const ask = (name: string | null): void => {
    setError(undefined);
    setAsked(true);
    props.onRename(name);
  };
  return (
    <details class="rename" ref={details}>
      <summary>Rename</summary>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          ask(typedName(text));
        }}
      >
        <NameField
          id="petname"
          label="Your name for them (only on this device)"
          value={text}
          onInput={setText}
          autocomplete="off"
          error={error}
        />
        <button type="submit">Save name</button>
        {props.peer.petname ? (
          <button
            type="button"
            onClick={() => {
              setText('');
              ask(null);
            }}
          >
            Remove name
          </button>
        ) : null}
      </form>
    </details>
  );
}

function Chat(props: {
  peer: Named;
  petnameResult: { peer: string; error?: string; seq: number };
  onRename: (name: string | null) => void;
  verified: boolean;
  messages: readonly Message[];
  now: number;
  visible: boolean;
  showOnOpen: boolean;
  onShow: (id: string) => void;
  onSend: (text: string, viewSeconds: number, ttlSeconds: number) => void;
  onSafety: () => void;
  onRemove: () => void;
  onBlock: () => void;
}): JSX.Element {
  const [text, setText] = useState('');
  const [view, setView] = useState(30);
  const [ttl, setTtl] = useState(MAX_TTL_SECONDS);
  return (
    <section class="chat" aria-labelledby="chat-title">
      <h2 id="chat-title" data-testid="chat-title">
        Chat with <Name peer={props.peer} />
        {props.verified ? <span class="verified"> ✓ verified</span> : <span class="unverified"> not verified</span>}
      </h2>
      <p class="peer-id" data-testid="chat-peer-id">
        Id: <code>{props.peer.id}</code>
      </p>
      <Rename key={props.peer.id} peer={props.peer} result={props.petnameResult} onRename={props.onRename} />
      <div class="chat-actions">
        <button type="button" onClick={props.onSafety}>
          Safety number
        </button>
        <button type="button" onClick={props.onRemove}>
          Remove friend
        </button>
        <button type="button" onClick={props.onBlock}>
          Block
        </button>
      </div>
      <div role="log" aria-live="polite" aria-label="Messages">
      <ol class="messages" data-testid="messages">
        {props.messages.map((m) =>
          m.kind === 'in' ? (
            <IncomingItem key={m.id} message={m} now={props.now} onShow={props.onShow} />
          ) : (
            <OutgoingItem key={m.id} message={m} now={props.now} />
          ),
        )}
      </ol>
      </div>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim()) props.onSend(text, view, ttl);
          setText('');
        }}
      >
        <label for="compose">Message</label>
        <textarea
          id="compose"
          rows={2}
          value={text}
          maxLength={4096}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              e.currentTarget.form?.requestSubmit();
            }
          }}
        />
        <div class="timers">
          <label for="view">
            Shown for (s)
            <input id="view" type="number" min={0} max={3600} value={view} onInput={(e) => setView(clamp(e.currentTarget.valueAsNumber, 0, 3600, 30))} />
          </label>
          <label for="ttl">
            Lives unread (s, ≤ 3600)
            <input id="ttl" type="number" min={1} max={3600} value={ttl} onInput={(e) => setTtl(clamp(e.currentTarget.valueAsNumber, 1, 3600, 3600))} />
          </label>
        </div>
        <button type="submit" disabled={!text.trim()}>
          Send
        </button>
      </form>
    </section>
  );
}

function clamp(value: number, low: number, high: number, fallback: number): number {
  if (!Number.isFinite(value)) return fallback;
  return Math.min(high, Math.max(low, Math.round(value)));
}

function IncomingItem(props: { message: Incoming; now: number; onShow: (id: string) => void }): JSX.Element {
  const m = props.message;
  const burn = burnsAt(m);
  return (
    <li class="in" data-testid="incoming">
      {m.shownAt === undefined ? (
        <button type="button" onClick={() => props.onShow(m.id)}>
          Show message (its {m.viewSeconds > 0 ? `${m.viewSeconds} s` : ''} timer starts)
        </button>
      ) : (
        <p class="text" data-testid="incoming-text">
          <bdi>{m.text}</bdi>
        </p>
      )}
      <p class="meta">
        {burn !== undefined ? <span data-testid="burns-in">burns in {countdown(burn, props.now)}</span> : <span>not shown yet</span>}
        {' · '}
        <span>gone at the latest in {countdown(m.expiresAt, props.now)}</span>
      </p>
    </li>
  );
}

function OutgoingItem(props: { message: Outgoing; now: number }): JSX.Element {
  const m = props.message;
  return (
    <li class={`out ${m.state}`} data-testid="outgoing">
      {m.text ? (
        <p class="text">
          <bdi>{m.text}</bdi>
        </p>
      ) : null}
      <p class="meta">
        <span data-testid="outgoing-state">{outgoingLabel(m)}</span>
        {m.state === 'sending' || m.state === 'sent' ? <span> · gone at the latest in {countdown(m.expiresAt, props.now)}</span> : null}
      </p>
    </li>
  );
}

function Safety(props: {
  me: string;
  peer: Named;
  groups: string | undefined;
  verified: boolean;
  isFriend: boolean;
  request: () => void;
  mark: (verified: boolean) => void;
  back: () => void;
}): JSX.Element {
  useEffect(() => {
    if (props.groups === undefined) props.request();
  }, [props.peer.id]);
  return (
    <section class="safety" aria-labelledby="safety-title">
      <h2 id="safety-title">
        Safety number with <Name peer={props.peer} />
      </h2>
      <p class="peer-id">
        Id: <code>{props.peer.id}</code>
      </p>
      <pre class="digits" data-testid="safety-number" aria-label="Safety number">
        {props.groups ? safetyRows(props.groups).join('\n') : 'computing…'}
      </pre>
      <p>
        Compare these 60 digits with <Name peer={props.peer} /> in person or on a call. If they match on both devices,
        nobody — not even the server — stands between you. A name proves nothing: anyone can call themselves anything.
      </p>
      <p data-testid="verified-state">{props.verified ? '✓ Marked as verified on this device.' : 'Not verified.'}</p>
      {props.isFriend ? (
        <button type="button" onClick={() => props.mark(!props.verified)}>
          {props.verified ? 'Remove the verified mark' : 'Numbers match: mark verified'}
        </button>
      ) : null}
      <button type="button" onClick={props.back}>
        Back to the chat
      </button>
    </section>
  );
}

function Settings(props: {
  userId: string;
  displayName: string | null;
  displayNameError: string | undefined;
  setDisplayName: (name: string | null) => void;
  showOnOpen: boolean;
  setShowOnOpen: (on: boolean) => void;
  deleteAccount: () => void;
}): JSX.Element {
  const [confirm, setConfirm] = useState('');
  const [name, setName] = useState(props.displayName ?? '');
  return (
    <section class="settings" aria-labelledby="settings-title">
      <h2 id="settings-title">Settings</h2>
      <h3>Your display name</h3>
      <p>
        What you call yourself, sent to each friend end-to-end encrypted (the server never sees it). Your friends see
        it marked as your own claim; a name they give you comes first.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          props.setDisplayName(typedName(name));
        }}
      >
        <NameField
          id="display-name"
          label="Your display name"
          value={name}
          onInput={setName}
          autocomplete="nickname"
          error={props.displayNameError}
        />
        <p class="hint" data-testid="display-name-state">
          {props.displayName !== null ? (
            <>
              Friends are sent: <bdi>{props.displayName}</bdi>
            </>
          ) : (
            'No display name: friends see your id, or the name they gave you.'
          )}
        </p>
        <button type="submit">Save display name</button>
        {props.displayName !== null ? (
          <button
            type="button"
            onClick={() => {
              setName('');
              props.setDisplayName(null);
            }}
          >
            Clear display name
          </button>
        ) : null}
      </form>
      <label class="check">
        <input type="checkbox" checked={props.showOnOpen} onChange={(e) => props.setShowOnOpen(e.currentTarget.checked)} />
        Show messages as soon as their conversation is open (otherwise, one click each)
      </label>
      <p>The app locks itself after 5 minutes without input.</p>
      <h3>Delete account</h3>
      <p>
        The server forgets this identity and everything waiting for it; the keys in this browser are deleted. Nothing
        can bring it back. To confirm, type your id: <code>{props.userId}</code>
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (confirm.trim() === props.userId) props.deleteAccount();
        }}
      >
        <label for="confirm-delete">Your id</label>
        <input id="confirm-delete" autocomplete="off" value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />
        <button type="submit" class="danger" disabled={confirm.trim() !== props.userId}>
          Delete my account
        </button>
      </form>
    </section>
  );
}
