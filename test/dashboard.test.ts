import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { ControlPlane } from '../src/control-plane.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { OrchApiError } from '../src/sdk/http.ts';
import { createWorker, NonRetryableError, type Worker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { deleteStream, MACHINE_NATS_URL, natsConnect, natsMissing, NatsProcess, ownStream } from './helpers/nats.ts';
import { alive, kill } from './helpers/processes.ts';
import { eventually, REPO_ROOT, startTestServer } from './helpers/server.ts';

/**
 * The Grafana dashboard (ops/devops/orchestrator/grafana/orchestrator-overview.json)
 * against the real thing: an orchestrator on a fresh database, with the
 * outbox relay publishing to NATS, under a load that gives every panel
 * something to show (two tenants and two job types; successes, failures of
 * two error classes, jobs exhausted to the DLQ, a lease held open by a
 * heartbeating worker, a lapsed and a force-released lease, a rate-limited
 * and boosted quota, backpressure refusals), scraped every second by a real
 * Prometheus that loads the repo's rules (alerts.yaml). Every panel query is
 * sent to that Prometheus the way Grafana would send it (template variables
 * substituted, both as "All" = .* and as the list of values the variable
 * queries return) and must return data. The dashboard's structure is checked
 * too: the datasource variable on every panel and target, the tenant and
 * job_type variables on every selector whose metric has those labels,
 * unique panel ids, units, and every metric it names exported by the
 * orchestrator (or recorded by alerts.yaml), so a renamed metric fails here.
 *
 * Without /usr/bin/prometheus (ORCH_TEST_PROMETHEUS) the Prometheus test is
 * skipped with a loud message, and fails in CI; so is NATS (the outbox and
 * events panels need the relay).
 */

const DASHBOARD_PATH = path.join(REPO_ROOT, 'ops/devops/orchestrator/grafana/orchestrator-overview.json');
const ALERTS_PATH = path.join(REPO_ROOT, 'ops/devops/orchestrator/alerts.yaml');
const PROMETHEUS_BIN = process.env.ORCH_TEST_PROMETHEUS ?? '/usr/bin/prometheus';
const PROMTOOL_BIN = process.env.ORCH_TEST_PROMTOOL ?? '/usr/bin/promtool';
/** What the test sends for Grafana's interval variables (Prometheus scrapes every second here). */
const INTERVALS: Record<string, string> = { __rate_interval: '15s', __interval: '5s', __range: '5m', __range_s: '300' };
/** How long the panels get to show data once the load runs. */
const DATA_DEADLINE_MS = 90_000;

const TENANTS = ['dash_acme', 'dash_globex'] as const;
const TYPES = ['dash_ingest', 'dash_render'] as const;
/** A worker holds this type's one job until the end, heartbeating. */
const HOLD_TYPE = 'dash_hold';
/** Leases of this type are claimed by a "worker" that never heartbeats: one lapses, one is force-released. */
const LAPSE_TYPE = 'dash_lapse';
/** The rate-limited (and boosted) quota. */
const THROTTLED = { tenantId: 'dash_globex', jobType: 'dash_render' } as const;
const MAX_QUEUED_PER_TENANT = 1000;
const WHY = { reason: 'dashboard test', ticket: 'OPS-1' };

const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------------------------------------------
// environment: Prometheus and NATS

async function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(() => true, () => false);
}

/** false when Prometheus can run; else a reason (printed loudly); a failure in CI. */
async function prometheusSkip(): Promise<string | false> {
  const missing = [PROMETHEUS_BIN, PROMTOOL_BIN];
  const absent: string[] = [];
  for (const f of missing) if (!(await executable(f))) absent.push(f);
  if (absent.length === 0) return false;
  if (process.env.CI === 'true') throw new Error(`dashboard test: Prometheus is required in CI but there is no executable ${absent.join(', ')}`);
  const reason = `no executable ${absent.join(', ')}: skipping the dashboard's Prometheus test`;
  process.stderr.write(`\n*** ${reason} ***\n\n`);
  return reason;
}

const promSkip = await prometheusSkip();

/** NATS for the relay: a nats-server of the test's own when the binary exists (no stream of another test in the way), else the machine's. */
interface Bus { url: string; stream: string; cleanup(): Promise<void> }

async function startBus(): Promise<Bus | null> {
  const stream = `DASH_${randomBytes(4).toString('hex')}`;
  if (!(await natsMissing({ binary: true }))) {
    const nats = await NatsProcess.create();
    await nats.start();
    return { url: nats.url, stream, cleanup: () => nats.destroy() };
  }
  if (!(await natsMissing({ machine: true }))) {
    // (a subject prefix of its own: other streams on the machine's server are never in the way)
    return {
      url: MACHINE_NATS_URL, stream,
      async cleanup() {
        const { nc, jsm } = await natsConnect(MACHINE_NATS_URL);
        try {
          await deleteStream(jsm, stream);
        } finally {
          await nc.close();
        }
      },
    };
  }
  const missing = await natsMissing({ binary: true, machine: true });
  if (process.env.CI === 'true') throw new Error(`dashboard test: NATS is required in CI but ${missing}`);
  process.stderr.write(`\n*** NATS unavailable (${missing}): the outbox and events panels of the dashboard are not checked ***\n\n`);
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// the dashboard

interface Target { expr?: string; refId?: string; datasource?: { type?: string; uid?: string }; legendFormat?: string }
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  fieldConfig?: { defaults?: { unit?: string; thresholds?: { steps: { value: number | null }[] } } };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
  datasource?: { type?: string; uid?: string };
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
  __inputs?: unknown;
}

const dashboard = JSON.parse(await readFile(DASHBOARD_PATH, 'utf8')) as Dashboard;

/** Every panel, rows' nested panels included. */
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = (d: Dashboard) => allPanels(d).filter((p) => p.type !== 'row');
const usesDatasourceVar = (ds: { type?: string; uid?: string } | undefined) =>
  ds?.type === 'prometheus' && (ds.uid === '${datasource}' || ds.uid === '$datasource');
const variableQuery = (v: Variable) => (typeof v.query === 'string' ? v.query : v.query?.query ?? '');

interface PanelQuery { panel: string; refId: string; expr: string }
const panelQueries = (d: Dashboard): PanelQuery[] =>
  queryPanels(d).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: `#${p.id} "${p.title}"`, refId: t.refId ?? '?', expr: t.expr ?? '' })));

/** Every reference to an orchestrator metric or recording rule in a PromQL expression, with its label matchers ("" when none). */
function metricRefs(expr: string): { name: string; matchers: string }[] {
  const refs: { name: string; matchers: string }[] = [];
  // Strings ("...") are skipped so label values never count as metric names.
  const re = /"(?:[^"\\]|\\.)*"|\b(orchestrator[_:][A-Za-z0-9_:]*)/g;
  for (let m = re.exec(expr); m; m = re.exec(expr)) {
    if (!m[1]) continue;
    let i = re.lastIndex;
    while (expr[i] === ' ') i++;
    let matchers = '';
    if (expr[i] === '{') {
      let j = i + 1;
      let quoted = false;
      for (; j < expr.length && (quoted || expr[j] !== '}'); j++) {
        if (expr[j] === '\\') j++;
        else if (expr[j] === '"') quoted = !quoted;
      }
      matchers = expr.slice(i + 1, j);
      re.lastIndex = j + 1;
    }
    refs.push({ name: m[1], matchers });
  }
  return refs;
}

/** Problems with the variable filters: a selector of a metric with a tenant/job_type label that does not filter on $tenant/$job_type by regex. */
function missingFilters(queries: PanelQuery[], labelsOf: (metric: string) => Set<string> | undefined): string[] {
  const problems: string[] = [];
  for (const q of queries) {
    for (const ref of metricRefs(q.expr)) {
      const labels = labelsOf(ref.name);
      if (!labels) continue;
      for (const label of ['tenant', 'job_type']) {
        if (!labels.has(label)) continue;
        const filter = new RegExp(`(^|[,\\s])${label}\\s*=~\\s*"\\$(\\{${label}\\}|${label}\\b)"`);
        if (!filter.test(ref.matchers)) problems.push(`${q.panel} ${q.refId}: ${ref.name}{${ref.matchers}} does not filter ${label}=~"$${label}"`);
      }
    }
  }
  return problems;
}

/** The expression Grafana would send: template variables replaced. */
function render(expr: string, values: Record<string, string>): string {
  const all = { ...INTERVALS, ...values };
  const out = expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    return name in all ? all[name]! : whole;
  });
  assert.ok(!/\$\{?\w/.test(out), `a template variable the test does not know is left in ${out}`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// the orchestrator's /metrics

interface Exported {
  /** Sample names (histograms' _bucket, _sum and _count included). */
  samples: Set<string>;
  /** Labels per sample name and per metric family. */
  labels: Map<string, Set<string>>;
}

function parseExposition(text: string): Exported {
  const samples = new Set<string>();
  const labels = new Map<string, Set<string>>();
  const types = new Map<string, string>();
  const add = (name: string, names: string[]) => {
    let set = labels.get(name);
    if (!set) labels.set(name, (set = new Set()));
    for (const n of names) if (n !== 'le' && n !== 'quantile') set.add(n);
  };
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      add(type[1]!, []);
      continue;
    }
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+\S+/.exec(line);
    if (!m) continue;
    const names = [...(m[2] ?? '').matchAll(/(\w+)="(?:[^"\\]|\\.)*"/g)].map((x) => x[1]!);
    samples.add(m[1]!);
    add(m[1]!, names);
    const family = /^(.*)_(bucket|sum|count)$/.exec(m[1]!);
    if (family && (types.get(family[1]!) === 'histogram' || types.get(family[1]!) === 'summary')) add(family[1]!, names);
  }
  return { samples, labels };
}

// ---------------------------------------------------------------------------------------------------------------
// Prometheus

class Prometheus {
  private stderr = '';
  private constructor(readonly url: string, readonly dir: string, private readonly child: ChildProcess) {
    child.stderr!.on('data', (d) => (this.stderr = (this.stderr + d).slice(-20_000)));
  }

  /** Starts Prometheus scraping `target` (host:port) every second, with `ruleFiles`; resolves once the target is up. */
  static async start(dir: string, target: string, ruleFiles: string[]): Promise<Prometheus> {
    const port = await freePort();
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      `rule_files: ${JSON.stringify(ruleFiles)}`,
      'scrape_configs:',
      '  - job_name: orchestrator',
      '    metrics_path: /metrics',
      '    static_configs:',
      `      - targets: [${JSON.stringify(target)}]`,
      '',
    ].join('\n');
    const configFile = path.join(dir, 'prometheus.yml');
    await writeFile(configFile, config);
    const child = spawn(PROMETHEUS_BIN, [
      `--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const prom = new Prometheus(`http://127.0.0.1:${port}`, dir, child);
    try {
      await eventually(async () => {
        if (!alive(child)) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}): ${prom.stderr}`);
        const res = await fetch(`${prom.url}/api/v1/targets?state=active`).catch(() => null);
        if (!res?.ok) return false;
        const body = (await res.json()) as { data: { activeTargets: { health: string; lastError: string }[] } };
        return body.data.activeTargets.some((t) => t.health === 'up');
      }, 30_000, `Prometheus to scrape ${target}`);
    } catch (err) {
      await prom.stop();
      throw new Error(`${(err as Error).message}\nprometheus stderr:\n${prom.stderr}`);
    }
    return prom;
  }

  async api<T>(endpoint: string, params: Record<string, string | string[]>): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) q.append(k, x);
    const res = await fetch(`${this.url}/api/v1/${endpoint}?${q}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${endpoint} ${JSON.stringify(params)}: ${body.error}`);
    return body.data;
  }

  async stop(): Promise<void> {
    if (!alive(this.child)) return;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await kill(this.child, 'SIGTERM');
    clearTimeout(timer);
  }
}

interface Series { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }

/** Why an instant query result shows nothing ("" when it has at least one series with a number). */
function noData(result: Series[]): string {
  if (result.length === 0) return 'empty result';
  if (result.every((s) => s.value![1] === 'NaN')) return `${result.length} series, all NaN`;
  return '';
}

// ---------------------------------------------------------------------------------------------------------------
// setup: database, NATS, orchestrator, load, Prometheus

let db: TestDatabase;
let bus: Bus | null = null;
let plane: ControlPlane;
let prom: Prometheus | null = null;
let tmp: string;
/** Why the repo's rules are not loaded (null: they are). */
let rulesProblem: string | null = null;
const workers: Pick<Worker, 'stop'>[] = [];
let producer: NodeJS.Timeout | undefined;
let producing: Promise<void> = Promise.resolve();
const producerErrors: string[] = [];
let releaseHold!: () => void;
const holding = new Promise<void>((resolve) => (releaseHold = resolve));

const client = (tenant: string) => new OrchClient({ apiUrl: plane.url, tenant });

class UpstreamTimeout extends Error {
  override name = 'UpstreamTimeout';
}

type Mode = 'ok' | 'flaky' | 'invalid' | 'broken';
/** dash_ingest: mostly fine; some fail once (UpstreamTimeout), some are invalid (ValidationError, straight to the DLQ), some never work (exhausted to the DLQ). */
const modeOf = (type: string, i: number): Mode =>
  type !== 'dash_ingest' ? 'ok' : i % 10 === 3 ? 'flaky' : i % 10 === 7 ? 'invalid' : i % 20 === 9 ? 'broken' : 'ok';

async function rulesFile(): Promise<string[]> {
  try {
    await access(ALERTS_PATH);
  } catch {
    rulesProblem = `${path.relative(REPO_ROOT, ALERTS_PATH)} does not exist`;
    return [];
  }
  const check = await execFileP(PROMTOOL_BIN, ['check', 'rules', ALERTS_PATH]).then(() => null, (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`);
  if (check !== null) {
    rulesProblem = `promtool check rules ${path.relative(REPO_ROOT, ALERTS_PATH)} failed:\n${check}`;
    return [];
  }
  // The rules as they are, evaluated every second instead of at their groups' intervals, so a test of seconds sees them.
  const copy = path.join(tmp, 'alerts.yaml');
  await writeFile(copy, (await readFile(ALERTS_PATH, 'utf8')).replace(/^(\s+)interval:\s*\S+\s*$/gm, '$1interval: 1s'));
  await execFileP(PROMTOOL_BIN, ['check', 'rules', copy]);
  return [copy];
}

async function startLoad(): Promise<void> {
  const { jobTypes } = plane.ledger;
  await jobTypes.define('dash_ingest', { maxAttempts: 2, backoffBaseMs: 50, backoffMaxMs: 200 });
  await jobTypes.define('dash_render', { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200 });
  await jobTypes.define(HOLD_TYPE, { leaseMs: 3000 });
  await jobTypes.define(LAPSE_TYPE, { leaseMs: 1000 });

  // A rate-limited quota with a backlog from the start, so claims are throttled; boosted for ten minutes.
  // (A quota names a tenant that exists: one that has enqueued; no worker runs yet to take the backlog.)
  const globex = client(THROTTLED.tenantId);
  await globex.enqueueBatch(Array.from({ length: 20 }, (_, i) => ({ jobType: THROTTLED.jobType, payload: { i, mode: 'ok' } })));
  await globex.setQuota(THROTTLED, { ratePerSecond: 0.5, burst: 1 }, WHY);
  await globex.boostQuota(THROTTLED, { factor: 2, durationSeconds: 600 }, WHY);

  workers.push(await createWorker<{ mode: Mode }>({
    apiUrl: plane.url, jobTypes: [...TYPES], concurrency: 8, handleSignals: false, waitMs: 2000, shutdownTimeoutMs: 5000, workerId: 'dash-worker',
    handler: async (job) => {
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 30));
      const { mode } = job.payload;
      if (mode === 'invalid') throw new NonRetryableError('payload failed validation', 'ValidationError');
      if (mode === 'broken' || (mode === 'flaky' && job.attempt === 1)) throw new UpstreamTimeout('upstream did not answer in time');
    },
  }));
  // One job held open until the end: its lease stays active, renewed by heartbeats.
  workers.push(await createWorker({
    apiUrl: plane.url, jobTypes: [HOLD_TYPE], concurrency: 1, handleSignals: false, waitMs: 2000, shutdownTimeoutMs: 5000, workerId: 'dash-holder',
    handler: (job) => new Promise<void>((resolve) => {
      void holding.then(resolve);
      job.signal.addEventListener('abort', () => resolve());
    }),
  }));
  await client('dash_acme').enqueue({ jobType: HOLD_TYPE, payload: {} });

  // Two leases of a worker that never heartbeats: one lapses (lease_expired), one an operator takes back (force_released).
  await client('dash_globex').enqueueBatch([{ jobType: LAPSE_TYPE }, { jobType: LAPSE_TYPE }]);
  const stalled = await plane.ledger.claim({ workerId: 'dash-stalled', jobTypes: [LAPSE_TYPE], limit: 2 });
  assert.equal(stalled.length, 2, 'the stalled worker claims both jobs');
  const released = await client('dash_globex').releaseLeases({ jobIds: [stalled[0]!.jobId] }, WHY);
  assert.equal(released.released, 1);

  // A schedule ticking every second (tick lag, missed ticks at 0, its windows move a watermark) and a backfill of the
  // last hour in 5-minute windows (backfill windows by state), both of dash_acme's dash_ingest, whose worker succeeds.
  const acme = client('dash_acme');
  await acme.createSchedule('dash-every-second', { jobType: 'dash_ingest', everyMs: 1000, payload: { mode: 'ok', from: '{{windowStart}}', to: '{{windowEnd}}' } }, WHY);
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  await acme.createBackfill({
    jobType: 'dash_ingest', from: new Date(hour - 3_600_000).toISOString(), to: new Date(hour).toISOString(), windowMs: 300_000, concurrency: 2,
    payload: { mode: 'ok', from: '{{windowStart}}', to: '{{windowEnd}}' },
  }, WHY);

  // Two workflows of dash_acme's dash_ingest: one whose steps succeed, one whose first step is invalid (dead-lettered;
  // its dependent canceled): workflows ended by outcome.
  await acme.submitWorkflow({ name: 'dash-ok', steps: [
    { name: 'extract', jobType: 'dash_ingest', payload: { mode: 'ok' } },
    { name: 'load', jobType: 'dash_ingest', payload: { mode: 'ok' }, dependsOn: ['extract'] },
  ] });
  await acme.submitWorkflow({ name: 'dash-failing', steps: [
    { name: 'extract', jobType: 'dash_ingest', payload: { mode: 'invalid' } },
    { name: 'load', jobType: 'dash_ingest', payload: { mode: 'ok' }, dependsOn: ['extract'] },
  ] });

  // Steady load: every 250 ms a batch per tenant with both job types; every 10th tick a batch over the backpressure limit.
  const n = new Map<string, number>();
  let tick = 0;
  producer = setInterval(() => {
    const t = tick++;
    producing = producing.then(async () => {
      try {
        await Promise.all(TENANTS.map((tenant) => client(tenant).enqueueBatch(TYPES.map((jobType) => {
          const i = n.get(jobType) ?? 0;
          n.set(jobType, i + 1);
          return { jobType, payload: { i, mode: modeOf(jobType, i) } };
        }))));
        if (t % 10 === 0) {
          const refused = await client('dash_acme').enqueueBatch(Array.from({ length: MAX_QUEUED_PER_TENANT + 1 }, () => ({ jobType: 'dash_render' })))
            .then(() => null, (err: unknown) => err);
          if (!(refused instanceof OrchApiError && refused.status === 429)) producerErrors.push(`an oversized batch was not refused with 429: ${String(refused)}`);
        }
      } catch (err) {
        producerErrors.push(String(err));
      }
    });
  }, 250);
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'orch-test-dashboard-'));
  db = await createTestDatabase();
  bus = await startBus();
  plane = await startTestServer(db.url, {
    ...(bus ? { natsUrl: bus.url, events: ownStream({}, bus.stream) } : {}),
    maxQueuedPerTenant: MAX_QUEUED_PER_TENANT,
  });
  if (!promSkip) {
    const rules = await rulesFile();
    if (rulesProblem) process.stderr.write(`\n*** dashboard test: the repo's rules are not loaded: ${rulesProblem} ***\n\n`);
    prom = await Prometheus.start(tmp, new URL(plane.url).host, rules);
  }
  await startLoad();
});

after(async () => {
  if (producer) clearInterval(producer);
  await producing;
  releaseHold?.();
  for (const w of workers) await w.stop().catch(() => undefined);
  await prom?.stop();
  await plane?.stop();
  await bus?.cleanup().catch(() => undefined);
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// tests

test('the dashboard is importable Grafana 10+ JSON: uid, title, datasource and tenant/job_type variables, unique ids, a unit and the datasource variable on every panel', () => {
  assert.equal(dashboard.uid, 'orchestrator-overview');
  assert.equal(dashboard.title, 'Orchestrator overview');
  assert.ok(dashboard.schemaVersion >= 38, `schemaVersion ${dashboard.schemaVersion} is Grafana 10+`);
  assert.equal(dashboard.__inputs, undefined, 'no __inputs: imported as is, the datasource comes from the variable');

  const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
  const ds = vars.get('datasource');
  assert.ok(ds, 'a datasource variable');
  assert.deepEqual([ds.type, ds.query], ['datasource', 'prometheus']);
  for (const name of ['tenant', 'job_type']) {
    const v = vars.get(name);
    assert.ok(v, `a ${name} variable`);
    assert.equal(v.type, 'query', `${name}: a query variable`);
    assert.ok(usesDatasourceVar(v.datasource), `${name}: queries the datasource variable`);
    assert.match(variableQuery(v), new RegExp(`^label_values\\(.+,\\s*${name}\\)$`), `${name}: label_values(..., ${name})`);
    assert.equal(v.multi, true, `${name}: multi-value`);
    assert.equal(v.includeAll, true, `${name}: includes All`);
  }

  const ids = allPanels(dashboard).map((p) => p.id);
  assert.deepEqual(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'panel ids are unique');
  const problems: string[] = [];
  for (const p of queryPanels(dashboard)) {
    const where = `#${p.id} "${p.title}"`;
    if (!['timeseries', 'stat'].includes(p.type)) problems.push(`${where}: type ${p.type}`);
    if (!p.gridPos) problems.push(`${where}: no gridPos`);
    if (!usesDatasourceVar(p.datasource)) problems.push(`${where}: datasource ${JSON.stringify(p.datasource)} is not the datasource variable`);
    if (!p.fieldConfig?.defaults?.unit) problems.push(`${where}: no unit`);
    if (!p.targets?.length) problems.push(`${where}: no query`);
    const refIds = (p.targets ?? []).map((t) => t.refId);
    if (new Set(refIds).size !== refIds.length) problems.push(`${where}: duplicate refIds ${refIds.join(',')}`);
    for (const t of p.targets ?? []) {
      if (!usesDatasourceVar(t.datasource)) problems.push(`${where} ${t.refId}: datasource ${JSON.stringify(t.datasource)} is not the datasource variable`);
      if (!t.expr?.trim()) problems.push(`${where} ${t.refId}: no expr`);
    }
  }
  assert.deepEqual(problems, []);

  // The burn-rate panel: the four windows of the recording rules over the 1% budget, with the 14.4 and 6 thresholds.
  const burn = queryPanels(dashboard).find((p) => p.type === 'timeseries' && (p.targets ?? []).some((t) => t.expr?.includes('orchestrator:job_error_ratio:rate1h')));
  assert.ok(burn, 'a burn-rate time series');
  for (const w of ['rate1h', 'rate5m', 'rate6h', 'rate30m']) {
    assert.ok(burn.targets!.some((t) => new RegExp(`orchestrator:job_error_ratio:${w}\\b[^/]*\\)\\s*/\\s*0\\.01\\b`).test(t.expr!)), `burn rate: ${w} / 0.01`);
  }
  const steps = (burn.fieldConfig?.defaults?.thresholds?.steps ?? []).map((s) => s.value);
  assert.ok(steps.includes(14.4) && steps.includes(6), `burn-rate thresholds 14.4 and 6, got ${JSON.stringify(steps)}`);
});

test('every metric the dashboard names is exported by the orchestrator, and every selector filters on the tenant/job_type variables its metric has', async () => {
  const queries = panelQueries(dashboard);
  const variables = dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ panel: `variable $${v.name}`, refId: '-', expr: variableQuery(v) }));
  const skipEvents = bus === null;
  // Labelled series appear with their first event (a refusal, a lapsed lease, a relayed batch, a completed window): scrape
  // until the load has made them all (on a loaded CI machine the first window's watermark once took over 30 s).
  let exported!: Exported;
  let unknown: string[] = [];
  const deadline = Date.now() + 60_000;
  do {
    if (unknown.length > 0) await new Promise((r) => setTimeout(r, 250));
    exported = parseExposition(await (await fetch(`${plane.url}/metrics`)).text());
    unknown = [...queries, ...variables].flatMap((q) => metricRefs(q.expr)
      .filter((r) => !r.name.includes(':') && !exported.samples.has(r.name) && !(skipEvents && /^orchestrator_(outbox|events)_/.test(r.name)))
      .map((r) => `${q.panel} ${q.refId}: ${r.name}`));
  } while (unknown.length > 0 && Date.now() < deadline);
  const problems = [...unknown.map((u) => `not exported by the orchestrator: ${u}`), ...missingFilters(queries, (m) => exported.labels.get(m))];
  assert.deepEqual(problems, []);
});

test('every panel query returns data from Prometheus scraping the orchestrator under load', { skip: promSkip }, async () => {
  assert.ok(prom);
  const p = prom;
  const queries = panelQueries(dashboard);

  // Recording rules: each must be one alerts.yaml defines (loaded), and filter on the variables its series carry.
  const recorded = [...new Set(queries.flatMap((q) => metricRefs(q.expr)).map((r) => r.name).filter((n) => n.includes(':')))];
  if (recorded.length > 0) {
    assert.equal(rulesProblem, null, `the dashboard uses recording rules (${recorded.join(', ')}) but ${rulesProblem}`);
    const groups = await p.api<{ groups: { rules: { type: string; name: string }[] }[] }>('rules', {});
    const defined = new Set(groups.groups.flatMap((g) => g.rules).filter((r) => r.type === 'recording').map((r) => r.name));
    assert.deepEqual(recorded.filter((n) => !defined.has(n)), [], 'recording rules alerts.yaml does not define');
  }

  const skipEvents = bus === null;
  const checked = queries.filter((q) => !(skipEvents && /orchestrator_(outbox|events)_/.test(q.expr)));
  const started = Date.now();
  let missing: string[] = [];
  let optionSets: Record<string, string>[] = [];
  for (;;) {
    // The values the variable queries return, as Grafana sends a multi-value selection: (a|b|c).
    const options: Record<string, string> = {};
    const listed: string[] = [];
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(render(variableQuery(v), { ...options, tenant: options.tenant ?? '.*', job_type: options.job_type ?? '.*' }));
      assert.ok(m, `variable ${v.name}: label_values(selector, label)`);
      const values = await p.api<string[]>(`label/${m[2]}/values`, { 'match[]': m[1]! });
      if (values.length === 0) listed.push(`variable $${v.name}: ${variableQuery(v)} lists no values`);
      options[v.name] = `(${values.map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`;
    }
    for (const t of TENANTS) if (!options.tenant?.includes(t)) listed.push(`variable $tenant does not list ${t}`);
    for (const t of TYPES) if (!options.job_type?.includes(t)) listed.push(`variable $job_type does not list ${t}`);
    optionSets = [{ tenant: '.*', job_type: '.*' }, options];

    missing = [...listed];
    const now = Date.now() / 1000;
    for (const q of checked) {
      for (const values of optionSets) {
        const expr = render(q.expr, values);
        const instant = await p.api<{ result: Series[] }>('query', { query: expr, time: String(now) });
        const why = noData(instant.result);
        if (why) {
          missing.push(`${q.panel} ${q.refId} (${why}): ${expr}`);
          continue;
        }
        const range = await p.api<{ result: Series[] }>('query_range', { query: expr, start: String(now - 30), end: String(now), step: '2' });
        if (range.result.length === 0) missing.push(`${q.panel} ${q.refId} (instant has data, range over the last 30 s has none): ${expr}`);
      }
    }
    if (missing.length === 0 || Date.now() - started > DATA_DEADLINE_MS) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  // The recording rules' series carry only labels the dashboard filters on.
  const labelsOf = new Map<string, Set<string>>();
  for (const name of recorded) {
    const series = await p.api<Record<string, string>[]>('series', { 'match[]': name });
    labelsOf.set(name, new Set(series.flatMap((s) => Object.keys(s))));
  }
  assert.deepEqual(producerErrors, [], 'the load ran as planned');
  assert.deepEqual([
    ...missing.map((m) => `no data after ${Math.round((Date.now() - started) / 1000)} s: ${m}`),
    ...missingFilters(queries, (m) => labelsOf.get(m)),
  ], []);
});
