import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Where the CLI finds the API. `orch serve` leaves its address in
 * `$ORCH_DATA_DIR/local.json` (beside the embedded database it may run), so a
 * CLI started in the same directory needs no --api-url, whatever ORCH_HTTP_PORT
 * says. The file never holds a secret: with ORCH_AUTH=open (loopback only) no
 * token is needed; with ORCH_AUTH=required the CLI still needs --token.
 *
 * This module is the CLI's (node:fs only): the server's config module loads
 * the config schema, which the API verbs must not load (test/cli-startup.test.ts).
 */

/** config.ts's default dataDir (test/config.test.ts keeps the two equal). */
export const DEFAULT_DATA_DIR = './.orch';
export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

export interface LocalAddress {
  url: string;
  /** The server process: a stale file (server killed) is told apart from a server that does not answer. */
  pid: number;
  auth: 'open' | 'required';
  startedAt: string;
}

export const localAddressFile = (dataDir: string): string => path.resolve(dataDir, 'local.json');

/** The address clients connect to: a server listening on every interface is reached on loopback. */
function reachable(url: string): string {
  const u = new URL(url);
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1';
  else if (u.hostname === '[::]') u.hostname = '[::1]';
  return u.origin;
}

/** Written whole (temporary file, then rename), so a CLI never reads half of it. */
export function writeLocalAddress(dataDir: string, server: { url: string; auth: LocalAddress['auth'] }): string {
  const file = localAddressFile(dataDir);
  mkdirSync(path.dirname(file), { recursive: true });
  const content: LocalAddress = { url: reachable(server.url), pid: process.pid, auth: server.auth, startedAt: new Date().toISOString() };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + '\n');
  renameSync(tmp, file);
  return file;
}

/** Removes the file if this process wrote it: a second server started since then owns it now. */
export function removeLocalAddress(dataDir: string): void {
  const file = localAddressFile(dataDir);
  let text: string | null;
  try {
    text = readText(file);
  } catch {
    return; // one this process cannot read is not the one it wrote; shutting down goes on regardless
  }
  if (text !== null && parseAddress(text)?.pid === process.pid) rmSync(file, { force: true });
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function parseAddress(text: string): LocalAddress | null {
  try {
    const a = JSON.parse(text) as Partial<LocalAddress> | null;
    return a && typeof a.url === 'string' && typeof a.pid === 'number' && (a.auth === 'open' || a.auth === 'required') && typeof a.startedAt === 'string'
      ? { url: a.url, pid: a.pid, auth: a.auth, startedAt: a.startedAt } : null;
  } catch {
    return null;
  }
}

/**
 * The address the CLI used and where it came from, for the message when it does not answer. A file
 * that is not an address (edited by hand, cut short by a full disk) is passed over for the default
 * address, and named only if that does not answer: serve and migrate never read it.
 */
let resolved: { url: string; file?: string; pid?: number; unreadable?: string; stale?: string } = { url: DEFAULT_API_URL };

/** --api-url (or ORCH_API_URL) when given and not empty, else the local address file, else the default. */
export function resolveApiUrl(given: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (given) {
    resolved = { url: given };
    return given;
  }
  const file = localAddressFile(env.ORCH_DATA_DIR || DEFAULT_DATA_DIR);
  let text: string | null;
  try {
    text = readText(file);
  } catch {
    text = ''; // a file there that cannot be read (permissions, a directory): not an address either
  }
  const local = text === null ? null : parseAddress(text);
  // a server killed (kill -9, a crash) leaves its file behind: its address is passed over for the default
  if (local && running(local.pid)) resolved = { url: local.url, file, pid: local.pid };
  else if (local) resolved = { url: DEFAULT_API_URL, stale: `${file} names pid ${local.pid}, which is gone` };
  else resolved = text === null ? { url: DEFAULT_API_URL } : { url: DEFAULT_API_URL, unreadable: file };
  return resolved.url;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What follows "cannot reach the orchestrator API": the address tried, and what to do about it. */
export function unreachableHint(detail: string): string {
  const { url, file, pid, unreadable, stale } = resolved;
  if (stale !== undefined) return ` at ${url} (${detail}); ${stale}: start "orch serve", or give --api-url`;
  if (unreadable !== undefined) return ` at ${url} (${detail}); ${unreadable} is not an address "orch serve" wrote: remove it, or give --api-url`;
  if (file === undefined || pid === undefined) return ` at ${url} (${detail}); is "orch serve" running? (--api-url)`;
  const server = running(pid) ? `the server that wrote it (pid ${pid}) runs but does not answer` : `the server that wrote it (pid ${pid}) is gone`;
  return ` at ${url}, the address in ${file} (${detail}): ${server}; start "orch serve", or give --api-url`;
}
