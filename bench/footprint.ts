/**
 * What one job costs the database, for docs/scaling.md: WAL bytes, table and
 * index bytes, and commits, measured around an in-process drain of `jobs`
 * no-op jobs (enqueue in batches of 10,000, claim and ack in batches of 500).
 */
import { DRAIN_WORKER, drainWith, prepareDrain } from './ours.ts';
import { withClient } from './anchors/util.ts';

export interface Footprint {
  jobs: number;
  jobsPerSec: number;
  /** WAL written by enqueue + drain, per job. */
  walBytesPerJob: number;
  /** orch tables and indexes (job rows, history, outbox, counts) per finished job. */
  storedBytesPerJob: number;
  /** Transactions committed on the database during the drain, per second and per job. */
  commitsPerSec: number;
  commitsPerJob: number;
}

async function sample(url: string): Promise<{ lsn: string; bytes: number; commits: number }> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ lsn: string; bytes: string; commits: string }>(`
      SELECT pg_current_wal_lsn()::text AS lsn,
        (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'orch' AND c.relkind = 'r')::text AS bytes,
        (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())::text AS commits`);
    return { lsn: rows[0]!.lsn, bytes: Number(rows[0]!.bytes), commits: Number(rows[0]!.commits) };
  });
}

async function walBetween(url: string, from: string, to: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query<{ d: string }>('SELECT pg_wal_lsn_diff($2, $1)::text AS d', [from, to])).rows[0]!.d));
}

export async function footprint(url: string, jobs: number): Promise<Footprint> {
  const empty = await sample(url);
  await prepareDrain(url, jobs);
  const enqueued = await sample(url);
  const drain = await drainWith(jobs, { ...DRAIN_WORKER, connectionString: url }, 1);
  // backends report their commit counts to the statistics at most once a second
  await new Promise((r) => setTimeout(r, 1500));
  const done = await sample(url);
  const seconds = jobs / drain.jobsPerSec;
  // enqueue and drain (and the schema's re-creation before them, negligible beside 10,000s of jobs)
  const wal = await walBetween(url, empty.lsn, done.lsn);
  return {
    jobs, jobsPerSec: drain.jobsPerSec,
    walBytesPerJob: Math.round(wal / jobs),
    storedBytesPerJob: Math.round(done.bytes / jobs),
    commitsPerSec: Math.round((done.commits - enqueued.commits) / seconds),
    commitsPerJob: Math.round(((done.commits - enqueued.commits) / jobs) * 1000) / 1000,
  };
}
