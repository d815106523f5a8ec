// What the browser tests stand on: a real wisp-server (target/debug) on a
// free loopback port with a temporary data dir, serving web/dist; Debian's
// Chromium driven by playwright-core; the CLI for a user outside the browser.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { createServer as createNetServer, connect as netConnect } from 'node:net';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, extname } from 'node:path';
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

/** Whether this wisp-server serves the web app itself (`--web-root`). */
async function serverServesWeb(): Promise<boolean> {
  const { stdout } = await promisify(execFile)(SERVER_BIN, ['--help']);
  return stdout.includes('--web-root');
}

export interface TestServer {
  /** http://127.0.0.1:PORT, where the app is. */
  origin: string;
  /** ws://127.0.0.1:PORT, for the CLI. */
  wsUrl: string;
  /** True when wisp-server serves web/dist itself; false when this
   * harness stands in front of it (a server without --web-root yet). */
  servesWeb: boolean;
  stop(): Promise<void>;
}

/** Starts wisp-server with low proof-of-work and no rate limits. */
export async function startServer(): Promise<TestServer> {
  if (!existsSync(SERVER_BIN)) throw new Error(`${SERVER_BIN} is missing: run cargo build -p wisp-server -p wisp-cli`);
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST} is missing: run scripts/web-build.sh`);
  const dataDir = mkdtempSync(join(tmpdir(), 'wisp-web-test-'));
  const port = await freePort();
  const servesWeb = await serverServesWeb();
  const args = [
    '--listen', `127.0.0.1:${port}`,
    '--data-dir', dataDir,
    '--pow-difficulty', '8',
    '--register-limit', '0',
    '--send-limit', '0',
    '--max-connections-per-address', '0',
  ];
  if (servesWeb) args.push('--web-root', DIST);
  const child: ChildProcess = spawn(SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WISP_LOG: 'warn' } });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  await waitFor(`http://127.0.0.1:${port}/healthz`, 15_000).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${String(error)}\n${log}`);
  });
  let front: Server | undefined;
  let origin = `http://127.0.0.1:${port}`;
  if (!servesWeb) {
    const frontPort = await freePort();
    front = serveDistInFrontOf(port);
    await new Promise<void>((r) => front?.listen(frontPort, '127.0.0.1', r));
    origin = `http://127.0.0.1:${frontPort}`;
  }
  return {
    origin,
    wsUrl: `ws://127.0.0.1:${port}`,
    servesWeb,
    async stop() {
      front?.close();
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
};

/** Until wisp-server serves web/dist itself: the files here, the WebSocket
 * passed through to the server, on one origin. */
function serveDistInFrontOf(serverPort: number): Server {
  const server = createHttpServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const file = join(DIST, path === '/' ? 'index.html' : path);
    if (!file.startsWith(DIST) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    response.end(readFileSync(file));
  });
  server.on('upgrade', (request, socket, head) => {
    const upstream = netConnect(serverPort, '127.0.0.1', () => {
      const lines = [`${request.method} ${request.url} HTTP/1.1`];
      for (let i = 0; i < request.rawHeaders.length; i += 2) lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      upstream.write(lines.join('\r\n') + '\r\n\r\n');
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  return server;
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
