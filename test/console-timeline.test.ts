/**
 * The console's timeline pages in a real Chromium against a server whose
 * auth is required: a schedule made through the API listed on /schedules and
 * triggered from there (and a read-only token seeing its actions disabled
 * with the reason); a backfill previewed (dry run) and started on
 * /backfills; a workflow drawn as a graph whose step changes state live as
 * its job is claimed and completed; the audit entry of an operator action
 * on /audit; a job.enqueued event in the live tail of /events, held while
 * the tail is paused. axe on all five pages, and their screenshots.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { ApiTokens } from '../src/auth/tokens.ts';
import { defaultConfig } from '../src/config/config.ts';
import { accessibilityViolations, act, consoleWorld, screenshot, signIn, skipUnlessChromium } from './helpers/browser.ts';

const skip = skipUnlessChromium('the console timeline tests');
const TENANT = 'default';

describe('the console timeline pages', { skip }, () => {
  let page: Page;


  async function checkPage(name: string) {
    assert.deepEqual(await accessibilityViolations(page), [], `axe on /${name}`);
    await screenshot(page, name);
  }

  const world = consoleWorld({ auth: { mode: 'required', failedPerMinute: 100_000 }, events: { ...defaultConfig.events, ssePollMs: 50 } });
  const api = world.api;
  before(async () => {
    page = await signIn(world.browser, world.cp.url, world.admin, TENANT);
  });

  test('/schedules lists a schedule made through the API; trigger now enqueues its job; an edit changes its cron', async () => {
    const made = await api('POST', '/schedules', { body: { name: 'nightly-report', jobType: 'report', cron: '0 2 * * *', timeZone: 'Europe/Berlin' }, reason: 'set up' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    await page.getByRole('link', { name: 'Schedules', exact: true }).click();
    const row = page.getByRole('table', { name: 'Schedules' }).getByRole('row').filter({ hasText: 'nightly-report' });
    await row.getByText('0 2 * * *').waitFor();
    assert.match(await row.textContent() ?? '', /Europe\/Berlin.*in \d/, 'the zone and the next run, ahead');

    await act(page, row.getByRole('button', { name: 'Trigger now' }), /Enqueues one report job of schedule nightly-report now/, { reason: 'try it once' });
    const link = row.getByRole('status').getByRole('link');
    await link.waitFor();
    const jobId = (await link.textContent())?.replace('job ', '') ?? '';
    const job = await api<{ job: { jobType: string } }>('GET', `/jobs/${jobId}`);
    assert.equal(job.status, 200);
    assert.equal(job.body.job.jobType, 'report');

    // an edit in the action's own dialog: the cron changes, the zone stays
    await row.getByRole('button', { name: 'Edit' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Cron expression').fill('30 3 * * *');
    await dialog.getByLabel(/Reason/).fill('run later');
    await dialog.getByRole('button', { name: /^Confirm/ }).click();
    await dialog.waitFor({ state: 'hidden' });
    await row.getByText('30 3 * * *').waitFor();
    const edited = await api<{ cron: string; timeZone: string; jobType: string }>('GET', '/schedules/nightly-report');
    assert.deepEqual([edited.body.cron, edited.body.timeZone, edited.body.jobType], ['30 3 * * *', 'Europe/Berlin', 'report']);

    await act(page, row.getByRole('button', { name: 'Pause' }), /stops ticking/, { reason: 'quiet week' });
    await row.getByText('paused', { exact: true }).first().waitFor();
    await checkPage('schedules');
  });

  test('a read-only token sees the schedule actions disabled, with the reason', async () => {
    const reader = (await new ApiTokens(world.db.pool).create({ subject: 'viewer', tenants: [TENANT], scopes: ['orch:read'] }, 'test:bootstrap')).token;
    const view = await signIn(world.browser, world.cp.url, reader, TENANT);
    await view.goto(`${world.cp.url}/schedules`);
    const trigger = view.getByRole('row').filter({ hasText: 'nightly-report' }).getByRole('button', { name: 'Trigger now' });
    await trigger.waitFor();
    assert.equal(await trigger.isDisabled(), true);
    assert.match(await trigger.getAttribute('title') ?? '', /lacks the orch:operate scope/);
    await view.close();
  });

  test('/backfills previews a plan (a dry run), then starts the backfill', async () => {
    await page.getByRole('link', { name: 'Backfills', exact: true }).click();
    const form = page.getByRole('group', { name: 'New backfill' });
    await form.getByLabel('Job type').fill('rollup');
    await form.getByLabel('From (UTC)').fill('2026-01-01T00:00');
    await form.getByLabel('To (UTC)').fill('2026-01-01T03:00');
    await form.getByLabel('Window: amount').fill('1');
    await form.getByLabel('Window: unit').selectOption('h');
    const start = form.getByRole('button', { name: 'Start backfill' });
    assert.equal(await start.isDisabled(), true, 'no start before a plan');
    await form.getByRole('button', { name: 'Preview plan' }).click();
    const planned = page.getByRole('table', { name: 'Planned windows' });
    await planned.waitFor();
    assert.equal(await planned.getByRole('row').count(), 4, 'three windows of an hour, and the header');
    assert.equal((await api<{ backfills: unknown[] }>('GET', '/backfills')).body.backfills.length, 0, 'a plan enqueues nothing');

    await act(page, start, /Cuts 3 windows of rollup: runs 3, skips 0/, { reason: 'rebuild January', ticket: 'OPS-7' });
    const row = page.getByRole('table', { name: 'Backfills' }).getByRole('row').filter({ hasText: 'rollup' });
    await row.getByText('OPS-7: rebuild January').waitFor();
    const list = await api<{ backfills: { jobType: string; windows: number; state: string }[] }>('GET', '/backfills');
    assert.deepEqual(list.body.backfills.map((b) => [b.jobType, b.windows, b.state]), [['rollup', 3, 'running']]);
    await row.getByRole('button', { name: 'Pause' }).waitFor();
    await checkPage('backfills');
  });

  test('/workflows draws a workflow as a graph whose steps change state live', async () => {
    const made = await api<{ id: string }>('POST', '/workflows', {
      body: {
        name: 'nightly-etl',
        steps: [
          { name: 'extract', jobType: 'wf-extract' },
          { name: 'transform', jobType: 'wf-transform', dependsOn: ['extract'] },
          { name: 'audit', jobType: 'wf-audit', dependsOn: [{ step: 'extract', onFailure: 'ignore' }] },
          { name: 'load', jobType: 'wf-load', dependsOn: ['transform', { step: 'audit', onFailure: 'wait' }] },
        ],
      },
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    await page.getByRole('link', { name: 'Workflows', exact: true }).click();
    await page.getByRole('table', { name: 'Workflows' }).getByRole('link', { name: 'nightly-etl' }).click();
    await page.getByRole('heading', { name: 'Workflow nightly-etl' }).waitFor();
    const node = (step: string) => page.locator(`.react-flow__node[data-id="${step}"]`);
    await node('extract').getByText('queued').waitFor();
    assert.equal(await page.locator('.react-flow__node').count(), 4);
    assert.equal(await page.locator('.react-flow__edge').count(), 4);
    const labels = await page.locator('.react-flow__edge-textwrapper').allTextContents();
    assert.deepEqual(labels.sort(), ['cancel', 'cancel', 'ignore', 'wait']);
    assert.equal(await node('transform').getByText('waiting').count(), 1);
    const extractJob = await node('extract').getByRole('link').getAttribute('href');

    const claimed = await api<{ leases: { jobId: string; leaseId: string }[] }>('POST', '/claim', { body: { workerId: 'w-console', jobTypes: ['wf-extract'] } });
    const [lease] = claimed.body.leases;
    assert.ok(lease, JSON.stringify(claimed.body));
    assert.equal(extractJob, `/jobs/${lease.jobId}`, 'the node links its job');
    await node('extract').getByText('leased').waitFor();
    const done = await api('POST', `/jobs/${lease.jobId}/complete`, { body: { leaseId: lease.leaseId, result: { rows: 3 } } });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    await node('extract').getByText('succeeded').waitFor();
    await node('transform').getByText('queued').waitFor();
    await checkPage('workflows');

    await act(page, page.getByRole('button', { name: 'Cancel workflow' }), /Cancels every step of nightly-etl not started yet/, { reason: 'wrong day' });
    await node('transform').getByText('canceled').waitFor();
    await page.getByRole('heading', { name: 'Result' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Retry failed steps' }).isEnabled(), true, 'canceled steps can be retried');
  });

  test('/audit shows the operator actions (of the tests above), filtered, with their details', async () => {
    await page.getByRole('link', { name: 'Audit log', exact: true }).click();
    const table = page.getByRole('table', { name: 'Audit log' });
    const trigger = table.getByRole('row').filter({ hasText: 'schedule.trigger' });
    await trigger.waitFor();
    assert.match(await trigger.textContent() ?? '', /root.*schedule\.trigger.*nightly-report.*try it once/);
    await page.getByLabel('Action').fill('backfill.create');
    await table.getByRole('row').filter({ hasText: 'schedule.trigger' }).waitFor({ state: 'detached' });
    const created = table.getByRole('row').filter({ hasText: 'backfill.create' });
    assert.match(await created.textContent() ?? '', /OPS-7/);
    await created.getByText('details').click();
    await created.locator('pre').waitFor();
    await page.getByLabel('Action').fill('');
    await trigger.waitFor();
    await checkPage('audit');
  });

  test('/events tails the stream live: a job enqueued after the page opened, held while paused', async () => {
    await page.getByRole('link', { name: 'Events', exact: true }).click();
    await page.getByRole('status').getByText('Live').waitFor();
    const first = await api<{ id: string }>('POST', '/jobs', { body: { jobType: 'events-probe' } });
    assert.equal(first.status, 201);
    const table = page.getByRole('table', { name: 'Events' });
    const row = (id: string) => table.getByRole('row').filter({ hasText: 'job.enqueued' }).filter({ has: page.getByRole('link', { name: id, exact: true }) });
    await row(first.body.id).waitFor();

    await page.getByRole('button', { name: 'Pause the tail' }).click();
    const second = await api<{ id: string }>('POST', '/jobs', { body: { jobType: 'events-probe' } });
    await page.getByRole('status').getByText(/1 new event held/).waitFor();
    assert.equal(await row(second.body.id).count(), 0, 'held, not shown, while paused');
    await page.getByRole('button', { name: 'Resume the tail' }).click();
    await row(second.body.id).waitFor();
    const firstRow = table.getByRole('row').nth(1);
    assert.match(await firstRow.textContent() ?? '', new RegExp(`job\\.enqueued.*${second.body.id}`), 'newest first');
    await checkPage('events');
  });
});
