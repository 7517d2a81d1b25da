import { readFile } from 'node:fs/promises';

/**
 * The per-run log the chaos workers append (test/fixtures/chaos-worker.ts):
 * one "start" line when a handler starts, one "end" line when it returns.
 * A run is one lease; a worker killed mid-run leaves its runs without an end.
 */
export interface RunLine { k: 'start' | 'end'; job: string; lease: string; worker: string; at: number; long?: boolean; aborted?: boolean }

export interface Run {
  job: string;
  lease: string;
  worker: string;
  long: boolean;
  start: number;
  /** When the handler returned; null while it runs, or forever when its worker was killed. */
  end: number | null;
  aborted: boolean;
}

/** The runs of the log, by lease id. A last line cut short by a kill is ignored (every write is one whole line). */
export async function readRuns(file: string): Promise<Map<string, Run>> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err)));
  const runs = new Map<string, Run>();
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    let line: RunLine;
    try {
      line = JSON.parse(raw) as RunLine;
    } catch {
      continue;
    }
    if (line.k === 'start') {
      if (runs.has(line.lease)) throw new Error(`lease ${line.lease} started twice in the run log`);
      runs.set(line.lease, { job: line.job, lease: line.lease, worker: line.worker, long: line.long === true, start: line.at, end: null, aborted: false });
    } else {
      const run = runs.get(line.lease);
      if (!run) throw new Error(`lease ${line.lease} ended without starting`);
      run.end = line.at;
      run.aborted = line.aborted === true;
    }
  }
  return runs;
}

/** What ended a lease other than its holder's own ack or release: the reaper, an operator (from the history). */
export interface LeaseTaken { actor: string; reason: string | null }

/**
 * Runs of one job that overlap in time although the earlier run's lease was
 * never taken from its holder: the job ran twice while its worker kept its
 * lease (heartbeating). A run of a killed worker counts as running until the
 * kill (`killedAt`); a run still without an end overlaps everything after it.
 */
export function illegalOverlaps(runs: Iterable<Run>, taken: Map<string, LeaseTaken>, killedAt: Map<string, number>): string[] {
  const byJob = new Map<string, Run[]>();
  for (const r of runs) byJob.set(r.job, [...(byJob.get(r.job) ?? []), r]);
  const problems: string[] = [];
  for (const [job, list] of byJob) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 0; i < list.length; i++) {
      const first = list[i]!;
      const firstEnd = first.end ?? killedAt.get(first.worker) ?? Infinity;
      for (const second of list.slice(i + 1)) {
        if (second.start >= firstEnd) continue;
        const t = taken.get(first.lease);
        if (t && t.actor !== `worker:${first.worker}`) continue;
        problems.push(`job ${job}: run of lease ${first.lease} on ${first.worker} (${first.start}..${first.end ?? 'no end'}) overlaps ` +
          `lease ${second.lease} on ${second.worker} (from ${second.start}), and the first lease was never reaped or released`);
      }
    }
  }
  return problems;
}

/**
 * Jobs run twice although their worker kept heartbeating: the stronger rule for
 * workers that were never killed (a live worker heartbeats every lease in its
 * hands, through server restarts and outages, and keeps them all). Problems: a
 * lease of such a worker taken from it, and a job run more than once by them.
 */
export function keptLeasesLost(runs: Iterable<Run>, taken: Map<string, LeaseTaken>, killed: Set<string>): string[] {
  const problems: string[] = [];
  const liveRuns = new Map<string, Run[]>();
  for (const r of runs) {
    if (killed.has(r.worker)) continue;
    liveRuns.set(r.job, [...(liveRuns.get(r.job) ?? []), r]);
    const t = taken.get(r.lease);
    if (t && t.actor !== `worker:${r.worker}`) {
      problems.push(`job ${r.job}: lease ${r.lease} of live worker ${r.worker} (run from ${r.start}) taken by ${t.actor} (${t.reason ?? 'no reason'})`);
    }
  }
  for (const [job, list] of liveRuns) {
    if (list.length > 1) problems.push(`job ${job} ran ${list.length} times on live workers: ${list.map((r) => `${r.worker}@${r.start}`).join(', ')}`);
  }
  return problems;
}
