import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { AxeBuilder } from '@axe-core/playwright';
import { after, before } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { ApiTokens } from '../../src/auth/tokens.ts';
import { SCOPES } from '../../src/auth/principal.ts';
import type { Config } from '../../src/config/config.ts';
import type { ControlPlane } from '../../src/control-plane.ts';
import { API_BASE } from '../../src/wire.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { httpClient, type HttpClient } from './http.ts';
import { REPO_ROOT, startTestServer } from './server.ts';

/**
 * The console's tests drive a real Chromium: Debian's package (.ci/run
 * installs it) or ORCH_TEST_CHROMIUM. Without one they skip loudly, except
 * in CI, where a missing browser is a broken environment.
 */
const CHROMIUM = process.env.ORCH_TEST_CHROMIUM ?? '/usr/bin/chromium';

export function skipUnlessChromium(what: string): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') throw new Error(`${what}: Chromium is required in CI but ${CHROMIUM} is missing (.ci/run installs Debian's chromium)`);
  const reason = `Chromium not found at ${CHROMIUM}: skipping ${what}`;
  process.stderr.write(`\n*** ${reason} ***\n\n`);
  return reason;
}

/** The console is served from its vite build: the tests need `npm run build` (npm install runs it), or ORCH_CONSOLE_DIR. */
function assertConsoleBuilt(): void {
  const dir = process.env.ORCH_CONSOLE_DIR ?? `${REPO_ROOT}dist/console`;
  if (!existsSync(`${dir}/index.html`)) throw new Error(`${dir} holds no console build: run \`npm run build\` before the console tests`);
}

export interface ConsoleWorld {
  db: TestDatabase;
  cp: ControlPlane;
  browser: Browser;
  /** With auth required: a token of every scope and every tenant ('' on an open server). */
  admin: string;
  /** The API of the server, as `tenant`, with the admin token (none on an open server). */
  api: HttpClient;
}

/**
 * A console suite's world, set up before its tests and torn down after: a
 * database of its own, a server on it (config `overrides`), a Chromium, and
 * a client of its API as `tenant`.
 */
export function consoleWorld(overrides: Partial<Config> = {}, tenant = 'default'): ConsoleWorld {
  const world = { admin: '' } as ConsoleWorld;
  // the token is made in before(): bound per call, not when the suite is declared
  world.api = (method, path, o) => httpClient(() => world.cp.url, API_BASE, { tenant, token: world.admin || null })(method, path, o);
  before(async () => {
    assertConsoleBuilt();
    world.db = await createTestDatabase();
    world.cp = await startTestServer(world.db.url, overrides);
    if (overrides.auth?.mode === 'required') {
      world.admin = (await new ApiTokens(world.db.pool).create({ subject: 'root', tenants: ['*'], scopes: [...SCOPES] }, 'test:bootstrap')).token;
    }
    world.browser = await launchBrowser();
  });
  after(async () => {
    await world.browser?.close();
    await world.cp?.stop();
    await world.db?.drop();
  });
  return world;
}

/** Clicks an operator action's button, checks what its dialog says it will do, fills the reason (and ticket), confirms, waits for it to close. */
export async function act(page: Page, button: Locator, says: RegExp | null, why: { reason: string; ticket?: string } | null): Promise<void> {
  await button.click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  if (says) assert.match(await dialog.textContent() ?? '', says);
  if (why) await dialog.getByLabel(/Reason/).fill(why.reason);
  if (why?.ticket) await dialog.getByLabel('Ticket').fill(why.ticket);
  await dialog.getByRole('button', { name: /^Confirm/ }).click();
  await dialog.waitFor({ state: 'hidden' });
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    // as root in a sandbox without a GPU; no background traffic to hosts this offline machine cannot reach
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Opens the console at `url` and signs in with `token` (empty: an open server) as `tenant`. */
export async function signIn(browser: Browser, url: string, token: string, tenant = 'default'): Promise<Page> {
  // a context of its own: axe's analyze opens a page in the page's context, which a bare browser.newPage() refuses
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  await page.goto(url);
  await page.evaluate(`sessionStorage.setItem('orch.tenant', ${JSON.stringify(tenant)})`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Pages' }).waitFor();
  return page;
}

/** axe-core's serious and critical violations on the page as it is now (rule id and the first offending element). */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes[0]?.target.join(' ') ?? ''})`);
}

/**
 * Saves a screenshot for docs/console.md (docs/console/<name>.png) when ORCH_UPDATE_SCREENSHOTS=1,
 * so that a test run does not rewrite the checked-in images.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.ORCH_UPDATE_SCREENSHOTS !== '1') return;
  await mkdir(`${REPO_ROOT}docs/console`, { recursive: true });
  await page.screenshot({ path: `${REPO_ROOT}docs/console/${name}.png`, fullPage: false });
}
