import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
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

/** The alert names of the public surface (../shared/reference/surface.md). */
const SURFACE_ALERTS = [
  'OrchestratorQueueDepthHigh', 'OrchestratorDLQDepthHigh', 'OrchestratorFailuresHigh', 'OrchestratorErrorCluster',
  'OrchestratorFailureBurnRateHigh', 'OrchestratorLeaseStall', 'OrchestratorBackpressure',
];
const RUNBOOK = 'https://github.com/orch-dev/orch/blob/main/ops/devops/orchestrator/incident-response.md';

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

/** false when promtool and amtool can run; else a reason (printed loudly); a failure in CI. */
async function toolsSkip(): Promise<string | false> {
  const absent: string[] = [];
  for (const f of [PROMTOOL, AMTOOL]) if (!(await access(f, constants.X_OK).then(() => true, () => false))) absent.push(f);
  if (absent.length === 0) return false;
  if (process.env.CI === 'true') throw new Error(`alerts test: promtool and amtool are required in CI but there is no executable ${absent.join(', ')}`);
  const reason = `no executable ${absent.join(', ')}: skipping the promtool/amtool alerting tests`;
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

interface Rule { alert?: string; record?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }

test('every surface alert exists, with a severity Alertmanager routes, summary, description and its runbook anchor', async () => {
  const { groups } = parse(await readFile(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert);
  const names = new Set(alerts.map((r) => r.alert));
  assert.deepEqual(SURFACE_ALERTS.filter((n) => !names.has(n)), [], 'surface alerts missing from alerts.yaml');
  for (const r of alerts) {
    assert.ok(['page', 'critical', 'warning'].includes(r.labels?.severity ?? ''), `${r.alert}: severity ${r.labels?.severity}`);
    for (const key of ['summary', 'description'] as const) assert.ok(r.annotations?.[key]?.trim(), `${r.alert}: no ${key}`);
    assert.equal(r.annotations?.runbook_url, `${RUNBOOK}#${r.alert!.toLowerCase()}`, `${r.alert}: runbook_url`);
  }
  const recorded = new Set(groups.flatMap((g) => g.rules).map((r) => r.record));
  for (const w of ['5m', '30m', '1h', '6h']) assert.ok(recorded.has(`orchestrator:job_error_ratio:rate${w}`), `no orchestrator:job_error_ratio:rate${w}`);

  // Every severity the rules use has its own route.
  const am = parse(await readFile(ALERTMANAGER, 'utf8')) as { route: { routes: { matchers: string[] }[] } };
  const routed = am.route.routes.flatMap((r) => r.matchers);
  for (const severity of new Set(alerts.map((r) => r.labels!.severity))) assert.ok(routed.includes(`severity="${severity}"`), `no route for severity ${severity}`);
});
