/**
 * The console's Jobs and Job pages in a real Chromium: a job followed live
 * from queued to succeeded, filters and counts per state, a bulk cancel with
 * its preview count and reason, accessibility, and the screenshots of
 * docs/console.md.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { Lease } from '../src/ledger/types.ts';
import { accessibilityViolations, consoleWorld, screenshot, signIn, skipUnlessChromium } from './helpers/browser.ts';

const skip = skipUnlessChromium('the console jobs tests');
const TENANT = 'console-jobs';

describe('the console: jobs', { skip }, () => {

  const world = consoleWorld({}, TENANT);
  /** A request to the API as tenant TENANT (the test server is open: no token) that must succeed; its body. */
  async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await world.api<T>(method, path, { body });
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
  const enqueue = async (job: Record<string, unknown>) => (await api<{ id: string }>('POST', '/jobs', job)).id;

  /** The value the Job page's summary shows for `name`. */
  const summary = (page: Page, name: string) => page.getByRole('table', { name: 'Job' }).getByRole('row', { name: new RegExp(`^${name}`) });

  test('watch a job go queued -> running -> succeeded live, without a reload', async () => {
    const id = await enqueue({ jobType: 'cj_live', payload: { report: 'weekly', customer: 'c-42' }, correlationId: 'order-42' });
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    await page.goto(`${world.cp.url}/jobs/${id}`);
    await summary(page, 'State').getByText('queued', { exact: true }).waitFor();
    await page.getByText('Live: updates as the job changes.').waitFor();
    // a reload would lose this
    await page.evaluate('window.__sameDocument = true');

    const { leases } = await api<{ leases: Lease[] }>('POST', '/claim', { workerId: 'console-worker', jobTypes: ['cj_live'] });
    assert.equal(leases[0]?.jobId, id);
    await summary(page, 'State').getByText('leased', { exact: true }).waitFor();
    await page.getByRole('table', { name: 'Attempts' }).getByText('running').waitFor();

    await api('POST', `/jobs/${id}/heartbeat`, { leaseId: leases[0]!.leaseId, progress: 0.5, message: 'half way' });
    await summary(page, 'Progress').getByText('50% half way').waitFor();

    await api('POST', `/jobs/${id}/complete`, { leaseId: leases[0]!.leaseId, result: { rows: 1234 } });
    await summary(page, 'State').getByText('succeeded', { exact: true }).waitFor();
    await page.getByLabel('Result', { exact: true }).getByText('"rows": 1234').waitFor();
    assert.equal(await page.evaluate('window.__sameDocument'), true, 'the page was not reloaded');
    const timeline = await page.getByRole('list', { name: 'History' }).getByRole('listitem').allInnerTexts();
    assert.equal(timeline.length, 3, timeline.join('\n---\n'));
    assert.match(timeline[0]!, /enqueued by anonymous/);
    assert.match(timeline[1]!, /claimed by worker:console-worker, attempt 1/);
    assert.match(timeline[2]!, /worker completed/);
    await page.getByRole('link', { name: 'jobs with this correlation id' }).waitFor();
    await page.close();
  });

  test('the jobs page filters by state (a count click), type, payload and error class, and counts per state', async () => {
    const made = [];
    for (let i = 0; i < 4; i++) made.push(await enqueue({ jobType: 'cj_list', payload: { customer: i % 2 ? 'c-odd' : 'c-even', i } }));
    await enqueue({ jobType: 'cj_other', payload: { customer: 'c-odd' } });
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    await page.goto(`${world.cp.url}/jobs?jobType=cj_list`);
    const counts = page.getByRole('group', { name: /Jobs per state/ });
    await counts.getByRole('button', { name: /^4\s*queued$/ }).waitFor();
    const rows = page.getByRole('table', { name: 'Jobs' }).getByRole('row');
    await waitForCount(rows, 1 + 4);

    await counts.getByRole('button', { name: /queued$/ }).click();
    await page.waitForURL(/state=queued/);
    assert.equal(await counts.getByRole('button', { name: /queued$/ }).getAttribute('aria-pressed'), 'true');
    await waitForCount(rows, 1 + 4);

    await page.getByLabel('Payload contains (JSON)').fill('{"customer": "c-odd"');
    await page.getByText('not JSON: give a JSON object').waitFor();
    await page.getByLabel('Payload contains (JSON)').fill('{"customer": "c-odd"}');
    await waitForCount(rows, 1 + 2);
    await counts.getByRole('button', { name: /^2\s*queued$/ }).waitFor();
    const listed = await page.getByRole('table', { name: 'Jobs' }).getByRole('link').allInnerTexts();
    assert.deepEqual(listed.sort(), [made[1]!, made[3]!].sort());

    await page.getByLabel('Error class').fill('Nope');
    await page.getByText('No job matches.').waitFor();
    await page.getByRole('button', { name: 'Clear filters' }).click();
    await page.waitForURL((u) => u.search === '');
    assert.equal(await page.getByLabel('Payload contains (JSON)').inputValue(), '');
    await page.close();
  });

  test('bulk cancel shows the dry run\'s count in its confirmation, asks for a reason, and cancels every match', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await enqueue({ jobType: 'cj_bulk', payload: { i } }));
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    await page.goto(`${world.cp.url}/jobs?jobType=cj_bulk`);
    // enabled once the dry run counted the matches
    const button = page.getByRole('button', { name: 'Cancel matching', disabled: false });
    await button.click();
    const dialog = page.getByRole('dialog', { name: 'Cancel matching' });
    await dialog.getByText('Cancels 3 jobs matching this filter').waitFor();
    const confirm = dialog.getByRole('button', { name: 'Confirm cancel matching' });
    assert.equal(await confirm.isDisabled(), true, 'no reason yet');
    await dialog.getByLabel('Reason (recorded in the audit log)').fill('customer withdrew the batch');
    await confirm.click();
    await page.getByRole('status').filter({ hasText: '3 of 3 done' }).waitFor();
    const states = await Promise.all(ids.map(async (id) => (await api<{ job: { state: string } }>('GET', `/jobs/${id}`)).job.state));
    assert.deepEqual(states, ['canceled', 'canceled', 'canceled']);
    const audit = await world.db.pool.query<{ reason: string; details: { applied: number } }>(`SELECT reason, details FROM orch.audit_log WHERE action = 'job.bulk_cancel'`);
    assert.deepEqual(audit.rows.map((r) => [r.reason, r.details.applied]), [['customer withdrew the batch', 3]]);
    // nothing left to cancel: the button says so
    await page.getByText('no job matches').first().waitFor();
    await page.close();
  });

  test('the jobs and job pages have no serious accessibility violations; screenshots for the docs', async () => {
    const failed = await enqueue({ jobType: 'cj_shot', payload: { invoice: 'INV-7', amount: 120 }, correlationId: 'order-7' });
    const { leases } = await api<{ leases: Lease[] }>('POST', '/claim', { workerId: 'shot-worker', jobTypes: ['cj_shot'] });
    await api('POST', `/jobs/${failed}/fail`, { leaseId: leases[0]!.leaseId, error: { class: 'UpstreamTimeout', message: 'billing API did not answer in 30 s' } });
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    await page.goto(`${world.cp.url}/jobs`);
    await page.getByRole('table', { name: 'Jobs' }).waitFor();
    await page.getByRole('button', { name: 'Cancel matching', disabled: false }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), [], 'jobs page');
    await screenshot(page, 'jobs');
    await page.goto(`${world.cp.url}/jobs/${failed}`);
    await page.getByRole('list', { name: 'History' }).getByText('UpstreamTimeout').waitFor();
    assert.deepEqual(await accessibilityViolations(page), [], 'job page');
    await screenshot(page, 'job');
    await page.close();
  });
});

/** Waits until `locator` matches exactly `n` elements. */
async function waitForCount(locator: ReturnType<Page['locator']>, n: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let seen = await locator.count();
  while (seen !== n) {
    if (Date.now() > until) assert.fail(`expected ${n} elements, found ${seen}`);
    await new Promise((r) => setTimeout(r, 100));
    seen = await locator.count();
  }
}
