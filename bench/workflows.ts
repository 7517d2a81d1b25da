/**
 * A workflow of one root, `width` children and one join (fan-out, fan-in),
 * run by an in-process worker: how long the submission takes, the whole
 * run, and the time from the last child's completion to the join's start
 * (the release of a dependent: one statement, no polling).
 */
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { Workflows } from '../src/workflows/workflows.ts';
import { DRAIN_WORKER, reset } from './ours.ts';

export interface FanResult { width: number; submitMs: number; runMs: number; joinAfterLastChildMs: number }

const TYPE = 'bench_fan';

export async function fanOutFanIn(connectionString: string, width: number): Promise<FanResult> {
  await reset(connectionString);
  const pool = createPool(connectionString, 4);
  try {
    const workflows = new Workflows(pool, new Ledger(pool, defaultConfig));
    let joined!: () => void;
    const joinRan = new Promise<void>((r) => (joined = r));
    const worker = await createWorker({
      ...DRAIN_WORKER, connectionString, jobTypes: [TYPE], handleSignals: false,
      handler: (job) => {
        if ((job.payload as { join?: boolean } | null)?.join) joined();
        return { ok: true };
      },
    });
    const start = performance.now();
    const { workflow } = await workflows.submit('bench', {
      name: 'fan',
      steps: [
        { name: 'root', jobType: TYPE },
        ...Array.from({ length: width }, (_, i) => ({ name: `c${i}`, jobType: TYPE, dependsOn: ['root'] })),
        { name: 'join', jobType: TYPE, payload: { join: true }, dependsOn: Array.from({ length: width }, (_, i) => `c${i}`) },
      ],
    }, 'bench');
    const submitMs = performance.now() - start;
    await joinRan;
    const runMs = performance.now() - start;
    await worker.stop();
    const { rows } = await pool.query<{ gap_ms: number }>(
      `SELECT extract(epoch FROM (SELECT started_at FROM orch.jobs WHERE workflow_id = $1 AND step_name = 'join')
         - (SELECT max(finished_at) FROM orch.jobs WHERE workflow_id = $1 AND step_name LIKE 'c%')) * 1000 AS gap_ms`, [workflow.id]);
    return { width, submitMs: Math.round(submitMs), runMs: Math.round(runMs), joinAfterLastChildMs: Math.round(Number(rows[0]!.gap_ms) * 10) / 10 };
  } finally {
    await pool.end();
  }
}
