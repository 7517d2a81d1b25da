import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { PROBE_STATUS_FILE } from '../../synthetic/status-file.ts';
import { duration, integer, type GlobalOptions } from './jobs.ts';
import { DEFAULT_EVENT_SUBJECT_PREFIX } from '../../wire.ts';

/** `orch probe` and `orch smoke`: what scripts/orchestrator/probe.sh and smoke.sh run. */
export function registerSyntheticCommands(program: Command): void {
  program.command('probe')
    .description(`ping PostgreSQL, MongoDB and NATS (each when configured) and the orchestrator's /readyz; writes ${PROBE_STATUS_FILE}; exit 1 when a configured check fails`)
    .addOption(new Option('--database-url <url>', 'PostgreSQL to ping').env('ORCH_DATABASE_URL'))
    .addOption(new Option('--mongo-url <url>', 'MongoDB to ping').env('ORCH_MONGO_URL'))
    .addOption(new Option('--nats-url <url>', 'NATS to publish to and read JetStream from').env('ORCH_NATS_URL'))
    .addOption(new Option('--stream <name>', 'the event stream to report on').env('ORCH_EVENTS_STREAM').default('ORCH_EVENTS'))
    .option('--out <file>', 'where to write the status lines', PROBE_STATUS_FILE)
    .option('--timeout <duration>', 'per check', '5s')
    .action(async (o: { databaseUrl?: string; mongoUrl?: string; natsUrl?: string; stream: string; out: string; timeout: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { formatStatus, runProbe, writeStatus } = await import('../../synthetic/probe.ts');
      const report = await runProbe({
        databaseUrl: o.databaseUrl || undefined, mongoUrl: o.mongoUrl || undefined, natsUrl: o.natsUrl || undefined,
        eventStream: o.stream, apiUrl: g.apiUrl, timeoutMs: duration(o.timeout, '--timeout'),
      });
      await writeStatus(report, o.out);
      process.stdout.write(g.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      if (!report.ok) process.exitCode = 1;
    });

  program.command('smoke')
    .description('end to end: enqueue an orch-smoke job, a worker completes it, its event arrives on NATS (when configured), metrics count it; prints READY or NOT READY: <reason>')
    .addOption(new Option('--nats-url <url>', 'check the job\'s event on this NATS').env('ORCH_NATS_URL'))
    .addOption(new Option('--subject-prefix <prefix>', 'the orchestrator\'s event subject prefix').env('ORCH_EVENTS_SUBJECT_PREFIX').default(DEFAULT_EVENT_SUBJECT_PREFIX))
    .option('--timeout <duration>', 'for the whole run', '30s')
    .action(async (o: { natsUrl?: string; subjectPrefix: string; timeout: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { runSmoke } = await import('../../synthetic/smoke.ts');
      const r = await runSmoke({ apiUrl: g.apiUrl, token: g.token, tenant: g.tenant, natsUrl: o.natsUrl || undefined, subjectPrefix: o.subjectPrefix, timeoutMs: duration(o.timeout, '--timeout') });
      if (g.output === 'json') process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      else process.stdout.write(`${r.steps.map((s) => `  ok  ${s}\n`).join('')}${r.ready ? 'READY' : `NOT READY: ${r.reason}`}\n`);
      if (!r.ready) process.exitCode = 1;
    });

  program.command('replay-smoke')
    .description('start an orchestrator, write queued jobs, leases and DLQ entries, restart it (and its embedded PostgreSQL), check all survived, run smoke, clean up')
    .option('--data-dir <dir>', 'embedded PostgreSQL data directory when ORCH_DATABASE_URL is unset (default: a new temporary one)')
    .option('--queued <n>', 'jobs left queued', '20')
    .option('--leased <n>', 'jobs held mid-lease across the restart', '5')
    .option('--dead-lettered <n>', 'DLQ entries', '3')
    .option('--timeout <duration>', 'for each start and wait', '90s')
    .action(async (o: { dataDir?: string; queued: string; leased: string; deadLettered: string; timeout: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const counts = { queued: integer(o.queued, '--queued'), leased: integer(o.leased, '--leased'), deadLettered: integer(o.deadLettered, '--dead-lettered') };
      const ownDir = !process.env.ORCH_DATABASE_URL && !o.dataDir ? await mkdtemp(path.join(tmpdir(), 'orch-replay-smoke-')) : null;
      const env = { ...process.env, ...(ownDir ?? o.dataDir ? { ORCH_DATA_DIR: ownDir ?? o.dataDir } : {}), ...(g.token ? { ORCH_TOKEN: g.token } : {}) };
      try {
        const { runReplaySmoke } = await import('../../synthetic/replay-smoke.ts');
        const r = await runReplaySmoke({ env, tenant: g.tenant, ...counts, timeoutMs: duration(o.timeout, '--timeout'), log: (l) => process.stdout.write(`  ${l}\n`) });
        for (const p of r.problems) process.stdout.write(`  FAIL ${p}\n`);
        process.stdout.write(r.ok ? 'READY (replay-smoke: everything survived the restart)\n' : `NOT READY: ${r.problems[0]}\n`);
        if (!r.ok) process.exitCode = 1;
      } finally {
        if (ownDir) await rm(ownDir, { recursive: true, force: true });
      }
    });
}
