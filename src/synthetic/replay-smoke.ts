import { freePort } from '../ledger/embedded.ts';
import type { OrchEvent } from '../events/envelope.ts';
import type { Lease, LeaseRef } from '../ledger/types.ts';
import { OrchClient } from '../sdk/client.ts';
import { HttpTransport } from '../sdk/transport.ts';
import { spawnOrchServer } from './server-process.ts';
import { runSmoke, type SmokeResult } from './smoke.ts';
import { DEFAULT_EVENT_SUBJECT_PREFIX } from '../wire.ts';

/** Job types the drill writes; kept apart from the smoke type and real work. */
const HELD = 'orch-replay-smoke';
const DOOMED = 'orch-replay-smoke-dlq';

export interface ReplaySmokeOptions {
  /** Env of the orchestrator it starts: ORCH_DATABASE_URL (else embedded under ORCH_DATA_DIR), ORCH_NATS_URL, ... */
  env: NodeJS.ProcessEnv;
  tenant: string;
  /** Jobs left queued, jobs held mid-lease and jobs dead-lettered across the restart. */
  queued: number;
  leased: number;
  deadLettered: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export interface ReplaySmokeResult {
  ok: boolean;
  problems: string[];
  smoke: SmokeResult | null;
}

/**
 * Starts `orch serve` (its own process, on the given database, or an
 * embedded PostgreSQL it owns), writes queued jobs, jobs mid-lease, DLQ
 * entries and their events, stops it (and so the embedded PostgreSQL), starts
 * it again, and checks that every job, lease, DLQ entry and outbox event is as
 * it was; then runs smoke, and finally cleans up what it wrote (completes the
 * leases, cancels the queued jobs, snapshots and clears its DLQ entries).
 */
export async function runReplaySmoke(o: ReplaySmokeOptions): Promise<ReplaySmokeResult> {
  const problems: string[] = [];
  const port = String(await freePort());
  const apiUrl = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = { ...o.env, ORCH_HTTP_PORT: port };
  const client = new OrchClient({ apiUrl, token: env.ORCH_TOKEN, tenant: o.tenant });
  const bridge = new HttpTransport({ apiUrl, token: env.ORCH_TOKEN, tenant: o.tenant });
  const workerId = `orch-replay-smoke-${process.pid}`;
  const why = { reason: 'replay-smoke drill' };

  // the same CLI this process runs (the built one, or the sources through tsx)
  const cli = [...process.execArgv, process.argv[1]!];
  let server = await spawnOrchServer(cli, env, o.timeoutMs);
  try {
    o.log(`orchestrator up at ${apiUrl}`);
    await client.defineJobType(HELD, { leaseMs: 10 * 60_000 }, why);
    await client.defineJobType(DOOMED, { leaseMs: 10 * 60_000, maxAttempts: 1 }, why);
    const jobIds = new Set<string>();
    const tap = await EventTap.open(apiUrl, o.tenant, env.ORCH_TOKEN, jobIds);
    const jobs = await client.enqueueBatch([
      ...Array.from({ length: o.queued + o.leased }, (_, i) => ({ jobType: HELD, payload: { i } })),
      ...Array.from({ length: o.deadLettered }, (_, i) => ({ jobType: DOOMED, payload: { i } })),
    ]);
    for (const j of jobs) jobIds.add(j.id);
    const leases = await claim(bridge, workerId, HELD, o.leased);
    const doomed = await claim(bridge, workerId, DOOMED, o.deadLettered);
    await bridge.fail(doomed.map((l) => ({ ...ref(l), error: { class: 'ReplaySmoke', message: 'dead-lettered on purpose' } })));
    const before = await ledgerState(client, jobs.map((j) => j.id));
    // one event per enqueue and per claim, one more per dead-lettering
    const expected = jobs.length + leases.length + 2 * doomed.length;
    const arrived = await tap.waitFor(expected, o.timeoutMs);
    await tap.close();
    if (!arrived) throw new Error(`only ${tap.ids.length} of ${expected} events reached the SSE stream before the restart`);
    const events = tap.ids;
    o.log(`wrote ${jobs.length} jobs: ${count(before, 'queued')} queued, ${count(before, 'leased')} leased, ${count(before, 'dead_lettered')} dead-lettered; ${events.length} events`);

    await server.stop();
    o.log('orchestrator stopped (with the embedded PostgreSQL, when it owns one); starting it again');
    server = await spawnOrchServer(cli, env, o.timeoutMs);

    const after = await ledgerState(client, jobs.map((j) => j.id));
    for (const [id, was] of before) {
      const now = after.get(id);
      if (now !== was) problems.push(`job ${id} was ${was}, is ${now ?? 'missing'} after the restart`);
    }
    const { leases: held } = await client.listLeases({ jobType: HELD, workerId, limit: 1000 });
    const heldIds = new Set(held.map((l) => l.leaseId));
    for (const l of leases) if (!heldIds.has(l.leaseId)) problems.push(`lease ${l.leaseId} of job ${l.jobId} did not survive`);
    const dlq = new Set((await client.listDeadLetters({ jobType: DOOMED, limit: 1000 })).entries.map((e) => e.job.id));
    for (const l of doomed) if (!dlq.has(l.jobId)) problems.push(`DLQ entry ${l.jobId} did not survive`);
    const replayed = await EventTap.open(apiUrl, o.tenant, env.ORCH_TOKEN, jobIds, justBefore(events[0]!));
    await replayed.waitFor(events.length, Math.min(o.timeoutMs, 10_000));
    await replayed.close();
    const kept = new Set(replayed.ids);
    const lost = events.filter((id) => !kept.has(id));
    if (lost.length > 0) problems.push(`${lost.length} of ${events.length} events are gone from the outbox`);
    const beats = await bridge.heartbeat(leases.map(ref));
    if (beats.some((b) => b.status !== 'ok')) problems.push('a lease held across the restart refused its holder\'s heartbeat');
    o.log(`after the restart: ${problems.length === 0 ? 'every job, lease, DLQ entry and event is there' : `${problems.length} problems`}`);

    const smoke = await runSmoke({ apiUrl, token: env.ORCH_TOKEN, tenant: o.tenant, natsUrl: env.ORCH_NATS_URL || undefined,
      subjectPrefix: env.ORCH_EVENTS_SUBJECT_PREFIX || DEFAULT_EVENT_SUBJECT_PREFIX, timeoutMs: o.timeoutMs });
    if (!smoke.ready) problems.push(`smoke: NOT READY: ${smoke.reason}`);

    // leave nothing behind: the held jobs complete, the queued ones are canceled, the DLQ entries are cleared after a snapshot
    await bridge.complete(leases.map((l) => ({ ...ref(l), result: { replaySmoke: true } })));
    for (const [id, state] of after) if (state === 'queued') await client.cancel(id, why.reason);
    if (doomed.length > 0) {
      const snapshot = await client.snapshotDlq({ jobIds: doomed.map((l) => l.jobId) });
      await client.clearDlq(snapshot.id, why);
    }
    return { ok: problems.length === 0, problems, smoke };
  } finally {
    await server.stop();
  }
}

async function claim(bridge: HttpTransport, workerId: string, jobType: string, n: number): Promise<Lease[]> {
  const leases: Lease[] = [];
  while (leases.length < n) {
    const got = await bridge.claim({ workerId, jobTypes: [jobType], limit: n - leases.length, waitMs: 1000 }, AbortSignal.timeout(10_000));
    if (got.length === 0) throw new Error(`could not claim ${n} ${jobType} jobs (got ${leases.length})`);
    leases.push(...got);
  }
  return leases;
}

async function ledgerState(client: OrchClient, ids: string[]): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  for (const id of ids) states.set(id, (await client.getJob(id)).job.state);
  return states;
}

const ref = (l: Lease): LeaseRef => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId });
const count = (states: Map<string, string>, state: string) => [...states.values()].filter((s) => s === state).length;

/** Reads a tenant's SSE stream in the background, keeping the ids of the events of the given jobs. */
class EventTap {
  readonly ids: string[] = [];
  private readonly controller = new AbortController();
  private waiter: (() => void) | null = null;
  private readonly done: Promise<void>;

  private constructor(body: ReadableStream<Uint8Array>, private readonly jobIds: Set<string>) {
    this.done = this.read(body).catch(() => undefined);
  }

  /** Resolves once the server fixed the stream's start: every event committed after that reaches the tap. */
  static async open(apiUrl: string, tenant: string, token: string | undefined, jobIds: Set<string>, from?: string): Promise<EventTap> {
    const headers: Record<string, string> = { 'x-tenant-id': tenant, accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) };
    if (from) headers['last-event-id'] = from;
    const controller = new AbortController();
    const res = await fetch(`${apiUrl}/api/v1/orchestrator/stream`, { headers, signal: controller.signal });
    if (!res.ok || !res.body) throw new Error(`event stream answered ${res.status}`);
    const tap = new EventTap(res.body, jobIds);
    tap.controller.signal.addEventListener('abort', () => controller.abort());
    return tap;
  }

  /** Waits until `n` events arrived; false when they did not within the time. */
  async waitFor(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.ids.length < n && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.ids.length >= n;
  }

  async close(): Promise<void> {
    this.controller.abort();
    await this.done;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    let id = '';
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.startsWith('id: ')) id = line.slice(4);
        if (line.startsWith('data: ') && this.jobIds.has((JSON.parse(line.slice(6)) as OrchEvent).job?.id ?? '')) {
          this.ids.push(id);
          this.waiter?.();
        }
      }
    }
  }
}

/** An SSE id just before `id` (ids are xid-seq-index): the stream resumes with `id` itself. */
function justBefore(id: string): string {
  const [xid, seq, index] = id.split('-').map(BigInt) as [bigint, bigint, bigint];
  return index > 0n ? `${xid}-${seq}-${index - 1n}` : `${xid}-${seq - 1n}-999999999`;
}
