// What the browser tests stand on: a real wisp-server (target/debug) on a
// free loopback port with a temporary data dir, serving web/dist; Debian's
// Chromium driven by playwright-core; the CLI for a user outside the browser.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const DIST = join(ROOT, 'web/dist');
export const SHOTS = join(ROOT, 'web/test-results');
const SERVER_BIN = join(ROOT, 'target/debug/wisp-server');
const CLI_BIN = join(ROOT, 'target/debug/wisp');
const CHROMIUM = process.env.WISP_CHROMIUM ?? '/usr/bin/chromium';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 812 };

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createNetServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitFor(url: string, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface TestServer {
  /** http://127.0.0.1:PORT, where the app is. */
  origin: string;
  /** ws://127.0.0.1:PORT, for the CLI. */
  wsUrl: string;
  stop(): Promise<void>;
}

/** Starts wisp-server with low proof-of-work and no rate limits. */
export async function startServer(): Promise<TestServer> {
  if (!existsSync(SERVER_BIN)) throw new Error(`${SERVER_BIN} is missing: run cargo build -p wisp-server -p wisp-cli`);
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST} is missing: run scripts/web-build.sh`);
  const dataDir = mkdtempSync(join(tmpdir(), 'wisp-web-test-'));
  const port = await freePort();
  const args = [
    '--listen', `127.0.0.1:${port}`,
    '--data-dir', dataDir,
    '--pow-difficulty', '8',
    '--register-limit', '0',
    '--send-limit', '0',
    '--max-connections-per-address', '0',
    '--web-root', DIST,
  ];
  const child: ChildProcess = spawn(SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WISP_LOG: 'warn' } });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  await waitFor(`http://127.0.0.1:${port}/healthz`, 15_000).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${String(error)}\n${log}`);
  });
  return {
    origin: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root in CI containers has no user namespaces for the sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

export async function newUser(browser: Browser, viewport: { width: number; height: number }): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  return { context, page, errors };
}

/** Screenshots of the page at desktop and phone sizes. */
export async function screenshots(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  const original = page.viewportSize();
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: join(SHOTS, `${name}-${size.width}x${size.height}.png`), fullPage: true });
  }
  if (original) await page.setViewportSize(original);
}

/** Runs the CLI with its own home and passphrase against `server`. */
export async function cli(home: string, server: TestServer, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await promisify(execFile)(CLI_BIN, args, {
    timeout: timeoutMs,
    env: { ...process.env, WISP_HOME: home, WISP_PASSPHRASE: 'cli passphrase for tests', WISP_SERVER: server.wsUrl },
  });
  return stdout;
}

export function tempHome(): string {
  return mkdtempSync(join(tmpdir(), 'wisp-cli-home-'));
}
