/** Result shapes shared by every anchor (graphile-worker, pg-boss) and by bench/run.ts. */

export interface DrainResult {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
}

export interface EnqueueResult {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
}

export interface LatencyResult {
  ratePerSec: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
}

/** The module shape of bench/anchors/graphile.ts and bench/anchors/pgboss.ts. */
export interface Anchor {
  drain(connectionString: string, jobs: number): Promise<DrainResult>;
  batchEnqueue(connectionString: string, jobs: number, batchSize: number): Promise<EnqueueResult>;
  dispatchLatency(connectionString: string, ratePerSec: number, durationSec: number): Promise<LatencyResult>;
}
