import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import { withDeadline } from './smoke.ts';
import { PROBE_STATUS_FILE } from './status-file.ts';
import { natsServers } from '../events/bus.ts';

export { PROBE_STATUS_FILE };

/** What the probe checks; a check whose setting is absent reports "skipped". */
export interface ProbeTargets {
  /** ORCH_DATABASE_URL; absent with the embedded database (the orchestrator check covers it). */
  databaseUrl?: string;
  /** ORCH_MONGO_URL. */
  mongoUrl?: string;
  /** ORCH_NATS_URL. */
  natsUrl?: string;
  /** The JetStream stream the orchestrator publishes to (ORCH_EVENTS_STREAM). */
  eventStream: string;
  /** The orchestrator's base URL; its /readyz is checked. */
  apiUrl: string;
  timeoutMs: number;
}

export interface CheckResult {
  name: string;
  status: 'ok' | 'fail' | 'skipped';
  latencyMs: number;
  detail: string;
}

export interface ProbeReport {
  at: string;
  ok: boolean;
  checks: CheckResult[];
}

/** Where `orch probe` and scripts/orchestrator/probe.sh write their result (surface.md). */

/** Runs every check (each bounded by the timeout); fails only on configured checks that fail. */
export async function runProbe(t: ProbeTargets): Promise<ProbeReport> {
  const checks = await Promise.all([
    check('postgres', t.databaseUrl, t.timeoutMs, (url) => pingPostgres(url, t.timeoutMs),
      'ORCH_DATABASE_URL not set (embedded database: covered by the orchestrator check)'),
    check('mongo', t.mongoUrl, t.timeoutMs, (url) => pingMongo(url, t.timeoutMs), 'ORCH_MONGO_URL not set'),
    check('nats', t.natsUrl, t.timeoutMs, (url) => natsRoundTrip(url, t.eventStream, t.timeoutMs), 'ORCH_NATS_URL not set'),
    check('orchestrator', t.apiUrl, t.timeoutMs, (url) => readyz(url, t.timeoutMs), ''),
  ]);
  return { at: new Date().toISOString(), ok: checks.every((c) => c.status !== 'fail'), checks };
}

/** status.txt: one tab-separated line per check (name, status, latency, detail), then the overall line. */
export function formatStatus(r: ProbeReport): string {
  const line = (c: CheckResult) => `${c.name}\t${c.status}\t${c.latencyMs}ms\t${c.detail.replace(/\s+/g, ' ')}`;
  const counts = (['ok', 'fail', 'skipped'] as const).map((s) => `${r.checks.filter((c) => c.status === s).length} ${s}`).join(', ');
  const total = r.checks.reduce((sum, c) => Math.max(sum, c.latencyMs), 0);
  return [...r.checks.map(line), line({ name: 'overall', status: r.ok ? 'ok' : 'fail', latencyMs: total, detail: `${counts} at ${r.at}` })].join('\n') + '\n';
}

export async function writeStatus(r: ProbeReport, file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, formatStatus(r));
}

async function check(name: string, target: string | undefined, timeoutMs: number, run: (target: string) => Promise<string>, skipped: string): Promise<CheckResult> {
  if (!target) return { name, status: 'skipped', latencyMs: 0, detail: skipped };
  const started = performance.now();
  try {
    const detail = await withDeadline(run(target), Date.now() + timeoutMs, `no answer within ${timeoutMs}ms`);
    return { name, status: 'ok', latencyMs: Math.round(performance.now() - started), detail };
  } catch (err) {
    return { name, status: 'fail', latencyMs: Math.round(performance.now() - started), detail: (err as Error).message || String(err) };
  }
}

async function pingPostgres(url: string, timeoutMs: number): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, application_name: 'orch-probe' });
  try {
    await client.connect();
    const { rows } = await client.query<{ v: string }>('SELECT current_setting(\'server_version\') AS v');
    return `SELECT 1 answered (PostgreSQL ${rows[0]!.v})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function pingMongo(url: string, timeoutMs: number): Promise<string> {
  // the driver takes most of a second to load: only a probe with ORCH_MONGO_URL pays for it
  const { MongoClient } = await import('mongodb');
  const client = new MongoClient(url, { serverSelectionTimeoutMS: timeoutMs, connectTimeoutMS: timeoutMs });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return 'ping answered';
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Publishes on a probe subject and waits for the message to come back, then reads JetStream's account and the event stream. */
async function natsRoundTrip(url: string, stream: string, timeoutMs: number): Promise<string> {
  const nc: NatsConnection = await connect({ servers: natsServers(url), timeout: timeoutMs, name: 'orch-probe', reconnect: false });
  try {
    const subject = `orch.probe.${randomUUID()}`;
    const sub = nc.subscribe(subject, { max: 1 });
    const started = performance.now();
    nc.publish(subject, 'ping');
    for await (const msg of sub) if (msg.string() !== 'ping') throw new Error('round trip returned a different message');
    const roundTripMs = (performance.now() - started).toFixed(1);
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    const info = await jsm.streams.info(stream).catch(() => null);
    const streamDetail = info ? `stream ${stream}: ${info.state.messages} messages` : `stream ${stream} not created yet (the orchestrator creates it)`;
    return `publish round trip ${roundTripMs}ms; JetStream up; ${streamDetail}`;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

async function readyz(apiUrl: string, timeoutMs: number): Promise<string> {
  const res = await fetch(new URL('/readyz', apiUrl), { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.json().catch(() => null) as { status?: string; checks?: Record<string, { ok: boolean; detail?: string }> } | null;
  const failing = Object.entries(body?.checks ?? {}).filter(([, c]) => !c.ok).map(([k, c]) => `${k}: ${c.detail ?? 'not ok'}`);
  if (!res.ok) throw new Error(`/readyz ${res.status} ${body?.status ?? ''} ${failing.join('; ')}`.trim());
  return `/readyz ${body?.status ?? res.status}${failing.length ? ` (${failing.join('; ')})` : ''}`;
}
