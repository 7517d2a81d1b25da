import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, test, type TestContext } from 'node:test';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type pg from 'pg';
import { defaultConfig, type Config } from '../src/config/config.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { expand, readOutbox, type OrchEvent } from '../src/events/envelope.ts';
import { OutboxPruner } from '../src/events/pruner.ts';
import { OutboxRelay } from '../src/events/relay.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { getHistory, getJob } from '../src/ledger/queries.ts';
import type { HistoryEntry, Lease } from '../src/ledger/types.ts';
import { createLogger } from '../src/logging.ts';
import { createWorker, type Worker } from '../src/sdk/worker.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { sample } from '../src/metrics/exposition.ts';
import { createTestDatabase } from './helpers/db.ts';
import {
  deleteStream, MACHINE_NATS_URL, natsConnect, NatsProcess, ownStream, readStream, skipUnlessNats, streamCount, subjectPrefixOf, type StoredMessage,
} from './helpers/nats.ts';
import { kill } from './helpers/processes.ts';
import { CLI_ARGS, eventually, REPO_ROOT, spawnServer, startTestServer, TEST_SERVER_ENV } from './helpers/server.ts';
import { SERVE_NODE_FLAGS } from '../src/synthetic/server-process.ts';
import { scope, type End } from './helpers/scope.ts';

/**
 * Events (docs/events.md): one orch.event.v1 per transition, progress report
 * and control change, written to the outbox in the transition's own
 * statement and relayed to JetStream exactly once, whatever dies in between:
 * NATS, the server (between commit and publish, and in the middle of a large
 * backlog), or the relay leader. The SSE stream from the same outbox, with
 * resumption, filters and tenant isolation, and the outbox pruner.
 *
 * The witness is the ledger: every test compares what consumers received
 * with the jobs' history (orch.job_transitions), never with the outbox.
 * Every event received, from JetStream or SSE, is validated against
 * schemas/orch.event.v1.json.
 *
 * NATS: tests that only read use the machine's JetStream server
 * (127.0.0.1:4222) with a stream of their own (T_<random>, deleted at the
 * end) and a subject prefix of its own (T_<random>.orch.events), so they
 * run beside other tests and other streams; tests that stop NATS run
 * nats-server processes of their own. Without NATS those tests are skipped
 * with a loud message (failed in CI).
 */

const BASE = '/api/v1/orchestrator';

const machineSkip = await skipUnlessNats('the tests on the machine\'s NATS server', { machine: true });
const binarySkip = await skipUnlessNats('the tests that stop and restart NATS', { binary: true });

/** Registers clean-ups that run when the test ends, pass or fail, in reverse order; `end(value, cleanup)` returns the value. */

// ---------------------------------------------------------------------------------------------------------------
// schema and envelope checks

// CommonJS modules: their default export is on .default under NodeNext.
const ajv = new Ajv2020.default({ allErrors: true, strict: true });
addFormats.default(ajv);
const schema: unknown = JSON.parse(await readFile(new URL('../schemas/orch.event.v1.json', import.meta.url), 'utf8'));
const validateSchema = ajv.compile(schema as object);

function assertValid(e: unknown, where: string): asserts e is OrchEvent {
  if (!validateSchema(e)) assert.fail(`${where}: not a valid orch.event.v1: ${ajv.errorsText(validateSchema.errors)}\n${JSON.stringify(e)}`);
}

/** The event type of a history entry, by the table in docs/events.md. */
function typeOf(h: HistoryEntry, replayOf: string | null): string {
  if (h.from === null) return replayOf === null ? 'job.enqueued' : 'job.replayed';
  if (h.to === 'leased') return 'job.leased';
  if (h.from === 'dead_lettered' && h.to === 'cleared') return 'dlq.cleared';
  if (h.from === 'leased' && h.to === 'queued') return h.reason === 'lease_expired' ? 'lease.expired' : 'lease.released';
  const byState: Record<string, string> = {
    succeeded: 'job.succeeded', failed: 'job.retry_scheduled', dead_lettered: 'job.dead_lettered', canceled: 'job.canceled', timed_out: 'job.timed_out',
  };
  const t = byState[h.to];
  assert.ok(t, `no event type for ${h.from} -> ${h.to}`);
  return t;
}

/** One line per event / history entry, so a mismatch shows as a readable diff. */
const eventLine = (e: OrchEvent) =>
  `${e.eventType} ${e.job!.status}#${e.job!.attempt} lease=${e.job!.leaseId} reason=${e.job!.reason} by=${e.actor.subject} key=${e.idempotencyKey} at=${e.occurredAt}`;
const historyLine = (id: string, replayOf: string | null) => (h: HistoryEntry) => {
  const type = typeOf(h, replayOf);
  return `${type} ${h.to}#${h.attempt} lease=${h.leaseId} reason=${h.reason} by=${h.actor} key=orch-${type}-${id}-${h.attempt} at=${h.at}`;
};

/**
 * The job events received (in delivery order, progress left out) are exactly
 * the jobs' histories: one event per entry, same order, the type of the
 * docs' table, the entry's state, attempt, lease, reason, actor and time, and
 * the documented idempotency key; and no event for any other job.
 */
async function assertEventsMatchHistory(
  db: pg.Pool, tenantId: string, jobIds: string[], events: OrchEvent[], what: string, opts: { times?: boolean } = {},
): Promise<void> {
  const times = (line: string) => (opts.times === false ? line.replace(/ at=\S+$/, '') : line);
  const byJob = new Map<string, OrchEvent[]>();
  for (const e of events) {
    if (!e.job || e.eventType === 'job.progress') continue;
    assert.equal(e.tenantId, tenantId, `${what}: event of another tenant ${JSON.stringify(e)}`);
    byJob.set(e.job.id, [...(byJob.get(e.job.id) ?? []), e]);
  }
  const expected = new Set(jobIds);
  for (const id of byJob.keys()) assert.ok(expected.has(id), `${what}: events of job ${id}, which is not one of the jobs`);
  for (const id of jobIds) {
    const job = await getJob(db, tenantId, id);
    assert.ok(job, `job ${id} exists`);
    const history = await getHistory(db, tenantId, id);
    assert.ok(history.length > 0);
    const got = byJob.get(id) ?? [];
    assert.deepEqual(got.map(eventLine).map(times), history.map(historyLine(id, job.replayOf)).map(times), `${what}: the events of job ${id} are its history`);
    for (const e of got) {
      assert.equal(e.job!.type, job.jobType);
      assert.equal(e.correlationId, job.correlationId);
    }
  }
}

/** JetStream messages: valid envelopes, Nats-Msg-Id = eventId, subject by the docs, each event id once. */
function assertWellFormed(msgs: StoredMessage<unknown>[], stream: string, what: string): OrchEvent[] {
  const ids = new Set<string>();
  const events = msgs.map((m) => {
    const e = m.body;
    assertValid(e, `${what}: stream seq ${m.seq}`);
    assert.equal(m.msgId, e.eventId, `${what}: Nats-Msg-Id of seq ${m.seq} is the event id`);
    const tenant = e.tenantId === '*' ? '_all' : e.tenantId;
    assert.equal(m.subject, `${subjectPrefixOf(stream)}.${tenant}.${e.job?.type ?? '_'}.${e.eventType}`, `${what}: subject of seq ${m.seq}`);
    assert.ok(!ids.has(e.eventId), `${what}: event ${e.eventId} (${e.eventType} of job ${e.job?.id}) stored twice`);
    ids.add(e.eventId);
    return e;
  });
  for (let i = 1; i < msgs.length; i++) assert.ok(msgs[i]!.seq > msgs[i - 1]!.seq, 'read in stream order');
  return events;
}

// ---------------------------------------------------------------------------------------------------------------
// ledger, outbox and metrics

/** History entries of these tenants' jobs: the number of transition events there must be. */
async function historyEntries(db: pg.Pool, tenants: string[]): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    'SELECT coalesce(sum(cardinality(job_ids)), 0) AS n FROM orch.job_transitions WHERE tenant_id = ANY($1)', [tenants]);
  return Number(rows[0]!.n);
}

async function jobIdsOf(db: pg.Pool, tenantId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id::text FROM orch.jobs WHERE tenant_id = $1 ORDER BY id', [tenantId]);
  return rows.map((r) => r.id);
}

async function outboxRows(db: pg.Pool): Promise<{ total: number; pending: number }> {
  const { rows } = await db.query<{ total: string; pending: string }>(
    'SELECT count(*) AS total, count(*) FILTER (WHERE published_at IS NULL) AS pending FROM orch.outbox');
  return { total: Number(rows[0]!.total), pending: Number(rows[0]!.pending) };
}

async function stateCounts(db: pg.Pool, tenantId: string): Promise<Record<string, number>> {
  const { rows } = await db.query<{ state: string; n: string }>(
    'SELECT state::text, count(*) AS n FROM orch.jobs WHERE tenant_id = $1 GROUP BY state', [tenantId]);
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}


/** orchestrator_events_published_total by event type. */
function publishedByType(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^orchestrator_events_published_total\{event_type="([^"]+)"\} (\S+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

const countBy = <T>(xs: T[], key: (x: T) => string) => {
  const m = new Map<string, number>();
  for (const x of xs) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return m;
};
const sortedEntries = (m: Map<string, number>) => [...m.entries()].sort(([a], [b]) => a.localeCompare(b));

interface Readiness { status: string; checks: Record<string, { ok: boolean; degraded?: boolean; detail?: string }> }
async function readyz(url: string): Promise<{ code: number; body: Readiness }> {
  const res = await fetch(`${url}/readyz`);
  return { code: res.status, body: (await res.json()) as Readiness };
}

const streamName = () => `T_${randomBytes(5).toString('hex')}`;
const eventsConfig = (stream: string, over: Partial<Config['events']> = {}): Config['events'] => ownStream(over, stream);
const fastMaintenance = (over: Partial<Config['maintenance']> = {}): Config['maintenance'] => ({
  ...defaultConfig.maintenance, leaseReaperIntervalMs: 100, leaseGraceMs: 0, ...over,
});

/** A NATS client for the test (closed when it ends). */
async function natsClient(end: End, url: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const c = await natsConnect(url);
  end(c.nc, (nc) => nc.close());
  return c;
}

/** A test database, a stream name on the machine's NATS (or a server of the test's own), and a client; all removed after the test. */
async function sharedBed(t: TestContext) {
  const end = scope(t);
  const db = end(await createTestDatabase(), (d) => d.drop());
  const stream = streamName();
  const natsUrl = MACHINE_NATS_URL;
  const { nc, jsm } = await natsClient(end, natsUrl);
  end(stream, (s) => deleteStream(jsm, s));
  return { end, db, stream, natsUrl, nc, jsm };
}


/** Resolves after the service's next `n` runs (finished or failed). */
function runs(service: OutboxRelay, n: number): Promise<void> {
  return new Promise((resolve) => {
    let left = n;
    const tick = () => {
      if (--left > 0) return;
      service.off('run', tick).off('failed', tick);
      resolve();
    };
    service.on('run', tick).on('failed', tick);
  });
}

/** Waits until the server's bus is connected and its stream exists; says which streams are in the way if another one covers orch.events.>. */
async function busReady(url: string, jsm: JetStreamManager, stream: string): Promise<void> {
  try {
    await eventually(async () => {
      const r = await readyz(url);
      return r.code === 200 && r.body.status === 'ready' && r.body.checks.bus?.ok === true;
    }, 15_000, 'the bus to connect');
  } catch (err) {
    const others: string[] = [];
    for await (const s of jsm.streams.list()) if (s.config.name !== stream) others.push(`${s.config.name} ${JSON.stringify(s.config.subjects)}`);
    throw new Error(`${(err as Error).message}; streams on the NATS server (one covering orch.events.> prevents ${stream}): ${others.join(', ') || 'none'}`);
  }
}

/** Waits until the relay has published everything (no pending outbox row) and the stream holds at least `expected` messages. */
async function allPublished(db: pg.Pool, jsm: JetStreamManager, stream: string, expected: number, timeoutMs = 30_000): Promise<void> {
  let last = { pending: -1, stored: -1 };
  await eventually(async () => {
    // (the test's own NATS client may still be reconnecting after a restart: that is "not yet", not a failure;
    // a request sent just before it reconnected is never answered, so ask again after 2 s, not the client's 15 s)
    const stored = Promise.race([streamCount(jsm, stream).catch(() => -1), new Promise<number>((r) => setTimeout(r, 2000, -1))]);
    last = { pending: (await outboxRows(db)).pending, stored: await stored };
    return last.pending === 0 && last.stored >= expected;
  }, timeoutMs, `all ${expected} events published`).catch((err: Error) => {
    throw new Error(`${err.message} (last seen: ${last.pending} outbox rows pending, ${last.stored} messages stored)`);
  });
}

const why = (reason: string, ticket?: string) => ({ reason, ...(ticket ? { ticket } : {}) });

// ---------------------------------------------------------------------------------------------------------------
// SSE client

interface SseMessage { id: string; event: string; data: OrchEvent }

/** A Server-Sent Events client over fetch: collects messages and comment lines until closed. */
class SseClient {
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  /** True once the server ended the stream. */
  endedByServer = false;
  private done: Promise<void> = Promise.resolve();

  private constructor(readonly status: number, readonly body: unknown, private readonly ac: AbortController) {}

  static async open(base: string, tenant: string, opts: { query?: string; lastEventId?: string } = {}): Promise<SseClient> {
    const ac = new AbortController();
    const headers: Record<string, string> = { 'x-tenant-id': tenant, accept: 'text/event-stream' };
    if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
    const res = await fetch(`${base}${BASE}/stream${opts.query ?? ''}`, { headers, signal: ac.signal });
    if (res.status !== 200) {
      const text = await res.text();
      return new SseClient(res.status, text ? JSON.parse(text) : null, ac);
    }
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const c = new SseClient(200, null, ac);
    c.done = c.pump(res.body!.getReader());
    return c;
  }

  private async pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          this.parse(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
      this.endedByServer = true;
    } catch {
      // closed by us
    }
  }

  private parse(block: string): void {
    let id: string | undefined;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        this.comments.push(line.slice(1).trim());
        continue;
      }
      const k = line.indexOf(':');
      const field = k < 0 ? line : line.slice(0, k);
      const value = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    const e: unknown = JSON.parse(data.join('\n'));
    assertValid(e, `SSE message ${id}`);
    assert.ok(id !== undefined && /^\d+-\d+-\d+$/.test(id), `SSE message has an id: ${id}`);
    assert.equal(event, e.eventType, 'the SSE event name is the event type');
    this.messages.push({ id, event, data: e });
  }

  /** Messages after the given id (all when undefined). */
  after(id: string | undefined): SseMessage[] {
    return id === undefined ? [...this.messages] : this.messages.filter((m) => cmpId(m.id, id) > 0);
  }

  async waitFor(pred: (c: SseClient) => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    await eventually(async () => pred(this), timeoutMs, what);
  }

  /** Waits for `n` more heartbeat comments: the server has looked at the outbox since. */
  async heartbeats(n: number): Promise<void> {
    const seen = this.comments.filter((c) => c === 'heartbeat').length;
    await this.waitFor((c) => c.comments.filter((x) => x === 'heartbeat').length >= seen + n, `${n} heartbeats`);
  }

  async close(): Promise<void> {
    this.ac.abort();
    await this.done;
  }
}

/** SSE ids are outbox positions "xid-seq-index"; they compare as numbers, part by part. */
function cmpId(a: string, b: string): number {
  const x = a.split('-').map(BigInt);
  const y = b.split('-').map(BigInt);
  for (let i = 0; i < 3; i++) if (x[i]! !== y[i]!) return x[i]! < y[i]! ? -1 : 1;
  return 0;
}

function assertIncreasing(ms: SseMessage[], what: string): void {
  for (let i = 1; i < ms.length; i++) assert.ok(cmpId(ms[i - 1]!.id, ms[i]!.id) < 0, `${what}: ids increase (${ms[i - 1]!.id} then ${ms[i]!.id})`);
}

// ---------------------------------------------------------------------------------------------------------------
// orch serve as a child process, for the kill tests

/** `orch serve` as a process, returned at once (spawnServer waits for /readyz; the backlog test must be watching before that). */
function spawnOrch(end: End, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, ...CLI_ARGS, 'serve'], {
    cwd: REPO_ROOT, env: { ...process.env, ORCH_LOG_LEVEL: 'warn', ...TEST_SERVER_ENV, ...env }, stdio: ['ignore', 'ignore', 'ignore'],
  });
  return end(child, (c) => kill(c, 'SIGKILL'));
}

// ===============================================================================================================

describe('one event per transition, on JetStream', { skip: machineSkip }, () => {
  test('every kind of transition, progress and control change gives exactly one event: the jobs\' history, in order, well formed', async (t) => {
    const { end, db, stream, natsUrl, nc, jsm } = await sharedBed(t);
    const cp = end(await startTestServer(db.url, {
      natsUrl, events: eventsConfig(stream), workerLostAfterMs: 600_000, maintenance: fastMaintenance(),
    }), (c) => c.stop());
    await busReady(cp.url, jsm, stream);

    const T = 'ev1';
    const W = 'worker:w1';
    const api = new OrchClient({ apiUrl: cp.url, tenant: T });
    const { ledger } = cp;
    // One job type per scenario, so each claim takes the job it means to.
    for (const [name, s] of Object.entries({
      ev_ok: {}, ev_retry: { maxAttempts: 2, backoffBaseMs: 0, backoffMaxMs: 0 }, ev_cancel: {}, ev_release: {}, ev_fatal: {},
      ev_expire: { leaseMs: 1000, maxAttempts: 5 }, ev_timeout: { timeoutMs: 1000 }, ev_ctl: {},
    })) await ledger.jobTypes.define(name, { leaseMs: 60_000, ...s });

    const claimOne = async (jobType: string): Promise<Lease> => {
      const leases = await ledger.claim({ workerId: 'w1', jobTypes: [jobType], tenantIds: [T], limit: 1 });
      assert.equal(leases.length, 1, `claimed the ${jobType} job`);
      return leases[0]!;
    };
    const ref = (l: Lease) => ({ tenantId: T, jobId: l.jobId, leaseId: l.leaseId });
    const stateOf = async (id: string) => (await ledger.getJob(T, id))!.state;

    // Seven jobs, one enqueue statement.
    const enqueued = await ledger.enqueue(['ev_ok', 'ev_retry', 'ev_cancel', 'ev_release', 'ev_fatal', 'ev_expire', 'ev_timeout'].map((jobType) => ({
      tenantId: T, jobType, payload: { jobType }, ...(jobType === 'ev_ok' ? { correlationId: 'order-42' } : {}),
    })));
    const [ok, retry, canceled, released, fatal, expiring, timing] = enqueued.map((r) => r.id) as [string, string, string, string, string, string, string];

    // claim, progress, complete
    const okLease = await claimOne('ev_ok');
    assert.deepEqual((await ledger.heartbeat([{ ...ref(okLease), progress: 0.5, message: 'half way' }])).map((o) => o.status), ['ok']);
    assert.deepEqual((await ledger.heartbeat([ref(okLease)])).map((o) => o.status), ['ok'], 'a heartbeat without progress');
    assert.deepEqual((await ledger.complete([{ ...ref(okLease), result: { done: true } }], W)).map((o) => o.status), ['ok']);

    // fail with a retry, fail again: dead-lettered; snapshot and clear; replay; the replay succeeds
    const boom = { class: 'Boom', message: 'upstream said no' };
    await ledger.fail([{ ...ref(await claimOne('ev_retry')), error: boom }], W);
    assert.equal(await stateOf(retry), 'failed');
    await ledger.fail([{ ...ref(await claimOne('ev_retry')), error: boom }], W);
    assert.equal(await stateOf(retry), 'dead_lettered');
    const snap = await api.snapshotDlq({ jobIds: [retry] });
    assert.equal((await api.clearDlq(snap.id, why('reviewed the batch'))).cleared, 1);
    const replay = await api.replayJob(retry, why('upstream fixed'));
    const replayed = replay.job.id;
    assert.equal(replay.job.replayOf, retry);
    await ledger.complete([ref(await claimOne('ev_retry'))], W);

    // cancel while queued
    await api.cancel(canceled, 'not needed');
    // released by its worker, claimed again, canceled while leased
    await ledger.release([ref(await claimOne('ev_release'))], W);
    await claimOne('ev_release');
    await api.cancel(released, 'customer left');
    // a non-retryable failure goes straight to the DLQ
    await ledger.fail([{ ...ref(await claimOne('ev_fatal')), error: { class: 'Invalid', message: 'bad input', retryable: false } }], W);
    assert.equal(await stateOf(fatal), 'dead_lettered');

    // lease expiry (1 s lease, the reaper every 100 ms), then an operator's force release, then success
    await claimOne('ev_expire');
    await eventually(async () => (await stateOf(expiring)) === 'queued', 10_000, 'the lease to expire');
    await claimOne('ev_expire');
    const forced = await api.releaseLeases({ jobIds: [expiring] }, why('worker wedged'));
    assert.deepEqual(forced.jobs.map((j) => [j.jobId, j.state]), [[expiring, 'queued']]);
    await ledger.complete([ref(await claimOne('ev_expire'))], W);

    // run-time limit
    await claimOne('ev_timeout');
    await eventually(async () => (await stateOf(timing)) === 'timed_out', 10_000, 'the job to time out');

    // control changes: pause and resume for every tenant, a quota and a boost for this tenant
    await api.setDispatch('pause', { jobType: 'ev_ctl' }, 'bad deploy', 'INC-1');
    await api.setDispatch('resume', { jobType: 'ev_ctl' }, 'fixed', 'INC-1');
    await api.setQuota({ tenantId: T, jobType: 'ev_ctl' }, { maxActive: 3 }, why('cap', 'OPS-2'));
    await api.boostQuota({ tenantId: T, jobType: 'ev_ctl' }, { factor: 2, durationSeconds: 600 }, why('backlog', 'OPS-3'));

    const expectedTypes: Record<string, string[]> = {
      [ok]: ['job.enqueued', 'job.leased', 'job.progress', 'job.succeeded'],
      [retry]: ['job.enqueued', 'job.leased', 'job.retry_scheduled', 'job.leased', 'job.dead_lettered', 'dlq.cleared'],
      [replayed]: ['job.replayed', 'job.leased', 'job.succeeded'],
      [canceled]: ['job.enqueued', 'job.canceled'],
      [released]: ['job.enqueued', 'job.leased', 'lease.released', 'job.leased', 'job.canceled'],
      [fatal]: ['job.enqueued', 'job.leased', 'job.dead_lettered'],
      [expiring]: ['job.enqueued', 'job.leased', 'lease.expired', 'job.leased', 'lease.released', 'job.leased', 'job.succeeded'],
      [timing]: ['job.enqueued', 'job.leased', 'job.timed_out'],
    };
    const controls = ['jobtype.paused', 'jobtype.resumed', 'quota.changed', 'quota.changed'];
    const expected = Object.values(expectedTypes).reduce((n, ts) => n + ts.length, 0) + controls.length;
    const transitions = await historyEntries(db.pool, [T]);
    assert.equal(transitions, expected - controls.length - 1, 'the scenario made the transitions it meant to (all but progress and controls)');

    await allPublished(db.pool, jsm, stream, expected);
    const msgs = await readStream<unknown>(nc, stream);
    assert.equal(msgs.length, expected, `the stream holds exactly ${expected} events`);
    assert.equal(await streamCount(jsm, stream), expected);
    const events = assertWellFormed(msgs, stream, 'stream');

    // per job: the expected sequence of types, and exactly its history
    const jobIds = Object.keys(expectedTypes);
    for (const id of jobIds) {
      assert.deepEqual(events.filter((e) => e.job?.id === id).map((e) => e.eventType), expectedTypes[id], `event types of job ${id}`);
    }
    await assertEventsMatchHistory(db.pool, T, jobIds, events, 'stream');
    assert.ok(events.every((e) => e.job === null || e.tenantId === T));

    // details the history does not carry
    const of = (id: string, type: string) => events.filter((e) => e.job?.id === id && e.eventType === type);
    const progress = of(ok, 'job.progress');
    assert.equal(progress.length, 1, 'one progress event: the heartbeat without progress made none');
    assert.deepEqual(progress[0]!.data, { progress: 0.5, message: 'half way' });
    assert.deepEqual(
      { ...progress[0]!.job, by: progress[0]!.actor.subject, key: progress[0]!.idempotencyKey, corr: progress[0]!.correlationId },
      { id: ok, type: 'ev_ok', attempt: 1, leaseId: okLease.leaseId, status: 'leased', reason: null, by: W, key: `orch-job.progress-${ok}-1`, corr: 'order-42' });
    assert.deepEqual(of(ok, 'job.succeeded')[0]!.data, null);
    assert.deepEqual(of(ok, 'job.enqueued')[0]!.data, null);
    for (const e of [...of(retry, 'job.retry_scheduled'), ...of(retry, 'job.dead_lettered')]) {
      assert.deepEqual(e.data, { error: { ...boom, retryable: true } }, `${e.eventType} carries the error`);
    }
    assert.deepEqual(of(fatal, 'job.dead_lettered')[0]!.data, { error: { class: 'Invalid', message: 'bad input', retryable: false } });
    assert.equal(of(replayed, 'job.replayed')[0]!.data?.replayOf, retry, 'job.replayed names the job it replays');
    assert.equal(of(expiring, 'lease.expired')[0]!.actor.subject, 'system:lease-reaper');
    assert.deepEqual(of(expiring, 'lease.released').map((e) => [e.job!.reason, e.actor.subject]), [['worker wedged', 'anonymous']]);
    assert.deepEqual(of(released, 'lease.released').map((e) => [e.job!.reason, e.actor.subject, e.job!.status]), [['released_by_worker', W, 'queued']]);
    assert.deepEqual(of(timing, 'job.timed_out').map((e) => e.actor.subject), ['system:lease-reaper']);

    // control events: who, why, which, for whom
    const ctl = events.filter((e) => e.job === null);
    assert.deepEqual(ctl.map((e) => e.eventType), controls, 'control events, in the order they were made');
    const [paused, resumed, quota, boost] = ctl as [OrchEvent, OrchEvent, OrchEvent, OrchEvent];
    for (const [e, action, reason, ticket, tenant] of [
      [paused, 'dispatch.pause', 'bad deploy', 'INC-1', '*'], [resumed, 'dispatch.resume', 'fixed', 'INC-1', '*'],
      [quota, 'quota.create', 'cap', 'OPS-2', T], [boost, 'quota.boost', 'backlog', 'OPS-3', T],
    ] as const) {
      assert.equal(e.tenantId, tenant, `${e.eventType}: tenant`);
      assert.equal(e.actor.subject, 'anonymous');
      assert.equal(e.data?.reason, reason);
      assert.equal(e.data?.ticket, ticket);
      assert.equal(e.data?.action, action, `${e.eventType}: the audited action`);
      assert.match(String(e.data?.target), /ev_ctl/, `${e.eventType}: the target names the job type`);
      assert.match(e.idempotencyKey, new RegExp(`^orch-${e.eventType.replace('.', '\\.')}-.+-\\d+$`));
    }
    const subjects = msgs.filter((m) => (m.body as OrchEvent).job === null).map((m) => m.subject);
    assert.deepEqual(subjects, [
      '_all._.jobtype.paused', '_all._.jobtype.resumed', `${T}._.quota.changed`, `${T}._.quota.changed`,
    ].map((s) => `${subjectPrefixOf(stream)}.${s}`));

    // metrics: what JetStream acknowledged, by type; nothing pending
    await eventually(async () => sample(await cp.metrics.scrape(), 'orchestrator_outbox_pending') === 0, 5000, 'the pending gauge to read 0');
    const text = await cp.metrics.scrape();
    assert.deepEqual(sortedEntries(publishedByType(text)), sortedEntries(countBy(events, (e) => e.eventType)), 'orchestrator_events_published_total by type');
    assert.ok((sample(text, 'orchestrator_outbox_lag_seconds_count') ?? 0) > 0, 'the lag histogram has observations');
  });
});

// ===============================================================================================================

describe('NATS goes away and comes back', { skip: binarySkip }, () => {
  test('jobs keep running while NATS is down (readyz degraded, outbox pending); after its restart every event arrives exactly once', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    await nats.start();
    const stream = streamName();
    const { nc, jsm } = await natsClient(end, nats.url);
    const cp = end(await startTestServer(db.url, { natsUrl: nats.url, events: eventsConfig(stream), maintenance: fastMaintenance() }), (c) => c.stop());
    await busReady(cp.url, jsm, stream);

    const T = 'nd';
    const type = 'nd_work';
    const api = new OrchClient({ apiUrl: cp.url, tenant: T });
    await api.defineJobType(type, { leaseMs: 30_000 }, { reason: 'test setup' });
    const worker: Worker<{ n: number }> = end(await createWorker<{ n: number }>({
      apiUrl: cp.url, tenant: T, jobTypes: [type], concurrency: 2, waitMs: 200, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => {
        await new Promise((r) => setTimeout(r, 20));
        return { n: j.payload.n };
      },
    }), (w) => w.stop());
    const succeeded = async () => (await stateCounts(db.pool, T)).succeeded ?? 0;

    // NATS stops while the worker is busy and the relay is publishing.
    await api.enqueueBatch(Array.from({ length: 20 }, (_, n) => ({ jobType: type, payload: { n } })));
    await eventually(async () => (await succeeded()) >= 5 && (await streamCount(jsm, stream)) > 0, 20_000, 'jobs running and events flowing');
    const before = await streamCount(jsm, stream);
    await nats.stop();
    assert.ok((await succeeded()) < 20, 'NATS stopped in the middle of the run');
    await eventually(async () => (await readyz(cp.url)).body.checks.bus?.ok === false, 10_000, 'readyz to see NATS gone');
    // Work goes on: each job enqueued on its own (one outbox row each), and the worker completes them.
    for (let n = 20; n < 50; n++) await api.enqueue({ jobType: type, payload: { n } });
    await eventually(async () => (await succeeded()) === 50, 20_000, 'the jobs enqueued while NATS is down to succeed');
    const r = await readyz(cp.url);
    assert.equal(r.code, 200, 'readyz answers 200 while NATS is down');
    assert.equal(r.body.status, 'degraded');
    assert.deepEqual([r.body.checks.bus?.ok, r.body.checks.database?.ok], [false, true]);
    const { pending } = await outboxRows(db.pool);
    assert.ok(pending >= 30, `the outbox holds the outage's events (${pending} rows pending)`);
    await eventually(async () => (sample(await cp.metrics.scrape(), 'orchestrator_outbox_pending') ?? 0) > 0, 5000, 'orchestrator_outbox_pending > 0');
    const pendingGauge = sample(await cp.metrics.scrape(), 'orchestrator_outbox_pending')!;
    assert.ok(pendingGauge > 0 && pendingGauge <= pending, `the gauge (${pendingGauge}) counts the pending rows (${pending})`);

    await nats.start();
    const expected = await historyEntries(db.pool, [T]);
    await allPublished(db.pool, jsm, stream, expected);
    await eventually(async () => (await readyz(cp.url)).body.status === 'ready', 10_000, 'readyz ready again');
    await worker.stop();
    assert.equal(await historyEntries(db.pool, [T]), expected, 'no transitions after the count (the worker stopped with nothing to release)');

    const msgs = await readStream<unknown>(nc, stream);
    assert.equal(msgs.length, expected, `exactly one message per history entry (${expected}), ${before} of them before the outage`);
    const events = assertWellFormed(msgs, stream, 'stream');
    await assertEventsMatchHistory(db.pool, T, await jobIdsOf(db.pool, T), events, 'stream');
    await eventually(async () => sample(await cp.metrics.scrape(), 'orchestrator_outbox_pending') === 0, 5000, 'the pending gauge back to 0');
    await deleteStream(jsm, stream);
  });

  test('an event no stream stored is not marked published (the stream deleted under a running server)', {
    skip: binarySkip,
  }, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    await nats.start();
    const stream = streamName();
    const { jsm } = await natsClient(end, nats.url);
    const cp = end(await startTestServer(db.url, { natsUrl: nats.url, events: eventsConfig(stream) }), (c) => c.stop());
    await busReady(cp.url, jsm, stream);
    await cp.ledger.enqueue([{ tenantId: 'gone', jobType: 'g', payload: {} }]);
    await allPublished(db.pool, jsm, stream, 1);
    // The stream goes (an operator deletes it, or NATS restarts without its store) while the server runs.
    await deleteStream(jsm, stream);
    const relay = cp.services.find((s) => s instanceof OutboxRelay);
    assert.ok(relay);
    await cp.ledger.enqueue([{ tenantId: 'gone', jobType: 'g', payload: {} }, { tenantId: 'gone', jobType: 'g', payload: {} }]);
    await runs(relay, 5);
    const rows = await outboxRows(db.pool);
    const stored = await streamCount(jsm, stream);
    assert.ok(rows.pending > 0 || stored === 2,
      `the two new events are neither pending in the outbox nor stored (${rows.pending} rows pending, stream ${stored}): lost, though counted as published`);
  });

  test('a stream JetStream refuses is one error line and a readiness detail naming the stream in the way; a deployment with its own subject prefix shares the server', {
    skip: binarySkip,
  }, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const other = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create({ monitor: true }), (n) => n.destroy());
    await nats.start();
    // Another deployment's stream already covers orch.events.>, so this server's stream cannot be created.
    const { nc, jsm } = end(await natsConnect(nats.url), (c) => c.nc.close());
    await jsm.streams.add({ name: 'SOMEONE_ELSE', subjects: ['orch.events.>'] });
    const connections = async () => (await nats.monitor<{ total_connections: number }>('varz')).total_connections;
    const baseline = await connections();
    // (a process: the connections it may leave open must not keep this one alive)
    const srv = await spawnServer({ ORCH_DATABASE_URL: db.url, ORCH_NATS_URL: nats.url, ORCH_EVENTS_STREAM: streamName(), ORCH_HTTP_PORT: String(await freePort()) });
    end(srv.child, (c) => kill(c, 'SIGKILL'));
    await eventually(async () => (await connections()) >= baseline + 3, 20_000, 'three connection attempts by the server');
    const r = await readyz(srv.url);
    assert.deepEqual([r.code, r.body.status, r.body.checks.bus?.ok], [200, 'degraded', false], 'without its stream the bus is not up');
    assert.match(r.body.checks.bus?.detail ?? '', /stream SOMEONE_ELSE holds orch\.events\.>.*ORCH_EVENTS_SUBJECT_PREFIX/, 'readiness names the stream in the way and the setting');
    const refusals = srv.stderr().split('\n').filter((l) => l.includes('JetStream refused'));
    assert.equal(refusals.length, 1, `one error line for a refusal that does not change, got:\n${refusals.join('\n')}`);
    const { connections: open } = await nats.monitor<{ connections: { name?: string }[] }>('connz');
    const mine = open.filter((c) => c.name === 'orch').length;
    assert.ok(mine <= 1, `${mine} connections of the server are open after three attempts`);

    // A second deployment on the same NATS with a prefix of its own gets its stream and its events.
    const stream = streamName();
    const staging = await spawnServer({
      ORCH_DATABASE_URL: other.url, ORCH_NATS_URL: `${nats.url}, ${nats.url}`, ORCH_EVENTS_STREAM: stream,
      ORCH_EVENTS_SUBJECT_PREFIX: 'staging.orch.events', ORCH_HTTP_PORT: String(await freePort()),
    });
    end(staging.child, (c) => kill(c, 'SIGKILL'));
    await busReady(staging.url, jsm, stream);
    await new OrchClient({ apiUrl: staging.url, tenant: 'stg' }).enqueue({ jobType: 'prefixed', payload: {} });
    await eventually(async () => (await streamCount(jsm, stream)) >= 1, 15_000, 'the staging event stored');
    const [m] = await readStream<OrchEvent>(nc, stream);
    assert.equal(m?.subject, 'staging.orch.events.stg.prefixed.job.enqueued');
  });
});

// ===============================================================================================================

describe('the server dies between commit and publish', { skip: binarySkip }, () => {
  test('SIGKILL with every event committed and none published (NATS down); restart with NATS up: each event delivered once', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    const stream = streamName();
    const env = {
      ORCH_DATABASE_URL: db.url, ORCH_NATS_URL: nats.url, ORCH_EVENTS_STREAM: stream, ORCH_EVENTS_SUBJECT_PREFIX: subjectPrefixOf(stream), ORCH_HTTP_PORT: String(await freePort()),
      ORCH_LEASE_REAPER_INTERVAL_MS: '100',
    };
    const first = await spawnServer(env);
    end(first.child, (c) => kill(c, 'SIGKILL'));
    const r = await readyz(first.url);
    assert.deepEqual([r.code, r.body.status, r.body.checks.bus?.ok], [200, 'degraded', false], 'started without NATS: degraded');

    const T = 'kill1';
    const type = 'k_work';
    const api = new OrchClient({ apiUrl: first.url, tenant: T });
    await api.defineJobType(type, { leaseMs: 30_000, maxAttempts: 2, backoffBaseMs: 0, backoffMaxMs: 0 }, { reason: 'test setup' });
    const jobs = await api.enqueueBatch(Array.from({ length: 12 }, (_, n) => ({ jobType: type, payload: { n }, correlationId: `c-${n}` })));
    await api.cancel(jobs[11]!.id, 'changed my mind');
    const worker = end(await createWorker<{ n: number }>({
      apiUrl: first.url, tenant: T, jobTypes: [type], concurrency: 4, waitMs: 200, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => {
        // every third job fails once, then succeeds: retries are events too
        if (j.payload.n % 3 === 0 && j.attempt === 1) throw new Error('first try fails');
        return { n: j.payload.n };
      },
    }), (w) => w.stop());
    await eventually(async () => {
      const c = await stateCounts(db.pool, T);
      return (c.succeeded ?? 0) + (c.canceled ?? 0) === 12;
    }, 20_000, 'all jobs to end');
    await worker.stop();

    const committed = await historyEntries(db.pool, [T]);
    const rows = await outboxRows(db.pool);
    assert.ok(rows.total > 0 && rows.pending === rows.total, `every outbox row committed and none published (${rows.pending}/${rows.total})`);
    await kill(first.child, 'SIGKILL');

    await nats.start();
    const { nc, jsm } = await natsClient(end, nats.url);
    assert.equal(await streamCount(jsm, stream), 0, 'nothing reached NATS before the kill');
    const second = await spawnServer(env);
    end(second.child, (c) => kill(c, 'SIGKILL'));
    await allPublished(db.pool, jsm, stream, committed);
    assert.equal(await historyEntries(db.pool, [T]), committed);
    const msgs = await readStream<unknown>(nc, stream);
    assert.equal(msgs.length, committed, `each of the ${committed} events once`);
    const events = assertWellFormed(msgs, stream, 'stream');
    await assertEventsMatchHistory(db.pool, T, jobs.map((j) => j.id), events, 'stream');
    assert.ok(events.some((e) => e.eventType === 'job.retry_scheduled') && events.some((e) => e.eventType === 'job.canceled'));
  });

  test('SIGKILL in the middle of publishing a 4,000-event backlog: after the restart the stream holds each event once, in outbox order', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    const stream = streamName();
    const T = 'kill2';
    const type = 'k_backlog';
    const ROWS = 160;
    const PER_ROW = 25;
    const total = ROWS * PER_ROW;

    // The backlog, written while no server runs: 160 enqueue statements of 25 jobs (one outbox row each).
    const ledger = new Ledger(db.pool, defaultConfig);
    for (let r = 0; r < ROWS; r++) {
      await ledger.enqueue(Array.from({ length: PER_ROW }, (_, i) => ({ tenantId: T, jobType: type, payload: { n: r * PER_ROW + i } })));
    }
    assert.equal(await historyEntries(db.pool, [T]), total);
    assert.deepEqual(await outboxRows(db.pool), { total: ROWS, pending: ROWS });

    await nats.start();
    const { nc, jsm } = await natsClient(end, nats.url);
    // 40 rows (1,000 events) per relay run: each run publishes for a while, then marks its rows.
    const env = {
      ORCH_DATABASE_URL: db.url, ORCH_NATS_URL: nats.url, ORCH_EVENTS_STREAM: stream, ORCH_EVENTS_SUBJECT_PREFIX: subjectPrefixOf(stream), ORCH_HTTP_PORT: String(await freePort()),
      ORCH_OUTBOX_RELAY_BATCH_ROWS: '40',
    };
    const child = spawnOrch(end, env);
    // Watch the stream closely (the relay publishes thousands of events a second) and kill the server in the middle
    // of a run (some of its events stored, its rows not marked yet), after the first run marked its rows.
    let atKill = 0;
    for (const deadline = Date.now() + 60_000; ;) {
      const n = await streamCount(jsm, stream);
      if (n > 1000 && n < total && n % 1000 !== 0) {
        child.kill('SIGKILL');
        atKill = n;
        break;
      }
      if (n >= total) assert.fail(`the relay published all ${total} events before the test could kill it in the middle of a run`);
      if (child.exitCode !== null || Date.now() > deadline) assert.fail('the server never started publishing');
      await new Promise((r) => setTimeout(r, 5));
    }
    await kill(child, 'SIGKILL');
    const storedAtKill = await streamCount(jsm, stream);
    const { rows: marked } = await db.pool.query<{ n: string }>(
      `SELECT coalesce(sum(cardinality(t.job_ids)), 0) AS n FROM orch.outbox o JOIN orch.job_transitions t USING (batch_id, tenant_id)
       WHERE o.published_at IS NOT NULL`);
    const markedEvents = Number(marked[0]!.n);
    t.diagnostic(`killed at ${atKill} stored; ${storedAtKill} stored after the kill; ${markedEvents} in rows marked published`);
    assert.ok(storedAtKill < total, `killed part way (${storedAtKill}/${total} stored)`);
    assert.ok(storedAtKill > markedEvents,
      `some events were stored but their rows not marked published (${storedAtKill} stored, ${markedEvents} marked): the restart must publish them again`);

    const second = await spawnServer(env);
    end(second.child, (c) => kill(c, 'SIGKILL'));
    await allPublished(db.pool, jsm, stream, total, 60_000);
    const msgs = await readStream<unknown>(nc, stream);
    assert.equal(await streamCount(jsm, stream), total, 'stream message count');
    assert.equal(msgs.length, total);
    const events = assertWellFormed(msgs, stream, 'stream');
    assert.equal(new Set(events.map((e) => e.eventId)).size, total, 'distinct event ids');
    assert.ok(events.every((e) => e.eventType === 'job.enqueued' && e.tenantId === T && e.job?.type === type));
    const ids = events.map((e) => BigInt(e.job!.id));
    assert.equal(new Set(ids).size, total, 'one event per job');
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `stream order is the enqueue order (seq ${msgs[i]!.seq})`);
    assert.ok(markedEvents > 0, 'the kill came after some rows were marked published: the restart resumes after them');
  });
});

// ===============================================================================================================

describe('SSE: GET /stream', () => {
  test('live events in order; resume with Last-Event-ID without gaps or duplicates; filters; tenant isolation; bad ids; heartbeats', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, {
      events: eventsConfig('UNUSED', { ssePollMs: 50, sseHeartbeatMs: 200 }), workerLostAfterMs: 600_000,
    }), (c) => c.stop());
    const A = 'sse-a';
    const B = 'sse-b';
    const apiA = new OrchClient({ apiUrl: cp.url, tenant: A });
    const apiB = new OrchClient({ apiUrl: cp.url, tenant: B });

    // A new client starts at the tail (the newest event when it connects): probe until the latest probe job's event
    // arrives. Probes commit one after another, so no earlier probe can come after it: it is the baseline.
    const live = await SseClient.open(cp.url, A);
    assert.equal(live.status, 200);
    let probe: { id: string; at: number } | null = null;
    await eventually(async () => {
      if (probe && live.messages.some((m) => m.data.job?.id === probe!.id)) return true;
      if (!probe || Date.now() - probe.at > 500) probe = { id: (await apiA.enqueue({ jobType: 'sse_probe', payload: {} })).id, at: Date.now() };
      return false;
    }, 15_000, 'the first live event');
    const baseline = live.messages.at(-1)!.id;
    assert.equal(live.messages.at(-1)!.data.job?.id, probe!.id);

    // Live: a worker runs 30 jobs; the client goes away part way and comes back with its last id.
    await cp.ledger.jobTypes.define('sse_a', { leaseMs: 30_000 });
    const jobs = await apiA.enqueueBatch(Array.from({ length: 30 }, (_, n) => ({ jobType: 'sse_a', payload: { n } })));
    const worker = end(await createWorker<{ n: number }>({
      connectionString: db.url, jobTypes: ['sse_a'], concurrency: 1, waitMs: 200, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => {
        await new Promise((r) => setTimeout(r, 40));
        return { n: j.payload.n };
      },
    }), (w) => w.stop());
    await live.waitFor((c) => c.after(baseline).filter((m) => m.data.eventType === 'job.succeeded').length >= 5, 'some jobs done, live');
    await live.close();
    assert.equal(live.endedByServer, false);
    const firstPart = live.after(baseline);
    const lastSeen = firstPart.at(-1)!.id;
    const countAtClose = await historyEntries(db.pool, [A]);
    await eventually(async () => (await historyEntries(db.pool, [A])) > countAtClose + 5, 15_000, 'events while the client is away');
    const resumed = await SseClient.open(cp.url, A, { lastEventId: lastSeen });
    assert.equal(resumed.status, 200);
    await eventually(async () => (await stateCounts(db.pool, A)).succeeded === 30, 30_000, 'all 30 jobs to succeed');
    await worker.stop();
    // B's work, and control changes: for every tenant (both see them) and for A only (B must not).
    await cp.ledger.jobTypes.define('sse_b', { leaseMs: 30_000 });
    const bJobs = await apiB.enqueueBatch(Array.from({ length: 3 }, (_, n) => ({ jobType: 'sse_b', payload: { n } })));
    const aOther = await apiA.enqueue({ jobType: 'sse_b', payload: { a: true } });
    await apiA.setDispatch('pause', { jobType: 'sse_b' }, 'everyone', 'INC-9');
    await apiA.setDispatch('resume', { jobType: 'sse_b' }, 'everyone back');
    await apiA.setQuota({ tenantId: A, jobType: 'sse_a' }, { maxActive: 7 }, why('only A', 'OPS-9'));
    // After the baseline: the history of every job but the probes, and the three control changes A can see.
    let expectedAfterBaseline = 3;
    for (const id of [...jobs.map((j) => j.id), aOther.id]) expectedAfterBaseline += (await getHistory(db.pool, A, id)).length;

    // The reference: every event after the baseline, read in one go.
    const all = await SseClient.open(cp.url, A, { lastEventId: baseline });
    await all.waitFor((c) => c.messages.length >= expectedAfterBaseline, `the ${expectedAfterBaseline} events after the baseline`);
    await all.heartbeats(2);
    const ref = all.messages;
    const known = new Set([...jobs.map((j) => j.id), aOther.id]);
    assert.deepEqual(ref.filter((m) => m.data.job !== null && !known.has(m.data.job.id)).map((m) => `${m.event} ${m.data.job?.type} ${m.data.job?.id}`), [],
      'no event of another job after the baseline');
    assert.equal(ref.length, expectedAfterBaseline, 'nothing more');
    assertIncreasing(ref, 'reference');
    await assertEventsMatchHistory(db.pool, A, [...jobs.map((j) => j.id), aOther.id], ref.map((m) => m.data), 'SSE');
    assert.deepEqual(ref.filter((m) => m.data.job === null).map((m) => [m.event, m.data.tenantId]),
      [['jobtype.paused', '*'], ['jobtype.resumed', '*'], ['quota.changed', A]]);

    // The resumed client's union with what the first connection saw: the whole sequence, no gap, no duplicate.
    await resumed.waitFor((c) => c.messages.length > 0 && c.messages.at(-1)!.id === ref.at(-1)!.id, 'the resumed client to catch up');
    const union = [...firstPart, ...resumed.messages];
    assertIncreasing(union, 'first connection then resumed');
    assert.deepEqual(union.map((m) => m.id), ref.map((m) => m.id), 'the two connections together saw exactly the whole sequence');
    assert.ok(firstPart.length > 0 && resumed.messages.length > 0 && cmpId(resumed.messages[0]!.id, lastSeen) > 0);
    assert.deepEqual(union.map((m) => m.data), ref.map((m) => m.data), 'the same envelopes (same event ids) on every read');

    // Filters: each sees exactly its part of the reference.
    const one = jobs[7]!.id;
    for (const [query, keep] of [
      ['?jobType=sse_b', (e: OrchEvent) => e.job?.type === 'sse_b'],
      [`?jobId=${one}`, (e: OrchEvent) => e.job?.id === one],
      ['?eventType=job.succeeded&eventType=jobtype.paused', (e: OrchEvent) => e.eventType === 'job.succeeded' || e.eventType === 'jobtype.paused'],
      ['?jobType=sse_a&eventType=job.leased', (e: OrchEvent) => e.job?.type === 'sse_a' && e.eventType === 'job.leased'],
    ] as const) {
      const want = ref.filter((m) => keep(m.data));
      assert.ok(want.length > 0, `${query} selects something`);
      const c = await SseClient.open(cp.url, A, { query, lastEventId: baseline });
      assert.equal(c.status, 200, `${query}: ${JSON.stringify(c.body)}`);
      await c.waitFor((x) => x.messages.length >= want.length, `${query}: ${want.length} events`);
      await c.heartbeats(2);
      assert.deepEqual(c.messages.map((m) => m.id), want.map((m) => m.id), `${query}: exactly the matching events`);
      await c.close();
    }
    assert.equal(ref.filter((m) => m.data.job?.id === one).length, (await getHistory(db.pool, A, one)).length);

    // Tenant isolation: B sees its own jobs and the changes for every tenant; never A's jobs or A's quota.
    const b = await SseClient.open(cp.url, B, { lastEventId: baseline });
    const expectedB = (await historyEntries(db.pool, [B])) + 2;
    await b.waitFor((c) => c.messages.length >= expectedB, `B's ${expectedB} events`);
    await b.heartbeats(2);
    assert.equal(b.messages.length, expectedB);
    assert.ok(b.messages.every((m) => m.data.tenantId === B || m.data.tenantId === '*'), 'B sees nothing of A');
    await assertEventsMatchHistory(db.pool, B, bJobs.map((j) => j.id), b.messages.map((m) => m.data), 'SSE of B');
    assert.deepEqual(b.messages.filter((m) => m.data.job === null).map((m) => m.event), ['jobtype.paused', 'jobtype.resumed']);
    assert.ok(ref.every((m) => m.data.tenantId !== B), 'A sees nothing of B');
    // B filtering on one of A's jobs: nothing
    const bPeek = await SseClient.open(cp.url, B, { query: `?jobId=${one}`, lastEventId: baseline });
    await bPeek.heartbeats(2);
    assert.deepEqual(bPeek.messages, []);
    await bPeek.close();

    // Bad requests
    for (const bad of ['garbage', '12-34', '1-2-3-4', '-1-2-3', 'x'.repeat(65)]) {
      const c = await SseClient.open(cp.url, A, { lastEventId: bad });
      assert.equal(c.status, 400, `Last-Event-ID ${bad.slice(0, 20)}: 400`);
      assert.ok((c.body as { error?: { code?: string } }).error?.code, 'a JSON error body');
    }
    assert.equal((await SseClient.open(cp.url, A, { query: '?eventType=job.nope' })).status, 400);
    const noTenant = await fetch(`${cp.url}${BASE}/stream`);
    assert.equal(noTenant.status, 400, 'the tenant header is required');
    await noTenant.text();

    // Heartbeats on an idle stream (every 200 ms here)
    const idle = await SseClient.open(cp.url, B);
    await idle.heartbeats(2);
    assert.ok(idle.comments.length >= 3, `comments: ${JSON.stringify(idle.comments)}`);
    assert.equal(idle.endedByServer, false);
    for (const c of [idle, b, all, resumed]) await c.close();
  });

  test('a Last-Event-ID that fits the pattern but not the numbers (seq beyond bigint) is a 400, not an empty 200', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, {}), (c) => c.stop());
    const c = end(await SseClient.open(cp.url, 'x', { lastEventId: '1-9999999999999999999-0' }), (x) => x.close());
    assert.equal(c.status, 400);
  });
});

// ===============================================================================================================

describe('SSE and event types: smaller defects', () => {
  test('a client that got its 200 receives every event committed after that, even when its start query is slow', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, { events: eventsConfig('UNUSED', { ssePollMs: 50, sseHeartbeatMs: 200 }) }), (c) => c.stop());
    const T = 'tail';
    const [first] = await cp.ledger.enqueue([{ tenantId: T, jobType: 'tl', payload: { n: 0 } }]);
    // Hold the stream's start query back with a lock, the way a slow query would, while a transaction that has the lock commits a job.
    const tx = end(await db.pool.connect(), async (c) => c.release());
    await tx.query('BEGIN');
    await tx.query('LOCK orch.outbox IN ACCESS EXCLUSIVE MODE');
    // The 200 waits for the start position, which the lock holds back: the client is not told it is subscribed yet.
    const opening = SseClient.open(cp.url, T);
    const [beforeSubscribed] = await cp.ledger.enqueue([{ tenantId: T, jobType: 'tl', payload: { n: 1 } }], { client: tx });
    await tx.query('COMMIT');
    const sse = end(await opening, (c) => c.close());
    assert.equal(sse.status, 200);
    await sse.waitFor((c) => c.comments.includes('orch event stream'), 'the opening comment');
    const [later] = await cp.ledger.enqueue([{ tenantId: T, jobType: 'tl', payload: { n: 2 } }]);
    await sse.waitFor((c) => c.messages.some((m) => m.data.job?.id === later!.id), 'the later job');
    // (jobs committed before the 200 may come too while a transaction elsewhere on the server is open, in this
    // database or another: the start is the newest event older than every running transaction; docs/events.md)
    const ids = sse.messages.map((m) => m.data.job?.id).filter((id) => id !== beforeSubscribed!.id && id !== first!.id);
    assert.deepEqual(ids, [later!.id], 'the job committed after the 200 is delivered, once');
  });

  test('an operator\'s force release is lease.released whatever its reason text', {
  }, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, { events: eventsConfig('UNUSED', { ssePollMs: 50, sseHeartbeatMs: 200 }) }), (c) => c.stop());
    const T = 'why';
    const [job] = await cp.ledger.enqueue([{ tenantId: T, jobType: 'rl', payload: {} }]);
    await cp.ledger.claim({ workerId: 'w', jobTypes: ['rl'], tenantIds: [T], limit: 1 });
    await new OrchClient({ apiUrl: cp.url, tenant: T }).releaseLeases({ jobIds: [job!.id] }, why('lease_expired'));
    const sse = end(await SseClient.open(cp.url, T, { lastEventId: '0-0-0' }), (c) => c.close());
    await sse.waitFor((c) => c.messages.length >= 3, 'three events');
    const last = sse.messages[2]!.data;
    assert.deepEqual([last.actor.subject, last.job?.reason], ['anonymous', 'lease_expired']);
    assert.equal(last.eventType, 'lease.released');
  });

  test('a claim that leases jobs of two tenants in one batch: each tenant\'s outbox row expands to its own events only (relay and SSE)', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, { events: eventsConfig('UNUSED', { ssePollMs: 50, sseHeartbeatMs: 200 }) }), (c) => c.stop());
    const [a] = await cp.ledger.enqueue([{ tenantId: 'left', jobType: 'xt', payload: {} }]);
    const [b] = await cp.ledger.enqueue([{ tenantId: 'right', jobType: 'xt', payload: {} }]);
    const leases = await cp.ledger.claim({ workerId: 'w', jobTypes: ['xt'], tenantIds: ['left', 'right'], limit: 2 });
    assert.equal(leases.length, 2, 'one claim, one batch, two tenants');
    // The relay reads every tenant's rows at once: each event must keep its own tenant, once. (It reads rows older
    // than every running transaction on the server: with other tests' transactions open, that takes a moment.)
    const all = await eventually(async () => {
      const got = await expand(db.pool, await readOutbox(db.pool, { limit: 100 }));
      return got.length >= 4 ? got : null;
    }, 10_000, 'the four events readable');
    assert.deepEqual(all.map((p) => [p.event.tenantId, p.event.job?.id, p.event.eventType]).sort(), [
      ['left', a!.id, 'job.enqueued'], ['left', a!.id, 'job.leased'], ['right', b!.id, 'job.enqueued'], ['right', b!.id, 'job.leased'],
    ].sort());
    for (const [tenant, own] of [['left', a!.id], ['right', b!.id]] as const) {
      const sse = end(await SseClient.open(cp.url, tenant, { lastEventId: '0-0-0' }), (c) => c.close());
      await sse.waitFor((c) => c.messages.length >= 2, `${tenant}: enqueued and leased`);
      assert.deepEqual(sse.messages.map((m) => [m.data.tenantId, m.data.job?.id, m.data.eventType]),
        [[tenant, own, 'job.enqueued'], [tenant, own, 'job.leased']], `${tenant} sees only its own job`);
    }
  });
});

// ===============================================================================================================

describe('without NATS, and the outbox pruner', () => {
  test('no NATS configured: no relay, readyz ready, events reach the SSE stream and the outbox; the pruner deletes old rows, published or not', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = end(await startTestServer(db.url, { events: eventsConfig('UNUSED', { ssePollMs: 50, sseHeartbeatMs: 200 }) }), (c) => c.stop());
    assert.equal(cp.services.some((s) => s instanceof OutboxRelay), false, 'no relay without NATS');
    const r = await readyz(cp.url);
    assert.deepEqual([r.code, r.body.status, r.body.checks.bus], [200, 'ready', undefined]);

    const T = 'nonats';
    const api = new OrchClient({ apiUrl: cp.url, tenant: T });
    const first = await api.enqueueBatch([{ jobType: 'nn', payload: { n: 1 } }, { jobType: 'nn', payload: { n: 2 } }]);
    const sse = await SseClient.open(cp.url, T, { lastEventId: '0-0-0' });
    await sse.waitFor((c) => c.messages.length >= 2, 'the two enqueue events');
    const [l1, l2] = await cp.ledger.claim({ workerId: 'w', jobTypes: ['nn'], tenantIds: [T], limit: 2 });
    await cp.ledger.complete([{ tenantId: T, jobId: l1!.jobId, leaseId: l1!.leaseId }], 'worker:w');
    await cp.ledger.heartbeat([{ tenantId: T, jobId: l2!.jobId, leaseId: l2!.leaseId, progress: 0.25 }]);
    const expected = (await historyEntries(db.pool, [T])) + 1;
    await sse.waitFor((c) => c.messages.length >= expected, `all ${expected} events on SSE`);
    await sse.heartbeats(2);
    assert.equal(sse.messages.length, expected);
    assertIncreasing(sse.messages, 'SSE');
    await assertEventsMatchHistory(db.pool, T, first.map((j) => j.id), sse.messages.map((m) => m.data), 'SSE without NATS');
    assert.deepEqual(sse.messages.filter((m) => m.event === 'job.progress').map((m) => m.data.data), [{ progress: 0.25, message: null }]);

    // enqueue, claim, complete, progress: four statements, four rows, none published
    const rows = await outboxRows(db.pool);
    assert.deepEqual(rows, { total: 4, pending: 4 }, 'the outbox holds every row, none published');
    assert.equal(publishedByType(await cp.metrics.scrape()).size, 0, 'nothing counted as published');

    const pruner = cp.services.find((s) => s instanceof OutboxPruner);
    assert.ok(pruner, 'the pruner runs without NATS');
    assert.deepEqual(await pruner.runNow(), { count: 0, more: false }, 'nothing is older than the retention');
    // The two oldest rows (the enqueue and the claim) become two days old: without a bus they go, published or not.
    const { rowCount } = await db.pool.query(
      `UPDATE orch.outbox SET at = at - interval '2 days' WHERE (xid, seq) IN (SELECT xid, seq FROM orch.outbox ORDER BY xid, seq LIMIT 2)`);
    assert.equal(rowCount, 2);
    assert.deepEqual(await pruner.runNow(), { count: 2, more: false });
    assert.deepEqual(await outboxRows(db.pool), { total: rows.total - 2, pending: rows.total - 2 });
    // A client resuming from the start gets what the outbox still holds: the newer events, in order.
    const late = await SseClient.open(cp.url, T, { lastEventId: '0-0-0' });
    await late.waitFor((c) => c.messages.length >= 2, 'the remaining events');
    await late.heartbeats(2);
    assert.deepEqual(late.messages.map((m) => m.id), sse.messages.slice(-2).map((m) => m.id), 'the events of the two rows kept (success, progress)');
    await late.close();
    await sse.close();
  });

  test('with a bus configured the pruner keeps pending rows however old, and deletes old ones once published', { skip: binarySkip }, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    const stream = streamName();
    const cp = end(await startTestServer(db.url, { natsUrl: nats.url, events: eventsConfig(stream), maintenance: fastMaintenance() }), (c) => c.stop());
    const pruner = cp.services.find((s) => s instanceof OutboxPruner);
    assert.ok(pruner);
    const T = 'prune';
    await cp.ledger.enqueue(Array.from({ length: 3 }, (_, n) => ({ tenantId: T, jobType: 'pr', payload: { n } })));
    await cp.ledger.claim({ workerId: 'w', jobTypes: ['pr'], tenantIds: [T], limit: 3 });
    const old = await outboxRows(db.pool);
    assert.deepEqual(old, { total: 2, pending: 2 }, 'NATS is down: both rows pending');
    await db.pool.query(`UPDATE orch.outbox SET at = at - interval '2 days'`);
    assert.deepEqual(await pruner.runNow(), { count: 0, more: false }, 'pending rows are kept however old');
    assert.deepEqual(await outboxRows(db.pool), old);

    await nats.start();
    const { nc, jsm } = await natsClient(end, nats.url);
    await allPublished(db.pool, jsm, stream, 6);
    await cp.ledger.enqueue([{ tenantId: T, jobType: 'pr', payload: { n: 3 } }]);
    await allPublished(db.pool, jsm, stream, 7);
    assert.deepEqual(await pruner.runNow(), { count: 2, more: false }, 'the two old rows, now published, go');
    assert.deepEqual(await outboxRows(db.pool), { total: 1, pending: 0 }, 'the recent published row stays');
    const events = assertWellFormed(await readStream<unknown>(nc, stream), stream, 'stream');
    assert.equal(events.length, 7);
    // (occurredAt is the outbox row's time, which this test moved two days back)
    await assertEventsMatchHistory(db.pool, T, await jobIdsOf(db.pool, T), events, 'stream', { times: false });
  });
});

// ===============================================================================================================

describe('relay leadership', { skip: machineSkip }, () => {
  test('two servers, one database, one stream: one relay publishes, nothing twice; stop it and the other takes over within seconds', async (t) => {
    const { end, db, stream, natsUrl, nc, jsm } = await sharedBed(t);
    const start = () => startTestServer(db.url, { natsUrl, events: eventsConfig(stream), maintenance: fastMaintenance() });
    const planes = [end(await start(), (c) => c.stop()), end(await start(), (c) => c.stop())] as const;
    for (const p of planes) await busReady(p.url, jsm, stream);
    const leads = (p: ControlPlane) => p.elector.term !== null && p.services.some((s) => s instanceof OutboxRelay);
    await eventually(async () => planes.some(leads), 5000, 'a leader');
    // Several rounds later there is still exactly one.
    for (let i = 0; i < 2; i++) for (const p of planes) await new Promise((resolve) => p.elector.once('run', resolve));
    assert.deepEqual(planes.map(leads).filter(Boolean), [true], 'exactly one leader');
    const li = leads(planes[0]) ? 0 : 1;
    const [leader, follower] = [planes[li]!, planes[1 - li]!];

    const T = 'lead';
    const type = 'ld_work';
    await leader.ledger.jobTypes.define(type, { leaseMs: 30_000 });
    const workers = await Promise.all(planes.map((p) => createWorker<{ n: number }>({
      apiUrl: p.url, tenant: T, jobTypes: [type], concurrency: 4, waitMs: 200, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => ({ n: j.payload.n }),
    })));
    for (const w of workers) end(w, (x) => x.stop());
    // Work through both servers: each commits transitions, only the leader publishes.
    for (let n = 0; n < 40; n++) await new OrchClient({ apiUrl: planes[n % 2]!.url, tenant: T }).enqueue({ jobType: type, payload: { n } });
    await eventually(async () => (await stateCounts(db.pool, T)).succeeded === 40, 20_000, 'the first 40 jobs');
    const firstRound = await historyEntries(db.pool, [T]);
    await allPublished(db.pool, jsm, stream, firstRound);
    assert.equal(await streamCount(jsm, stream), firstRound, 'each event once');
    const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    assert.equal(sum(publishedByType(await leader.metrics.scrape())), firstRound, 'the leader published every event');
    assert.equal(sum(publishedByType(await follower.metrics.scrape())), 0, 'the follower published none');
    assert.equal(leads(follower), false);

    // The leader stops (its workers first, so nothing is left leased on it); the other relay takes over.
    await workers[li]!.stop();
    const stoppedAt = Date.now();
    await leader.stop();
    assert.equal(leads(leader), false);
    await eventually(async () => leads(follower), 5000, 'the other replica to take over');
    const takeoverMs = Date.now() - stoppedAt;
    assert.ok(takeoverMs < 5000, `took over in ${takeoverMs} ms`);

    const api = new OrchClient({ apiUrl: follower.url, tenant: T });
    await api.enqueueBatch(Array.from({ length: 20 }, (_, n) => ({ jobType: type, payload: { n: 100 + n } })));
    await eventually(async () => (await stateCounts(db.pool, T)).succeeded === 60, 20_000, 'the next 20 jobs');
    await workers[1 - li]!.stop();
    const expected = await historyEntries(db.pool, [T]);
    await allPublished(db.pool, jsm, stream, expected);
    const msgs = await readStream<unknown>(nc, stream);
    assert.equal(msgs.length, expected, `each of the ${expected} events once, across the handover`);
    const events = assertWellFormed(msgs, stream, 'stream');
    await assertEventsMatchHistory(db.pool, T, await jobIdsOf(db.pool, T), events, 'stream');
    assert.equal(sum(publishedByType(await follower.metrics.scrape())), expected - firstRound, 'the new leader published the rest');
  });

  test('the leader\'s connections die three times: it leads again, its services run, and the server still serves', {
  }, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    // A real process (it may end up wedged). NATS is not needed for the election: with an unreachable URL the relay still runs.
    const srv = await spawnServer({ ORCH_DATABASE_URL: db.url, ORCH_NATS_URL: 'nats://127.0.0.1:1', ORCH_DB_POOL_SIZE: '4', ORCH_HTTP_PORT: String(await freePort()) });
    end(srv.child, (c) => kill(c, 'SIGKILL'));
    const leaderBackends = async () => (await db.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orch-leader'`)).rows.map((r) => r.pid);
    await eventually(async () => (await leaderBackends()).length > 0, 5000, 'the leader\'s services connected');
    for (let i = 0; i < 3; i++) {
      const pids = await leaderBackends();
      await db.pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS p(pid)', [pids]);
      await eventually(async () => (await leaderBackends()).some((p) => !pids.includes(p)), 5000, `leader connections again after loss ${i + 1}`);
    }
    const cluster = await new OrchClient({ apiUrl: srv.url }).clusterStatus();
    assert.equal(cluster.leader?.live, true);
    assert.ok(cluster.replicas[0]?.services.includes('outbox-relay'), JSON.stringify(cluster));
    const res = await fetch(`${srv.url}${BASE}/jobs`, {
      method: 'POST', headers: { 'x-tenant-id': 't', 'content-type': 'application/json' }, body: JSON.stringify({ jobType: 'x', payload: {} }),
      signal: AbortSignal.timeout(3000),
    }).catch((err: Error) => err);
    assert.ok(!(res instanceof Error), `the server still serves after its leader connections were cut 3 times (${res instanceof Error ? res.message : ''})`);
    assert.equal(res.status, 201);
  });
});
