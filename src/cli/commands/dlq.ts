import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import type { DlqFilter } from '../../recovery/dead-letters.ts';
import type { ReplayProgress, ReplaySelection } from '../../recovery/replays.ts';
import type { OrchClient } from '../../sdk/client.ts';
import { CliError, commaList, print, type OutputFormat } from '../output.ts';
import { clientFor, integer } from './jobs.ts';

interface FilterOptions { type?: string; errorClass?: string; since?: string; until?: string }

const withFilterOptions = (c: Command) => c
  .option('--type <jobType>', 'only this job type')
  .option('--error-class <class>', 'only this error class')
  .option('--since <time>', 'dead-lettered at or after this ISO 8601 time')
  .option('--until <time>', 'dead-lettered before this ISO 8601 time');

function filterFrom(o: FilterOptions): DlqFilter {
  for (const [flag, v] of [['--since', o.since], ['--until', o.until]] as const) {
    if (v !== undefined && Number.isNaN(Date.parse(v))) throw new CliError(`${flag}: "${v}" is not a time (e.g. 2026-11-28T10:00:00Z)`);
  }
  const f: DlqFilter = {};
  if (o.type !== undefined) f.jobType = o.type;
  if (o.errorClass !== undefined) f.errorClass = o.errorClass;
  if (o.since !== undefined) f.since = new Date(o.since).toISOString();
  if (o.until !== undefined) f.until = new Date(o.until).toISOString();
  return f;
}

const ids = (v: string | undefined) => (v === undefined ? undefined : commaList(v));

/** Downloads a snapshot next to its manifest, checking the bytes against the manifest's sha256. */
async function saveSnapshot(client: OrchClient, id: string, dir: string): Promise<{ file: string; manifestFile: string }> {
  const manifest = await client.getSnapshot(id);
  await mkdir(dir, { recursive: true });
  const file = join(dir, `dlq-snapshot-${id}.ndjson`);
  const partial = `${file}.partial`;
  const res = await client.downloadSnapshot(id);
  const hash = createHash('sha256');
  const body = Readable.fromWeb(res.body! as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (chunk: Buffer) => hash.update(chunk));
  await pipeline(body, createWriteStream(partial));
  const sha = hash.digest('hex');
  if (sha !== manifest.sha256) throw new CliError(`snapshot ${id}: downloaded file has sha256 ${sha}, manifest says ${manifest.sha256}; not saved`);
  await rename(partial, file);
  const manifestFile = join(dir, `dlq-snapshot-${id}.manifest.json`);
  await writeFile(manifestFile, JSON.stringify({ ...manifest, file: `dlq-snapshot-${id}.ndjson` }, null, 2) + '\n');
  return { file, manifestFile };
}

/** Polls a replay to its end, drawing a progress bar on stderr (table output on a terminal). */
async function follow(client: OrchClient, start: ReplayProgress, output: OutputFormat): Promise<ReplayProgress> {
  let r = start;
  const bar = output === 'table' && process.stderr.isTTY
    ? new SingleBar({ format: 'replay [{bar}] {percentage}% | {value}/{total} | created {created}', stream: process.stderr }, Presets.shades_classic)
    : null;
  bar?.start(r.total, r.done, { created: r.created });
  while (r.state === 'running') {
    await new Promise((res) => setTimeout(res, 250));
    r = await client.getReplay(r.id);
    bar?.update(r.done, { created: r.created });
    if (!bar && output === 'table') process.stderr.write(`replay ${r.id}: ${r.done}/${r.total}, created ${r.created}\n`);
  }
  bar?.stop();
  return r;
}

const REPLAY_COLUMNS = ['id', 'state', 'total', 'done', 'created', 'skipped'];

/** `orch dlq stats|list|snapshot|replay|clear`: the dead-letter queue. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('dead-letter queue: stats, list, snapshot, replay, clear (clear needs a snapshot)');

  dlq.command('stats')
    .description('depth per job type, oldest entry, and the largest error clusters')
    .option('--clusters <n>', 'how many clusters', '10')
    .action(async (o: { clusters: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const s = await client.dlqStats(integer(o.clusters, '--clusters'));
      if (output === 'json') return print(output, s, [], []);
      process.stdout.write(`tenant ${s.tenantId}: ${s.depth} dead letters, oldest ${s.oldestAt ?? '-'}\n\n`);
      print('table', null, s.byJobType, ['jobType', 'depth', 'oldestAt']);
      process.stdout.write('\nerror clusters:\n');
      print('table', null, s.clusters, ['jobType', 'errorClass', 'count', 'message', 'firstSeen', 'lastSeen']);
    });

  withFilterOptions(dlq.command('list').description('dead letters, newest first'))
    .option('--limit <n>', 'page size (1 to 1000)', '50')
    .option('--cursor <id>', 'continue after this id (printed as the next page)')
    .action(async (o: FilterOptions & { limit: string; cursor?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const page = await client.listDeadLetters({ ...filterFrom(o), limit: integer(o.limit, '--limit'), cursor: o.cursor });
      const rows = page.entries.map((e) => ({
        id: e.job.id, jobType: e.job.jobType, attempt: e.job.attempt, errorClass: e.job.lastError?.class, message: e.job.lastError?.message,
        deadLetteredAt: e.job.finishedAt, replayJobId: e.replayJobId,
      }));
      print(output, page, rows, ['id', 'jobType', 'attempt', 'errorClass', 'message', 'deadLetteredAt', 'replayJobId']);
      if (output === 'table' && page.nextCursor) process.stdout.write(`next page: --cursor ${page.nextCursor}\n`);
    });

  withFilterOptions(dlq.command('snapshot').description('write dead letters (job, payload, history, last error) as NDJSON plus a manifest'))
    .option('--ids <ids>', 'only these job ids (comma-separated)')
    .option('--out <dir>', 'directory for the NDJSON file and manifest', 'out/dlq-snapshots')
    .option('--download <snapshotId>', 'download an existing snapshot instead of taking one')
    .action(async (o: FilterOptions & { ids?: string; out: string; download?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const manifest = o.download ? await client.getSnapshot(o.download) : await client.snapshotDlq({ ...filterFrom(o), jobIds: ids(o.ids) });
      const saved = await saveSnapshot(client, manifest.id, o.out);
      print(output, { ...manifest, ...saved }, [{ ...manifest, file: saved.file }], ['id', 'entries', 'bytes', 'sha256', 'file']);
    });

  withFilterOptions(dlq.command('replay').description('re-enqueue dead letters as new jobs (once per entry), by --ids, --snapshot or filter'))
    .option('--ids <ids>', 'these job ids (comma-separated)')
    .option('--snapshot <snapshotId>', 'the entries of this snapshot')
    .option('--priority <n>', 'priority of the new jobs (default: the original\'s plus one)')
    .option('--resume <replayId>', 'follow a replay started earlier until it ends')
    .option('--reason <text>', 'why (required to start a replay; recorded in the audit log)')
    .option('--ticket <ticket>', 'ticket reference, recorded with the reason')
    .action(async (o: FilterOptions & { ids?: string; snapshot?: string; priority?: string; resume?: string; reason?: string; ticket?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      let started: ReplayProgress;
      if (o.resume) {
        started = await client.getReplay(o.resume);
      } else {
        if (!o.reason) throw new CliError('dlq replay: --reason is required (recorded in the audit log)');
        const filter = filterFrom(o);
        const chosen = [o.ids && { jobIds: ids(o.ids)! }, o.snapshot && { snapshotId: o.snapshot }, Object.keys(filter).length > 0 && { filter }]
          .filter((s): s is ReplaySelection => Boolean(s));
        if (chosen.length === 0) throw new CliError('dlq replay: choose entries with --ids, --snapshot, or a filter (--type, --error-class, --since, --until)');
        if (chosen.length > 1) throw new CliError('dlq replay: give one of --ids, --snapshot, or filter options');
        started = await client.replayDlq(chosen[0]!, { reason: o.reason, ticket: o.ticket }, o.priority === undefined ? undefined : integer(o.priority, '--priority'));
        if (output === 'table') process.stderr.write(`replay ${started.id} started (resume with: orch dlq replay --resume ${started.id})\n`);
      }
      const r = await follow(client, started, output);
      print(output, r, [r], REPLAY_COLUMNS);
    });

  dlq.command('clear')
    .description('remove from the DLQ the entries a snapshot holds (take the snapshot first); everything else stays')
    .requiredOption('--snapshot <snapshotId>', 'the snapshot holding the entries')
    .option('--ids <ids>', 'only these of its entries (comma-separated job ids)')
    .requiredOption('--reason <text>', 'why (recorded in the audit log and each job\'s history)')
    .option('--ticket <ticket>', 'ticket reference')
    .action(async (o: { snapshot: string; ids?: string; reason: string; ticket?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.clearDlq(o.snapshot, { reason: o.reason, ticket: o.ticket }, ids(o.ids));
      print(output, r, [{ ...r, notInSnapshot: r.notInSnapshot.length }], ['snapshotId', 'cleared', 'alreadyGone', 'notInSnapshot']);
    });
}
