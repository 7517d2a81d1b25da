/**
 * The console's Overview and Runbook pages in a real Chromium: a job type's
 * counts and firing alert conditions on the overview, an alert's runbook page
 * with the labels of its link, the runbook text and a working action, and
 * no serious accessibility violation on any of them.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { defaultConfig } from '../src/config/config.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { accessibilityViolations, consoleWorld, screenshot, signIn, skipUnlessChromium } from './helpers/browser.ts';

const skip = skipUnlessChromium('the console overview tests');
const TENANT = 'default';

describe('the console: overview and runbook', { skip }, () => {

  // no worker is marked lost: the backdated heartbeat below stays a held, stalled lease
  const world = consoleWorld({ workerLostAfterMs: 600_000, maintenance: { ...defaultConfig.maintenance, leaseGraceMs: 0 } });

  before(async () => {
    // ov_fail: 12 attempts, every one failed (FailuresHigh); ov_stall: a lease silent for 400 s (LeaseStall)
    await world.cp.ledger.jobTypes.define('ov_fail', { maxAttempts: 1 });
    await world.cp.ledger.jobTypes.define('ov_stall', { leaseMs: 600_000 });
    await world.cp.ledger.enqueue([
      ...Array.from({ length: 12 }, (_, i) => ({ tenantId: TENANT, jobType: 'ov_fail', payload: { i } })),
      { tenantId: TENANT, jobType: 'ov_stall', payload: {} },
      { tenantId: TENANT, jobType: 'ov_stall', payload: {} },
    ]);
    const failing = await world.cp.ledger.claim({ workerId: 'ov-w1', jobTypes: ['ov_fail'], limit: 12, tenantIds: [TENANT] });
    await world.cp.ledger.fail(failing.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId, error: { class: 'BadPayload', message: 'no' } })), 'test');
    const [stalled] = await world.cp.ledger.claim({ workerId: 'ov-w2', jobTypes: ['ov_stall'], limit: 1, tenantIds: [TENANT] });
    await world.db.pool.query(`UPDATE orch.jobs SET heartbeat_at = now() - interval '400 seconds' WHERE id = $1`, [stalled!.jobId]);
  });

  test('the overview shows the job types\' counts and the alert conditions that hold, each linking its runbook page', async () => {
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    const types = page.getByRole('table', { name: 'Job types now' });
    await types.getByRole('row').filter({ hasText: 'ov_fail' }).getByRole('cell').nth(7).filter({ hasText: '12' }).waitFor();
    const stallRow = types.getByRole('row').filter({ hasText: 'ov_stall' });
    assert.equal(await stallRow.getByRole('cell').nth(1).textContent(), '1', 'one ov_stall job queued');
    const alerts = page.getByRole('table', { name: 'Alert conditions' });
    const alertRow = (name: string) => alerts.getByRole('row').filter({ has: page.getByRole('link', { name, exact: true }) });
    await alertRow('OrchestratorLeaseStall').getByText('firing', { exact: true }).waitFor();
    await alerts.getByRole('link', { name: 'critical: tenant=default, job_type=ov_fail' }).waitFor();
    assert.equal(await alertRow('OrchestratorDLQDepthHigh').getByText('ok', { exact: true }).count(), 1);
    await page.getByRole('img', { name: 'Succeeded per minute' }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'overview');

    await page.getByRole('link', { name: 'Runbook', exact: true }).click();
    await page.getByRole('heading', { name: 'Runbook', level: 1 }).waitFor();
    await page.getByRole('table', { name: 'Alert conditions' }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await page.close();
  });

  test('an alert\'s runbook page: its labels, its steps, and an action that works', async () => {
    const page = await signIn(world.browser, world.cp.url, '', TENANT);
    // as the alert's runbook_url opens it
    await page.goto(`${world.cp.url}/runbook/OrchestratorFailuresHigh?tenant=${TENANT}&job_type=ov_fail`);
    await page.getByRole('heading', { name: 'OrchestratorFailuresHigh', level: 1 }).waitFor();
    await page.getByLabel('Labels').filter({ hasText: 'tenant=default, job_type=ov_fail (from the alert link)' }).waitFor();
    await page.getByRole('list', { name: 'Firing label sets' }).getByText('critical: tenant=default, job_type=ov_fail').waitFor();
    await page.getByText('Stop new dispatch of the type').waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'runbook');

    await page.getByRole('button', { name: 'Pause ov_fail' }).click();
    const dialog = page.getByRole('dialog');
    const reason = dialog.getByLabel(/Reason/);
    if (await reason.count() > 0) await reason.fill('failure spike (console test)');
    const ticket = dialog.getByLabel('Ticket');
    if (await ticket.count() > 0) await ticket.fill('INC-1');
    await dialog.getByRole('button', { name: 'Confirm pause ov_fail' }).click();
    await dialog.waitFor({ state: 'hidden' });
    const pauses = await new OrchClient({ apiUrl: world.cp.url, tenant: TENANT }).listPauses();
    assert.deepEqual(pauses.map((p) => [p.tenantId, p.jobType]), [[TENANT, 'ov_fail']]);
    await page.close();
  });
});
