import { randomUUID } from 'node:crypto';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { natsServers } from '../events/bus.ts';
import { sample } from '../metrics/exposition.ts';
import type { OrchEvent } from '../events/envelope.ts';
import { OrchClient } from '../sdk/client.ts';
import { createWorker } from '../sdk/worker.ts';

/** The job type smoke runs; keep it out of real workers' job type lists. */
export const SMOKE_JOB_TYPE = 'orch-smoke';

export interface SmokeOptions {
  apiUrl: string;
  token?: string;
  tenant: string;
  /** When set, the job's job.succeeded event must arrive on NATS. */
  natsUrl?: string;
  /** The orchestrator's ORCH_EVENTS_SUBJECT_PREFIX. */
  subjectPrefix: string;
  timeoutMs: number;
}

export interface SmokeResult {
  ready: boolean;
  /** Why not, when not ready. */
  reason: string | null;
  jobId: string | null;
  /** The steps that passed, in order. */
  steps: string[];
}

/**
 * End to end on the running stack: enqueue one job of the smoke type, a
 * remote worker (over the HTTP bridge, as real workers run) completes it, its
 * job.succeeded event arrives on NATS when configured, and /metrics counts it.
 */
export async function runSmoke(o: SmokeOptions): Promise<SmokeResult> {
  const steps: string[] = [];
  const deadline = Date.now() + o.timeoutMs;
  let jobId: string | null = null;
  let nc: NatsConnection | null = null;
  const client = new OrchClient({ apiUrl: o.apiUrl, token: o.token, tenant: o.tenant });
  const worker = await createWorker({
    jobTypes: [SMOKE_JOB_TYPE], apiUrl: o.apiUrl, token: o.token, tenant: o.tenant, concurrency: 1, waitMs: 1000,
    handleSignals: false, workerId: `orch-smoke-${process.pid}`, handler: (job) => ({ echoed: job.payload }),
  });
  try {
    const ready = await fetch(new URL('/readyz', o.apiUrl), { signal: AbortSignal.timeout(o.timeoutMs) });
    if (!ready.ok) throw new Error(`/readyz answered ${ready.status}`);
    steps.push('orchestrator ready');
    const before = await succeededCount(o.apiUrl, o.tenant);

    let event: Promise<OrchEvent> | null = null;
    if (o.natsUrl) {
      nc = await connect({ servers: natsServers(o.natsUrl), timeout: Math.min(5000, o.timeoutMs), name: 'orch-smoke', reconnect: false });
      event = nextEvent(nc.subscribe(`${o.subjectPrefix}.${o.tenant}.${SMOKE_JOB_TYPE}.job.succeeded`), () => jobId);
      // awaited only after the job ends: a failure before then must not leave it rejecting unheard
      event.catch(() => undefined);
      await nc.flush();
    }

    const nonce = randomUUID();
    const enqueued = await client.enqueue({ jobType: SMOKE_JOB_TYPE, payload: { nonce }, maxAttempts: 1 });
    jobId = enqueued.id;
    steps.push(`enqueued job ${jobId}`);

    const job = await until(deadline, 'the job did not finish', async () => {
      const { job } = await client.getJob(jobId!);
      return ['succeeded', 'failed', 'dead_lettered', 'canceled', 'timed_out'].includes(job.state) ? job : null;
    });
    if (job.state !== 'succeeded') throw new Error(`the job ended ${job.state}`);
    const echoed = (job.result as { echoed?: { nonce?: string } } | null)?.echoed?.nonce;
    if (echoed !== nonce) throw new Error('the job succeeded with a result that is not the worker\'s');
    steps.push('a worker completed it');

    if (event) {
      const e = await withDeadline(event, deadline, 'no job.succeeded event on NATS');
      steps.push(`event ${e.eventId} arrived on NATS`);
    }

    await until(deadline, '/metrics did not count the job', async () => (await succeededCount(o.apiUrl, o.tenant)) > before || null);
    steps.push('metrics counted it');
    return { ready: true, reason: null, jobId, steps };
  } catch (err) {
    return { ready: false, reason: (err as Error).message, jobId, steps };
  } finally {
    await worker.stop();
    await nc?.close().catch(() => undefined);
  }
}

/** orchestrator_jobs_total{tenant, job_type=orch-smoke, outcome=succeeded} from the /metrics text. */
async function succeededCount(apiUrl: string, tenant: string): Promise<number> {
  const res = await fetch(new URL('/metrics', apiUrl));
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return sample(await res.text(), 'orchestrator_jobs_total', { tenant, job_type: SMOKE_JOB_TYPE, outcome: 'succeeded' }) ?? 0;
}

async function nextEvent(sub: Subscription, jobId: () => string | null): Promise<OrchEvent> {
  for await (const msg of sub) {
    const e = msg.json<OrchEvent>();
    if (e.job?.id === jobId()) {
      sub.unsubscribe();
      return e;
    }
  }
  throw new Error('the NATS subscription closed before the event arrived');
}

async function until<T>(deadline: number, failure: string, probe: () => Promise<T | null>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(failure);
    await sleep(100);
  }
}

/** `p`, or a rejection with `failure` at the deadline (a time in ms); the timer never outlives the race. */
export async function withDeadline<T>(p: Promise<T>, deadline: number, failure: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(failure)), Math.max(0, deadline - Date.now()))))]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (msDelay: number) => new Promise((r) => setTimeout(r, Math.max(0, msDelay)));
