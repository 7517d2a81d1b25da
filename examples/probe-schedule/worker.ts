// The synthetic probe as a scheduled job: a worker for jobs of type "orch-probe" that runs the
// same checks as `orch probe` (src/synthetic/probe.ts), writes out/orchestrator-probe/status.txt
// (relative to the directory it runs in) and completes the job with the probe's report.
// A schedule enqueues one such job a day; see examples/probe-schedule/README.md.
//
//   node --import tsx examples/probe-schedule/worker.ts [--out FILE] [--timeout 5s] [--job-type orch-probe]
//
// Settings come from the same environment as `orch probe` and the CLI: ORCH_API_URL, ORCH_TOKEN,
// ORCH_TENANT, ORCH_DATABASE_URL, ORCH_MONGO_URL, ORCH_NATS_URL, ORCH_EVENTS_STREAM.
import { parseArgs } from 'node:util';
import ms from 'ms';
import { createWorker } from '../../src/sdk/index.ts';
import { PROBE_STATUS_FILE } from '../../src/synthetic/status-file.ts';

const USAGE = `usage: node --import tsx examples/probe-schedule/worker.ts [options]

Handles "orch-probe" jobs: runs the checks of \`orch probe\` (PostgreSQL, MongoDB and NATS when
configured, the orchestrator's /readyz), writes the status file and completes the job with the
report. A probe that finds a failing check still completes the job (the report says ok: false),
so one bad day does not dead-letter the job or stop the schedule's watermark.

options:
  --api-url <url>      orchestrator API (env ORCH_API_URL, default http://127.0.0.1:8080)
  --token <token>      bearer token with scope orch:worker (env ORCH_TOKEN)
  --tenant <tenant>    tenant whose jobs to run (env ORCH_TENANT, default "default")
  --job-type <type>    job type to handle (default orch-probe)
  --out <file>         status file (default ${PROBE_STATUS_FILE})
  --timeout <dur>      per check, as for \`orch probe --timeout\` (default 5s)
  --help               this text
`;

const { values: o } = parseArgs({
  options: {
    'api-url': { type: 'string', default: process.env.ORCH_API_URL ?? 'http://127.0.0.1:8080' },
    token: { type: 'string', default: process.env.ORCH_TOKEN },
    tenant: { type: 'string', default: process.env.ORCH_TENANT ?? 'default' },
    'job-type': { type: 'string', default: 'orch-probe' },
    out: { type: 'string', default: PROBE_STATUS_FILE },
    timeout: { type: 'string', default: '5s' },
    help: { type: 'boolean', default: false },
  },
});

if (o.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const apiUrl = o['api-url'];
const jobType = o['job-type'];
const outFile = o.out;
const timeoutMs = /^\d+$/.test(o.timeout) ? Number(o.timeout) : ms(o.timeout as ms.StringValue);
if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  process.stderr.write(`--timeout: "${o.timeout}" is not a duration (e.g. 5s, 10s)\n`);
  process.exit(1);
}

// The probe loads the PostgreSQL and NATS drivers: only once we know we will run.
const { formatStatus, runProbe, writeStatus } = await import('../../src/synthetic/probe.ts');

/** What the schedule may put in the payload (e.g. {"tick": "{{tick}}"}); nothing is required. */
interface ProbePayload { tick?: string | null }

const worker = await createWorker<ProbePayload | null>({
  apiUrl,
  token: o.token,
  tenant: o.tenant,
  jobTypes: [jobType],
  concurrency: 1,
  async handler(job) {
    const report = await runProbe({
      databaseUrl: process.env.ORCH_DATABASE_URL || undefined,
      mongoUrl: process.env.ORCH_MONGO_URL || undefined,
      natsUrl: process.env.ORCH_NATS_URL || undefined,
      eventStream: process.env.ORCH_EVENTS_STREAM || 'ORCH_EVENTS',
      apiUrl,
      timeoutMs,
    });
    await writeStatus(report, outFile);
    process.stdout.write(`job ${job.id} (tick ${job.payload?.tick ?? '-'}): probe ${report.ok ? 'ok' : 'FAILED'}, wrote ${outFile}\n${formatStatus(report)}`);
    // stored as the job's result: `orch jobs show <id>` shows it
    return { ok: report.ok, at: report.at, statusFile: outFile, tick: job.payload?.tick ?? null, checks: report.checks };
  },
});
worker.on('failed', (lease, err) => process.stderr.write(`job ${lease.jobId} failed: ${(err as Error).message}\n`));
process.stdout.write(`worker ${worker.id}: waiting for ${jobType} jobs of tenant ${o.tenant} on ${apiUrl} (Ctrl-C stops it gracefully)\n`);
