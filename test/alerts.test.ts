import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { constants } from 'node:fs';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';

/**
 * The on-call alerting: Prometheus rules (ops/devops/orchestrator/alerts.yaml),
 * their promtool unit tests (tests/alerts.test.yaml: every alert fires on one
 * input and stays silent on another) and the Alertmanager routing
 * (alertmanager.yaml). Without promtool or amtool the tool tests are skipped
 * with a loud message, and fail in CI; the structure checks always run.
 */

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const DIR = path.join(REPO_ROOT, 'ops/devops/orchestrator');
const RULES = path.join(DIR, 'alerts.yaml');
const RULE_TESTS = path.join(DIR, 'tests/alerts.test.yaml');
const ALERTMANAGER = path.join(DIR, 'alertmanager.yaml');
const PROMTOOL = process.env.ORCH_TEST_PROMTOOL ?? '/usr/bin/promtool';
const AMTOOL = process.env.ORCH_TEST_AMTOOL ?? '/usr/bin/amtool';
const ALERTMANAGER_BIN = process.env.ORCH_TEST_ALERTMANAGER ?? '/usr/bin/prometheus-alertmanager';

/** The alert names of the public surface (../shared/reference/surface.md). */
const SURFACE_ALERTS = [
  'OrchestratorQueueDepthHigh', 'OrchestratorDLQDepthHigh', 'OrchestratorFailuresHigh', 'OrchestratorErrorCluster',
  'OrchestratorFailureBurnRateHigh', 'OrchestratorLeaseStall', 'OrchestratorBackpressure',
];
/** The console's runbook page (prometheus.yml's external label orch_console_url, else orch serve's default address). */
const RUNBOOK = '{{ with $externalLabels.orch_console_url }}{{ . }}{{ else }}http://127.0.0.1:8080{{ end }}/runbook/';

const execFileP = promisify(execFile);

/** Runs a tool; resolves with its output and exit code instead of throwing on a non-zero exit. */
async function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileP(file, args, { cwd: REPO_ROOT });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** false when promtool, amtool and Alertmanager can run; else a reason (printed loudly); a failure in CI. */
async function toolsSkip(): Promise<string | false> {
  const absent: string[] = [];
  for (const f of [PROMTOOL, AMTOOL, ALERTMANAGER_BIN]) if (!(await access(f, constants.X_OK).then(() => true, () => false))) absent.push(f);
  if (absent.length === 0) return false;
  if (process.env.CI === 'true') throw new Error(`alerts test: promtool, amtool and Alertmanager are required in CI but there is no executable ${absent.join(', ')}`);
  const reason = `no executable ${absent.join(', ')}: skipping the promtool/amtool/Alertmanager alerting tests`;
  process.stderr.write(`\n*** ${reason} ***\n\n`);
  return reason;
}

const skip = await toolsSkip();

test('promtool check rules accepts alerts.yaml', { skip }, async () => {
  const { code, out } = await run(PROMTOOL, ['check', 'rules', RULES]);
  assert.equal(code, 0, out);
  assert.match(out, /SUCCESS/);
});

test('promtool unit tests: each alert fires on its input and stays silent otherwise', { skip }, async () => {
  const { code, out } = await run(PROMTOOL, ['test', 'rules', RULE_TESTS]);
  assert.equal(code, 0, out);
  assert.match(out, /SUCCESS/);
});

test('amtool check-config accepts alertmanager.yaml', { skip }, async () => {
  const { code, out } = await run(AMTOOL, ['check-config', ALERTMANAGER]);
  assert.equal(code, 0, out);
  assert.match(out, /SUCCESS/);
});

test('Alertmanager routes page to the pager, critical to chat, warning to tickets', { skip }, async () => {
  const cases: [string, string[]][] = [
    ['orchestrator-pager', ['alertname=OrchestratorCriticalPersistent', 'severity=page', 'critical_alert=OrchestratorLeaseStall', 'job_type=render']],
    ['orchestrator-pager', ['alertname=OrchestratorDualCritical', 'severity=page']],
    ['orchestrator-oncall-chat', ['alertname=OrchestratorLeaseStall', 'severity=critical', 'job_type=render']],
    ['orchestrator-tickets', ['alertname=OrchestratorDLQDepthHigh', 'severity=warning', 'job_type=render', 'tenant=t1']],
  ];
  for (const [receiver, labels] of cases) {
    const { code, out } = await run(AMTOOL, ['config', 'routes', 'test', `--config.file=${ALERTMANAGER}`, `--verify.receivers=${receiver}`, ...labels]);
    assert.equal(code, 0, `${labels.join(' ')} should go to ${receiver}:\n${out}`);
    assert.equal(out.split('\n').filter((l) => l && !l.startsWith('Warning:')).join('\n'), receiver);
  }
});

/** A free local port (the listener is closed again at once). */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

interface AmAlert { labels: Record<string, string>; status: { state: string; inhibitedBy: string[] } }

test('Alertmanager: FailuresHigh mutes the burn-rate alert (and its persistent page) of its job type only', { skip }, async () => {
  const storage = await mkdtemp(path.join(tmpdir(), 'orch-am-'));
  const port = await freePort();
  const url = `--alertmanager.url=http://127.0.0.1:${port}`;
  const am = spawn(ALERTMANAGER_BIN, [`--config.file=${ALERTMANAGER}`, `--storage.path=${storage}`, `--web.listen-address=127.0.0.1:${port}`, '--cluster.listen-address='], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  am.stderr.on('data', (d) => (log += d));
  try {
    await poll(async () => (await fetch(`http://127.0.0.1:${port}/-/ready`).then((r) => r.ok, () => false)), `Alertmanager to start:\n${log}`);
    const alerts = [
      ['alertname=OrchestratorFailuresHigh', 'severity=critical', 'job_type=render', 'tenant=t1'],
      ['alertname=OrchestratorFailureBurnRateHigh', 'severity=critical', 'job_type=render', 'long_window=1h'],
      ['alertname=OrchestratorFailureBurnRateHigh', 'severity=warning', 'job_type=render', 'long_window=6h'],
      ['alertname=OrchestratorFailureBurnRateHigh', 'severity=critical', 'job_type=thumb', 'long_window=1h'],
      ['alertname=OrchestratorCriticalPersistent', 'severity=page', 'critical_alert=OrchestratorFailuresHigh', 'job_type=render', 'tenant=t1'],
      ['alertname=OrchestratorCriticalPersistent', 'severity=page', 'critical_alert=OrchestratorFailureBurnRateHigh', 'job_type=render', 'long_window=1h'],
      ['alertname=OrchestratorCriticalPersistent', 'severity=page', 'critical_alert=OrchestratorFailureBurnRateHigh', 'job_type=mail', 'long_window=1h'],
      // video: FailuresHigh fires but has not persisted 15m yet, while the burn rate (which fires sooner) has
      ['alertname=OrchestratorFailuresHigh', 'severity=critical', 'job_type=video', 'tenant=t2'],
      ['alertname=OrchestratorCriticalPersistent', 'severity=page', 'critical_alert=OrchestratorFailureBurnRateHigh', 'job_type=video', 'long_window=1h'],
    ];
    for (const labels of alerts) {
      const { code, out } = await run(AMTOOL, ['alert', 'add', url, ...labels]);
      assert.equal(code, 0, out);
    }
    const key = (a: AmAlert) => [a.labels.alertname, a.labels.critical_alert, a.labels.job_type, a.labels.severity].filter(Boolean).join(' ');
    const states = await poll(async () => {
      const { code, out } = await run(AMTOOL, ['alert', 'query', url, '--inhibited', '--active', '-o', 'json']);
      if (code !== 0) return null;
      const got = JSON.parse(out) as AmAlert[];
      // the inhibitor sees alerts shortly after they arrive: wait until every alert is in and has settled
      return got.length === alerts.length && got.every((a) => a.status.state !== 'unprocessed') ? new Map(got.map((a) => [key(a), a.status.state])) : null;
    }, 'Alertmanager to hold every alert');
    assert.deepEqual(Object.fromEntries([...states].sort()), {
      'OrchestratorCriticalPersistent OrchestratorFailureBurnRateHigh render page': 'suppressed',
      'OrchestratorCriticalPersistent OrchestratorFailureBurnRateHigh mail page': 'active',
      'OrchestratorCriticalPersistent OrchestratorFailureBurnRateHigh video page': 'suppressed',
      'OrchestratorCriticalPersistent OrchestratorFailuresHigh render page': 'active',
      'OrchestratorFailureBurnRateHigh render critical': 'suppressed',
      'OrchestratorFailureBurnRateHigh render warning': 'suppressed',
      'OrchestratorFailureBurnRateHigh thumb critical': 'active',
      'OrchestratorFailuresHigh render critical': 'suppressed', // by its own page (CriticalPersistent), not new
      'OrchestratorFailuresHigh video critical': 'active',
    });
  } finally {
    am.kill('SIGTERM');
    if (am.exitCode === null && am.signalCode === null) await once(am, 'exit');
    await rm(storage, { recursive: true, force: true });
  }
});

/** Polls fn every 100 ms until it returns a truthy value; fails after 15 s naming what it waited for. */
async function poll<T>(fn: () => Promise<T | null | false>, what: string): Promise<T> {
  for (const deadline = Date.now() + 15_000; ;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Rule { alert?: string; record?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }

test('every surface alert exists, with a severity Alertmanager routes, summary, description and its runbook anchor', async () => {
  const { groups } = parse(await readFile(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert);
  const names = new Set(alerts.map((r) => r.alert));
  assert.deepEqual(SURFACE_ALERTS.filter((n) => !names.has(n)), [], 'surface alerts missing from alerts.yaml');
  for (const r of alerts) {
    assert.ok(['page', 'critical', 'warning'].includes(r.labels?.severity ?? ''), `${r.alert}: severity ${r.labels?.severity}`);
    for (const key of ['summary', 'description'] as const) assert.ok(r.annotations?.[key]?.trim(), `${r.alert}: no ${key}`);
    // the console's page of this alert, the alert's labels in its query (tests/alerts.test.yaml checks them rendered)
    assert.match(r.annotations?.runbook_url ?? '', new RegExp(`^${RUNBOOK.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${r.alert}(\\?|$)`), `${r.alert}: runbook_url`);
  }
  const recorded = new Set(groups.flatMap((g) => g.rules).map((r) => r.record));
  for (const w of ['5m', '30m', '1h', '6h']) assert.ok(recorded.has(`orchestrator:job_error_ratio:rate${w}`), `no orchestrator:job_error_ratio:rate${w}`);

  // Every severity the rules use has its own route.
  const am = parse(await readFile(ALERTMANAGER, 'utf8')) as { route: { routes: { matchers: string[] }[] } };
  const routed = am.route.routes.flatMap((r) => r.matchers);
  for (const severity of new Set(alerts.map((r) => r.labels!.severity))) assert.ok(routed.includes(`severity="${severity}"`), `no route for severity ${severity}`);
});
