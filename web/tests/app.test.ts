// The web app end to end: two people in two browser contexts (desktop and
// phone sizes) and one CLI user, against a real wisp-server serving
// web/dist. The steps build on each other, so they run in order.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { DESKTOP, PHONE, cli, launchBrowser, newUser, screenshots, startServer, tempHome, type TestServer } from './harness';

const ALICE_PASS = 'alice correct horse battery staple';
const BOB_PASS = 'bob tr0ub4dor and then some';
const TEXT_TO_BOB = 'the door code is 4711';
const TEXT_TO_ALICE = 'thanks, see you at eight';
const TEXT_UNREAD = 'nobody will read this one';
const TEXT_FROM_CLI = 'hello from the terminal';
const TEXT_TO_CLI = 'hello from the browser';
const MARKUP = '<img src=x onerror=alert(1)>';
// A message may hold what a name may not: a direction override, a newline.
const HOSTILE_TEXT = `${MARKUP}\u202Eevil\nsecond line`;

let server: TestServer;
let browser: Browser;
let alice: Page;
let bob: Page;
let aliceId = '';
let bobId = '';
const errorLists: string[][] = [];
/** alert(), confirm() or prompt() calls: markup from the network ran. */
const dialogs: string[] = [];
const timings: Record<string, number> = {};

async function create(page: Page, passphrase: string): Promise<string> {
  await page.goto(server.origin);
  await page.getByLabel('Passphrase', { exact: true }).fill(passphrase);
  await page.getByLabel('Repeat the passphrase').fill(passphrase);
  await page.getByRole('button', { name: 'Create identity' }).click();
  await expect.poll(() => page.getByTestId('connection').textContent(), { timeout: 60_000 }).toBe('Online');
  return (await page.getByTestId('my-id').textContent()) ?? '';
}

async function unlock(page: Page, passphrase: string): Promise<void> {
  await page.getByLabel('Passphrase', { exact: true }).fill(passphrase);
  await page.getByRole('button', { name: 'Unlock' }).click();
}

async function setDisplayName(page: Page, name: string): Promise<void> {
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByLabel('Your display name').fill(name);
  await page.getByRole('button', { name: 'Save display name' }).click();
}

async function setPetname(page: Page, name: string): Promise<void> {
  const details = page.locator('details.rename');
  if ((await details.getAttribute('open')) === null) await page.getByText('Rename', { exact: true }).click();
  await page.getByLabel(/Your name for them/).fill(name);
  await page.getByRole('button', { name: 'Save name' }).click();
}

function friendButton(page: Page, id: string) {
  return page.getByTestId('friends').locator(`button[title="${id}"]`);
}

async function openChat(page: Page, id: string): Promise<void> {
  await friendButton(page, id).click();
  await page.getByRole('heading', { name: /Chat with/ }).waitFor();
  // This friend's conversation, not the one open before.
  await page.getByTestId('chat-peer-id').filter({ hasText: id }).waitFor();
}

async function sendText(page: Page, text: string, viewSeconds: number, ttlSeconds: number): Promise<void> {
  await page.getByLabel('Shown for (s)').fill(String(viewSeconds));
  await page.getByLabel(/Lives unread/).fill(String(ttlSeconds));
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

/** Every storage area of the page's origin, as text. */
async function everythingStored(page: Page): Promise<{ text: string; values: string[] }> {
  return page.evaluate(async () => {
    const out: string[] = [];
    const asText = (value: unknown): string => {
      if (value instanceof Uint8Array) return new TextDecoder('latin1').decode(value);
      if (value instanceof ArrayBuffer) return new TextDecoder('latin1').decode(new Uint8Array(value));
      return JSON.stringify(value) ?? String(value);
    };
    for (const info of await indexedDB.databases()) {
      if (!info.name) continue;
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open(info.name as string);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      for (const name of Array.from(db.objectStoreNames)) {
        const all = await new Promise<unknown[]>((resolve, reject) => {
          const request = db.transaction(name).objectStore(name).getAll();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
        const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
          const request = db.transaction(name).objectStore(name).getAllKeys();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
        out.push(...keys.map((k) => `key:${String(k)}`), ...all.map(asText));
      }
      db.close();
    }
    for (const storage of [localStorage, sessionStorage]) {
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i) ?? '';
        out.push(`${key}=${storage.getItem(key) ?? ''}`);
      }
    }
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const request of await cache.keys()) {
        const response = await cache.match(request);
        out.push(request.url, response ? await response.text() : '');
      }
    }
    const workers = (await navigator.serviceWorker?.getRegistrations()) ?? [];
    out.push(`service-workers:${workers.length}`);
    return { text: out.join('\n'), values: out };
  });
}

beforeAll(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const a = await newUser(browser, DESKTOP);
  const b = await newUser(browser, PHONE);
  alice = a.page;
  bob = b.page;
  // The pages' own lists: page errors and console errors (where Chromium
  // reports a CSP refusal), read at the end.
  errorLists.push(a.errors, b.errors);
  for (const page of [alice, bob]) {
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  }
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  // eslint-disable-next-line no-console
  console.log('timings (ms):', JSON.stringify(timings));
});

describe('wisp in the browser', () => {
  it('is served with strict security headers', async () => {
    const response = await fetch(server.origin + '/');
    expect(response.status).toBe(200);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("'unsafe-inline'");
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await response.text()).toContain('<div id="app">');
  });

  it('creates two identities and registers them (proof-of-work included)', async () => {
    const started = Date.now();
    await alice.goto(server.origin);
    await alice.getByRole('heading', { name: 'Create your identity' }).waitFor();
    timings.loadToOnboarding = Date.now() - started;
    await alice.getByLabel('Passphrase', { exact: true }).fill('short');
    await expect.poll(() => alice.locator('#strength').textContent()).toContain('very weak');
    await screenshots(alice, 'onboarding');
    const createStarted = Date.now();
    aliceId = await create(alice, ALICE_PASS);
    timings.createAndRegister = Date.now() - createStarted;
    bobId = await create(bob, BOB_PASS);
    expect(aliceId).toMatch(/^[a-z2-7]{32}$/);
    expect(bobId).toMatch(/^[a-z2-7]{32}$/);
    expect(aliceId).not.toBe(bobId);
  });

  it('befriends through the invitation link, opened as #/add/… with one click', async () => {
    const link = await alice.getByTestId('invite-link').inputValue();
    expect(link).toContain(`${server.origin}/#/add/${aliceId}/`);
    await bob.goto(link);
    await expect.poll(() => bob.getByLabel('Their id or invitation link').inputValue()).toContain(aliceId);
    await bob.getByRole('button', { name: 'Send friend request' }).click();
    await alice.getByTestId('requests').getByText(bobId).waitFor();
    await alice.getByTestId('requests').getByRole('button', { name: 'Accept' }).click();
    await friendButton(alice, bobId).waitFor();
    await friendButton(bob, aliceId).waitFor();
    await screenshots(alice, 'friends');
  });

  it('shows the same safety number on both sides and marks the friend verified', async () => {
    await openChat(alice, bobId);
    await alice.getByRole('button', { name: 'Safety number' }).click();
    await openChat(bob, aliceId);
    await bob.getByRole('button', { name: 'Safety number' }).click();
    await expect.poll(() => alice.getByTestId('safety-number').textContent()).toMatch(/^(\d{5} ){3}\d{5}\n/);
    const aliceNumber = await alice.getByTestId('safety-number').textContent();
    await expect.poll(() => bob.getByTestId('safety-number').textContent()).toBe(aliceNumber);
    expect(aliceNumber?.replace(/\D/g, '')).toHaveLength(60);
    await alice.getByRole('button', { name: 'Numbers match: mark verified' }).click();
    await alice.getByText('✓ Marked as verified on this device.').waitFor();
    await screenshots(alice, 'safety-number');
    await expect.poll(() => friendButton(alice, bobId).textContent()).toContain('verified');
  });

  it('chats both ways; a read message burns when its view timer ends and its sender sees "read · burned"', async () => {
    await alice.getByRole('button', { name: 'Back to the chat' }).click();
    await bob.getByRole('button', { name: 'Back to the chat' }).click();
    await sendText(alice, TEXT_TO_BOB, 4, 3600);
    await alice.getByTestId('outgoing-state').filter({ hasText: 'sent · not read yet' }).waitFor();
    // Bob has the conversation open and visible: it shows, counts down, burns.
    const shown = bob.getByTestId('incoming-text').filter({ hasText: TEXT_TO_BOB });
    await shown.waitFor();
    await bob.getByTestId('burns-in').first().waitFor();
    await screenshots(bob, 'conversation');
    await alice.getByTestId('outgoing-state').filter({ hasText: 'read · burned' }).waitFor();
    await shown.waitFor({ state: 'detached', timeout: 10_000 });
    expect(await bob.content()).not.toContain(TEXT_TO_BOB);
    // And back.
    await sendText(bob, TEXT_TO_ALICE, 30, 600);
    await alice.getByTestId('incoming-text').filter({ hasText: TEXT_TO_ALICE }).waitFor();
    await screenshots(alice, 'conversation-desktop-view');
    await bob.getByTestId('outgoing-state').filter({ hasText: 'read · burned' }).waitFor();
  });

  it('shows names: a display name marked as its owner\'s claim, a petname first, hostile ones as harmless text', async () => {
    // Alice calls herself something: Bob sees it in his list and his
    // conversation's title, marked as only her claim.
    await setDisplayName(alice, 'Alice Liddell');
    await expect.poll(() => alice.getByTestId('display-name-state').textContent()).toContain('Alice Liddell');
    await expect.poll(() => friendButton(bob, aliceId).textContent(), { timeout: 20_000 }).toContain('“Alice Liddell” (their name)');
    await expect.poll(() => bob.getByTestId('chat-title').textContent()).toContain('Chat with “Alice Liddell” (their name)');
    expect(await bob.getByTestId('chat-title').locator('.claimed').getAttribute('title')).toContain('anyone can pick any name');
    await screenshots(bob, 'display-name');

    // What the rules refuse is refused, with the reason; the name stays.
    await alice.getByLabel('Your display name').fill('Alice\u202Eevil');
    await alice.getByRole('button', { name: 'Save display name' }).click();
    await expect.poll(() => alice.getByTestId('display-name-error').textContent()).toContain('text-direction');
    expect(await alice.getByTestId('display-name-state').textContent()).toContain('Alice Liddell');

    // Markup the rules allow arrives as text: no element, no script.
    await alice.getByLabel('Your display name').fill(MARKUP);
    await alice.getByRole('button', { name: 'Save display name' }).click();
    await expect.poll(() => friendButton(bob, aliceId).textContent(), { timeout: 20_000 }).toContain(`“${MARKUP}” (their name)`);
    await expect.poll(() => bob.getByTestId('chat-title').textContent()).toContain(MARKUP);
    expect(await bob.locator('img').count()).toBe(0);
    expect(await bob.getByTestId('chat-title').innerHTML()).toContain('&lt;img src=x onerror=alert(1)&gt;');

    // And so does a message with an override and a line break: inside a
    // <bdi>, the override reorders nothing outside it.
    await openChat(alice, bobId);
    await sendText(alice, HOSTILE_TEXT, 30, 600);
    const hostile = bob.getByTestId('incoming-text').filter({ hasText: 'second line' });
    await hostile.waitFor();
    expect(await hostile.textContent()).toBe(HOSTILE_TEXT);
    expect(await hostile.locator('bdi').count()).toBe(1);
    expect(await bob.locator('img').count()).toBe(0);
    await screenshots(bob, 'hostile-names');

    // Bob's own name for Alice comes first, and replaces the mark of a claim.
    await setPetname(bob, 'Ally from work');
    await expect.poll(() => friendButton(bob, aliceId).textContent()).toContain('Ally from work');
    expect(await friendButton(bob, aliceId).textContent()).not.toContain('their name');
    await expect.poll(() => bob.getByTestId('chat-title').textContent()).toContain('Chat with Ally from work');

    // Alice names Bob, who has no display name.
    await setPetname(alice, 'Bobby');
    await expect.poll(() => friendButton(alice, bobId).textContent()).toContain('Bobby');
    await expect.poll(() => alice.getByTestId('chat-title').textContent()).toContain('Chat with Bobby');
    // Saved: the form closes.
    await expect.poll(() => alice.locator('details.rename').getAttribute('open')).toBeNull();
    await screenshots(alice, 'petname');
    expect(dialogs).toEqual([]);
  });

  it('tells the sender "expired unread" when a short-lived message is never opened', async () => {
    // Bob looks at his settings, not at the conversation: nothing is shown.
    await bob.getByRole('button', { name: 'Settings' }).click();
    await sendText(alice, TEXT_UNREAD, 30, 3);
    await alice.getByTestId('outgoing-state').filter({ hasText: 'sent · not read yet' }).waitFor();
    await alice.getByTestId('outgoing-state').filter({ hasText: 'expired unread' }).waitFor({ timeout: 15_000 });
    expect(await alice.content()).not.toContain(TEXT_UNREAD);
  });

  it('exchanges messages with a CLI user both ways', async () => {
    const home = tempHome();
    const registered = await cli(home, server, ['register']);
    const carolId = registered.trim().split('\n').pop() ?? '';
    expect(carolId).toMatch(/^[a-z2-7]{32}$/);
    const invite = JSON.parse((await cli(home, server, ['invite', '--json'])).trim()) as { link: string };
    await alice.getByLabel('Their id or invitation link').fill(invite.link);
    await alice.getByRole('button', { name: 'Send friend request' }).click();
    await expect.poll(async () => (await cli(home, server, ['friend', 'requests'])).includes(aliceId), { timeout: 20_000 }).toBe(true);
    await cli(home, server, ['friend', 'accept', aliceId]);
    await friendButton(alice, carolId).waitFor();
    // A petname is one friend's only, whatever its case.
    await openChat(alice, carolId);
    await setPetname(alice, 'BOBBY');
    await expect.poll(() => alice.getByTestId('petname-error').textContent()).toContain('already given to');
    // The refusal stays on screen until the next try, and the form stays open.
    await new Promise((r) => setTimeout(r, 500));
    expect(await alice.getByTestId('petname-error').textContent()).toContain('already given to');
    expect(await alice.locator('details.rename').getAttribute('open')).toBe('');
    expect(await friendButton(alice, carolId).textContent()).not.toContain('BOBBY');
    await cli(home, server, ['send', aliceId, TEXT_FROM_CLI, '--ttl', '600']);
    await openChat(alice, carolId);
    await alice.getByTestId('incoming-text').filter({ hasText: TEXT_FROM_CLI }).waitFor();
    await sendText(alice, TEXT_TO_CLI, 30, 600);
    await alice.getByTestId('outgoing-state').filter({ hasText: 'sent · not read yet' }).waitFor();
    const received = await cli(home, server, ['recv', '--json', '--wait', '3']);
    const texts = received
      .trim()
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as { from: string; text: string });
    expect(texts).toContainEqual(expect.objectContaining({ from: aliceId, text: TEXT_TO_CLI }));
    await alice.getByTestId('outgoing-state').filter({ hasText: 'read · burned' }).waitFor({ timeout: 15_000 });
  });

  it('keeps no message text and no key in the clear in any storage of the origin', async () => {
    for (const page of [alice, bob]) {
      const stored = await everythingStored(page);
      for (const text of [TEXT_TO_BOB, TEXT_TO_ALICE, TEXT_UNREAD, TEXT_FROM_CLI, TEXT_TO_CLI, ALICE_PASS, BOB_PASS]) {
        expect(stored.text).not.toContain(text);
      }
      // The one value kept is the sealed key store: the envelope's header
      // and base64 ciphertext, nothing of the pickled account or sessions.
      const values = stored.values.filter((v) => !v.startsWith('key:') && v !== 'service-workers:0');
      expect(values).toHaveLength(1);
      const envelope = JSON.parse(values[0] ?? '') as Record<string, unknown>;
      expect(Object.keys(envelope).sort()).toEqual(['ciphertext', 'format', 'kdf', 'nonce', 'salt', 'version']);
      expect(envelope.format).toBe('wisp-keystore');
      expect(envelope.kdf).toEqual({ m_kib: 65536, t: 3, p: 1 });
      for (const word of ['account', 'pickle', 'session', 'ed25519', 'curve25519', aliceId, bobId]) {
        expect(stored.text).not.toContain(word);
      }
      expect(stored.values).toContain('service-workers:0');
    }
  });

  it('asks for the passphrase again after a reload, and refuses a wrong one', async () => {
    const started = Date.now();
    await alice.reload();
    await alice.getByRole('heading', { name: 'Unlock' }).waitFor();
    timings.reloadToUnlockScreen = Date.now() - started;
    expect(await alice.content()).not.toContain(TEXT_FROM_CLI);
    await unlock(alice, 'not the passphrase');
    await expect.poll(() => alice.getByTestId('unlock-error').textContent(), { timeout: 30_000 }).toContain('Wrong passphrase');
    const unlockStarted = Date.now();
    await unlock(alice, ALICE_PASS);
    await expect.poll(() => alice.getByTestId('connection').textContent(), { timeout: 30_000 }).toBe('Online');
    timings.unlockToOnline = Date.now() - unlockStarted;
    await friendButton(alice, bobId).waitFor();
    expect(await friendButton(alice, bobId).textContent()).toContain('verified');
  });

  it('refuses a second tab on the same identity', async () => {
    const second = await alice.context().newPage();
    await second.goto(server.origin);
    await unlock(second, ALICE_PASS);
    await expect.poll(() => second.getByTestId('unlock-error').textContent(), { timeout: 30_000 }).toContain('open in another tab');
    await second.close();
    // The first tab is unharmed.
    expect(await alice.getByTestId('connection').textContent()).toBe('Online');
  });

  it('deletes the account from the settings; that id cannot log in afterwards', async () => {
    const sealed = await bob.evaluate(async () => {
      const db = await new Promise<IDBDatabase>((resolve) => {
        const r = indexedDB.open('wisp');
        r.onsuccess = () => resolve(r.result);
      });
      const value = await new Promise<Uint8Array>((resolve) => {
        const r = db.transaction('keystore').objectStore('keystore').get('sealed');
        r.onsuccess = () => resolve(r.result as Uint8Array);
      });
      db.close();
      return Array.from(value);
    });
    await bob.getByRole('button', { name: 'Settings' }).click();
    const remove = bob.getByRole('button', { name: 'Delete my account' });
    expect(await remove.isDisabled()).toBe(true);
    await bob.getByLabel('Your id').fill(bobId);
    await remove.click();
    await bob.getByRole('heading', { name: 'Create your identity' }).waitFor({ timeout: 20_000 });
    expect((await everythingStored(bob)).values.filter((v) => !v.startsWith('key:') && !v.startsWith('service-workers'))).toHaveLength(0);
    // Put the old key store back: it opens, but the server no longer knows it.
    await bob.evaluate(async (bytes) => {
      const db = await new Promise<IDBDatabase>((resolve) => {
        const r = indexedDB.open('wisp');
        r.onsuccess = () => resolve(r.result);
      });
      await new Promise<void>((resolve) => {
        const tx = db.transaction('keystore', 'readwrite');
        tx.objectStore('keystore').put(new Uint8Array(bytes), 'sealed');
        tx.oncomplete = () => resolve();
      });
      db.close();
    }, sealed);
    await bob.reload();
    await unlock(bob, BOB_PASS);
    await expect.poll(() => bob.getByTestId('connection').textContent(), { timeout: 30_000 }).toContain('Stopped');
    expect(await bob.getByTestId('connection').textContent()).toContain('deleted');
  });

  it('raised no script errors (CSP included) and opened no dialog', () => {
    expect(dialogs).toEqual([]);
    const errors = errorLists.flat();
    expect(errors.filter((e) => !/WebSocket connection to .* failed/.test(e))).toEqual([]);
  });
});
