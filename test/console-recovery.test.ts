/**
 * The console's recovery pages in a real Chromium against a server whose
 * auth is required: dispatch pause and resume on /controls (claims stop and
 * start), a quota boost and its early restore, DLQ snapshot, replay with its
 * preview count and clear-after-snapshot on /dead-letters, force release of
 * a stuck lease on /leases, a read-only token seeing the actions disabled
 * with the reason, axe on the three pages, and their screenshots.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Locator } from 'playwright-core';
import { defaultConfig } from '../src/config/config.ts';
import { accessibilityViolations, act, consoleWorld, screenshot, signIn, skipUnlessChromium } from './helpers/browser.ts';
import { eventually } from './helpers/server.ts';

const skip = skipUnlessChromium('the console recovery tests');
const TENANT = 'default';
/** The stuck threshold of the server: a lease without a heartbeat for this long is stuck (the API's minimum). */
const STUCK_AFTER_MS = 1000;

interface Lease { jobId: string; leaseId: string }

describe('the console recovery pages', { skip }, () => {


  async function enqueue(jobType: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await api<{ id: string }>('POST', '/jobs', { body: { jobType, ...extra } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
  }

  async function claim(jobType: string, limit = 1, workerId = 'w-console'): Promise<Lease[]> {
    // a lease far longer than the test: only a force release (not the reaper) takes it back
    const r = await api<{ leases: Lease[] }>('POST', '/claim', { body: { workerId, jobTypes: [jobType], limit, leaseMs: 600_000 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.leases;
  }

  const world = consoleWorld({
    auth: { mode: 'required', failedPerMinute: 100_000 },
    leaseStuckAfterMs: STUCK_AFTER_MS,
    events: { ...defaultConfig.events, ssePollMs: 50 },
  });
  const api = world.api;

  test('pausing a job type on /controls stops its dispatch; resuming lets it be claimed', async () => {
    const id = await enqueue('cr-pause');
    const page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
    await page.goto(`${world.cp.url}/controls`);
    const form = page.getByRole('group', { name: 'Pause dispatch' });
    // a select's label reads with its chosen option ("Job type cr-pause"): matched by its start
    await form.getByLabel('Job type').selectOption('cr-pause');
    await form.getByLabel('For').selectOption(TENANT);
    await act(page, form.getByRole('button', { name: 'Pause dispatch' }), /Stops new claims of cr-pause for default/, { reason: 'failure spike' });
    const pauses = page.getByRole('table', { name: 'Pauses' });
    await pauses.getByRole('row').filter({ hasText: 'failure spike' }).waitFor();
    assert.deepEqual(await claim('cr-pause'), [], 'a paused job type is not dispatched');

    await act(page, pauses.getByRole('button', { name: 'Resume' }), /Resumes dispatch of cr-pause for default/, { reason: 'fixed' });
    await page.getByText('Nothing is paused.').waitFor();
    const [lease] = await claim('cr-pause');
    assert.equal(lease?.jobId, id, 'resumed: the job is claimed');
    assert.equal((await api('POST', `/jobs/${id}/complete`, { body: { leaseId: lease.leaseId } })).status, 200);
    await page.close();
  });

  test('a quota boost on /controls counts down, and restore now ends it', async () => {
    const put = await api('PUT', `/quotas/${TENANT}/cr-quota`, { body: { maxActive: 2, ratePerSecond: 1, burst: 2 }, reason: 'cap', ticket: 'INC-1' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
    await page.goto(`${world.cp.url}/controls`);
    const row = page.getByRole('table', { name: 'Quotas' }).getByRole('row').filter({ hasText: 'cr-quota' });
    await act(page, row.getByRole('button', { name: 'Boost' }), /cap 2, rate 1\/s/, { reason: 'drain backlog', ticket: 'INC-2' });
    await row.getByText(/\d+:\d\d left/).waitFor();
    assert.equal((await api<{ boost: { maxActive: number } | null }>('GET', `/quotas/${TENANT}/cr-quota`)).body.boost?.maxActive, 4, 'factor 2 doubles the cap');

    await act(page, row.getByRole('button', { name: 'Restore now' }), /back to cap 2/, { reason: 'drained', ticket: 'INC-2' });
    await row.getByRole('button', { name: 'Restore now' }).waitFor({ state: 'detached' });
    assert.equal((await api<{ boost: unknown }>('GET', `/quotas/${TENANT}/cr-quota`)).body.boost, null);
    await page.close();
  });

  test('dead letters: replay with the preview count, snapshot, clear after the snapshot', async () => {
    const failed = async (jobType: string, n: number, errorClass: string) => {
      for (let i = 0; i < n; i++) await enqueue(jobType, { maxAttempts: 1, payload: { i } });
      for (const l of await claim(jobType, n)) {
        const r = await api('POST', `/jobs/${l.jobId}/fail`, { body: { leaseId: l.leaseId, error: { class: errorClass, message: `bad payload ${l.jobId}` } } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
    };
    await failed('cr-dlq', 3, 'BadInput');
    await failed('cr-dlq-other', 1, 'Timeout');

    const page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
    await page.goto(`${world.cp.url}/dead-letters?jobType=cr-dlq`);
    await page.getByRole('table', { name: 'Error clusters' }).getByText('BadInput').waitFor();
    assert.equal(await page.getByRole('table', { name: 'Dead letters', exact: true }).locator('tbody tr').count(), 3);

    await act(page, page.getByRole('button', { name: 'Replay matching' }), /Replays the 3 dead letters of job type cr-dlq/, { reason: 'dependency restored' });
    const replays = page.getByRole('table', { name: 'Replays' });
    await replays.getByRole('row').filter({ hasText: 'dependency restored' }).filter({ hasText: '3 / 3' }).waitFor();
    const queued = await api<{ jobs: { state: string }[] }>('GET', '/jobs?jobType=cr-dlq&state=queued');
    assert.equal(queued.body.jobs.length, 3, 'three new jobs');

    await act(page, page.getByRole('button', { name: 'Snapshot', exact: true }), /Writes the 3 dead letters of job type cr-dlq/, null);
    await page.getByRole('heading', { name: /^Snapshot [0-9a-f-]{36}$/ }).waitFor();
    // a second replay of the same entries creates nothing: each is replayed at most once
    await act(page, page.getByRole('button', { name: 'Replay snapshot' }), /Replays the 3 entries of snapshot/, { reason: 'again' });
    const again = replays.getByRole('row').filter({ hasText: 'again' });
    await again.filter({ hasText: '3 / 3' }).waitFor();
    const [, , , , created, skipped] = await again.getByRole('cell').allTextContents();
    assert.deepEqual([created, skipped], ['0', '3'], 'nothing new: all three were replayed before');

    await act(page, page.getByRole('button', { name: 'Clear', exact: true }), /Removes from the DLQ the 3 entries snapshot/, { reason: 'replayed' });
    await page.getByRole('status').filter({ hasText: 'Cleared 3 entries' }).waitFor();
    const stats = (await api<{ byJobType: { jobType: string; depth: number }[] }>('GET', '/deadletter/stats')).body;
    assert.deepEqual(stats.byJobType.map((t) => [t.jobType, t.depth]), [['cr-dlq-other', 1]], 'only the snapshot\'s entries left the DLQ');
    await page.close();
  });

  test('force release of a stuck lease on /leases puts its job back in the queue, not in the DLQ', async () => {
    // attempts to spare: a stuck lease's release counts the attempt, as an expiry would
    const id = await enqueue('cr-lease', { maxAttempts: 3 });
    const [lease] = await claim('cr-lease', 1, 'w-silent');
    assert.equal(lease?.jobId, id);
    const page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
    await page.goto(`${world.cp.url}/leases`);
    const row = page.getByRole('table', { name: 'Leases' }).getByRole('row').filter({ hasText: id });
    await row.getByText('stuck').waitFor();
    await page.getByRole('table', { name: 'Workers' }).getByRole('row').filter({ hasText: 'w-silent' }).getByText('active').waitFor();

    await act(page, row.getByRole('button', { name: 'Release', exact: true }), new RegExp(`job ${id} \\(cr-lease\\) from w-silent`), { reason: 'lease stall INC-3' });
    await row.waitFor({ state: 'detached' });
    const job = (await api<{ job: { state: string } }>('GET', `/jobs/${id}`)).body.job;
    assert.equal(job.state, 'queued', 'back in the queue, not dead-lettered');
    await page.close();
  });

  test('a read-only token sees every action disabled with the reason', async () => {
    const made = await api<{ token: string }>('POST', '/tokens', { body: { subject: 'viewer', tenants: [TENANT], scopes: ['orch:read'] } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const page = await signIn(world.browser, world.cp.url, made.body.token, TENANT);
    const disabled = async (path: string, name: string | RegExp, scope: string) => {
      await page.goto(`${world.cp.url}${path}`);
      const button = page.getByRole('button', { name, exact: true }).first();
      await button.waitFor();
      assert.equal(await button.isDisabled(), true, `${path}: ${name}`);
      assert.equal(await button.getAttribute('title'), `this token (viewer) lacks the ${scope} scope`, `${path}: ${name}`);
    };
    await disabled('/controls', 'Pause dispatch', 'orch:operate');
    await disabled('/controls', 'New quota', 'orch:quota');
    await disabled('/controls', 'Edit', 'orch:operate');
    await disabled('/dead-letters', 'Replay matching', 'orch:operate');
    await disabled('/leases', /^Release all stuck/, 'orch:operate');
    assert.equal(await page.getByText('this token (viewer) lacks the orch:operate scope').first().isVisible(), true, 'the reason is on the page, not only in a tooltip');
    await page.close();
  });

  test('the three pages pass axe with their data shown; screenshots for docs/console', async () => {
    // something in each page's every section: a pause, a boosted quota, a stuck lease, dead letters
    assert.equal((await api('POST', '/jobtypes/cr-shot/pause', { reason: 'maintenance window', ticket: 'CHG-7' })).status, 200);
    assert.equal((await api('POST', `/quotas/${TENANT}/cr-quota/boost`, { body: { factor: 3, durationSeconds: 1800 }, reason: 'backlog', ticket: 'INC-4' })).status, 200);
    await enqueue('cr-shot-lease');
    await claim('cr-shot-lease', 1, 'w-shot');
    await eventually(async () => (await api<{ stuck: number }>('GET', '/leases')).body.stuck > 0, 10_000, 'a stuck lease');

    const page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
    const pages: [string, string, Locator][] = [
      ['/dead-letters', 'dead-letters', page.getByRole('table', { name: 'Replays' })],
      ['/leases', 'leases', page.getByRole('table', { name: 'Workers' })],
      ['/controls', 'controls', page.getByRole('table', { name: 'Quotas' })],
    ];
    for (const [path, name, ready] of pages) {
      await page.goto(`${world.cp.url}${path}`);
      await ready.waitFor();
      assert.deepEqual(await accessibilityViolations(page), [], path);
      await screenshot(page, name);
    }
    await page.close();
  });
});
