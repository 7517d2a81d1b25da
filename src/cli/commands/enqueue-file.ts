import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Presets, SingleBar } from 'cli-progress';
import type { OrchClient, SubmitJob } from '../../sdk/client.ts';
import { OrchApiError } from '../../sdk/http.ts';
import { CliError, print, type OutputFormat } from '../output.ts';

/**
 * `orch enqueue --file F.ndjson`: any number of lines, read as a stream and
 * sent through POST /jobs/batch a batch at a time, so memory stays flat and no
 * request meets the server's batch limits. A line that cannot be a job fails
 * alone: it is reported with its line number and the other lines still go in.
 */

/** Jobs per request: well under the server's ORCH_MAX_BATCH_SIZE (10,000 by default); each batch is one transaction. */
const BATCH_JOBS = 1000;
/** JSON per request: a sixteenth of the default batch body limit (64 payloads of ORCH_MAX_PAYLOAD_BYTES). */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Failed lines named on stderr; past these they are only counted, so a wholly wrong file does not flood the terminal. */
const SHOWN_FAILURES = 20;

export interface FileSummary {
  /** Lines holding a job (blank lines are skipped): created + existing + failed. */
  submitted: number;
  created: number;
  /** Lines whose idempotency key named a job already there: rerunning a file creates nothing twice. */
  existing: number;
  failed: number;
}

interface Line { line: number; job: SubmitJob }

/** The job on a line, or why there is none. TYPE (the command's argument) stands in for a missing jobType. */
function parseLine(text: string, defaultType: string | undefined): SubmitJob | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const job = value as Partial<SubmitJob>;
  if (job.jobType === undefined) return defaultType ? { ...job, jobType: defaultType } : 'no jobType (give it on the line, or TYPE for every line)';
  if (typeof job.jobType !== 'string') return 'jobType is not a string';
  return job as SubmitJob;
}

/** Which job of a batch a 4xx answer is about: its field names it ("jobs[3].priority"), or the batch has one job. */
function rejectedIndex(err: unknown, size: number): number | null {
  if (!(err instanceof OrchApiError) || (err.status !== 400 && err.status !== 422)) return null;
  const m = /^jobs\[(\d+)\]/.exec(err.field ?? '');
  if (m) return Number(m[1]) < size ? Number(m[1]) : null;
  return size === 1 && err.field !== 'jobs' ? 0 : null;
}

/** The server refused the request for its size (body limit, or a lower ORCH_MAX_BATCH_SIZE): halving it will do. */
const tooBig = (err: unknown) => err instanceof OrchApiError && (err.status === 413 || (err.status === 400 && err.field === 'jobs'));

class Submitter {
  readonly summary: FileSummary = { submitted: 0, created: 0, existing: 0, failed: 0 };
  private readonly failures: { line: number; why: string }[] = [];

  constructor(private readonly client: OrchClient) {}

  reject(line: number, why: string): void {
    this.summary.submitted++;
    this.summary.failed++;
    // the earliest lines are shown: a line the server refuses is known only after later lines failed to parse
    this.failures.push({ line, why });
    if (this.failures.length > SHOWN_FAILURES) this.failures.sort((a, b) => a.line - b.line).pop();
  }

  /**
   * One batch, in as few requests as it takes. A job the server refuses is reported and the rest
   * sent again: the jobs before it passed its checks (they run in order) and go next whole; after
   * them the requests start small and double, so a file of many bad lines costs a small request
   * a bad line, not the whole batch again each time. Other errors end the run.
   */
  async submit(lines: Line[]): Promise<void> {
    let rest = lines;
    let ceiling = lines.length;
    let size = ceiling;
    while (rest.length > 0) {
      const chunk = rest.slice(0, size);
      try {
        const results = await this.client.enqueueBatch(chunk.map((l) => l.job));
        const created = results.filter((r) => r.created).length;
        this.summary.submitted += results.length;
        this.summary.created += created;
        this.summary.existing += results.length - created;
        rest = rest.slice(chunk.length);
        size = Math.min(size * 2, ceiling);
      } catch (err) {
        if (tooBig(err) && chunk.length > 1) {
          ceiling = size = Math.ceil(chunk.length / 2);
          continue;
        }
        const i = rejectedIndex(err, chunk.length);
        if (i === null) throw err;
        const e = err as OrchApiError;
        // the server numbers jobs within the request; the line number says which one
        this.reject(chunk[i]!.line, `${e.message.replace(`jobs[${i}].`, '')} [HTTP ${e.status} ${e.code}]`);
        rest = rest.toSpliced(i, 1);
        size = Math.max(i, 1);
      }
    }
  }

  /** The first failed lines in file order, then how many more there were. */
  reportFailures(): void {
    const shown = this.failures.sort((a, b) => a.line - b.line);
    for (const f of shown) process.stderr.write(`orch: line ${f.line}: ${f.why.replace(/\s*\n\s*/g, ' ')}\n`);
    const more = this.summary.failed - shown.length;
    if (more > 0) process.stderr.write(`orch: … and ${more} more failed line${more === 1 ? '' : 's'}\n`);
  }
}

/** A progress bar on stderr when it is a terminal and the input's size is known (a file, not a pipe). */
function progressBar(output: OutputFormat, size: number | null): SingleBar | null {
  if (output !== 'table' || !process.stderr.isTTY || size === null) return null;
  const bar = new SingleBar({
    format: 'enqueue [{bar}] {percentage}% | {submitted} lines | {created} created | {existing} existing | {failed} failed',
    stream: process.stderr, hideCursor: true,
  }, Presets.shades_classic);
  bar.start(size, 0, { submitted: 0, created: 0, existing: 0, failed: 0 });
  return bar;
}

/** Reads `file` ("-": standard input) line by line and submits it; prints the summary; exit code 1 if any line failed. */
export async function enqueueFile(client: OrchClient, output: OutputFormat, file: string, defaultType: string | undefined): Promise<void> {
  let input: Readable;
  let size: number | null = null;
  if (file === '-') {
    input = process.stdin;
  } else {
    const handle = await open(file).catch((err: NodeJS.ErrnoException) => {
      throw new CliError(`--file: cannot read ${file} (${err.code ?? err.message})`);
    });
    const st = await handle.stat();
    if (st.isFile()) size = st.size;
    input = handle.createReadStream();
  }
  const submitter = new Submitter(client);
  const bar = progressBar(output, size);
  let bytesRead = 0;
  let lineNo = 0;
  let batch: Line[] = [];
  let batchBytes = 0;
  // One batch is in flight while the next is read: the file is read and parsed as the server
  // inserts, and no more than two batches are ever held.
  let inFlight: Promise<void> = Promise.resolve();
  const send = async () => {
    await inFlight;
    bar?.update(bytesRead, submitter.summary);
    inFlight = submitter.submit(batch);
    // awaited at the next send or at the end; until then a failure must not count as unhandled
    inFlight.catch(() => undefined);
    batch = [];
    batchBytes = 0;
  };
  try {
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      lineNo++;
      bytesRead += Buffer.byteLength(text) + 1;
      if (text.trim() === '') continue;
      const job = parseLine(text, defaultType);
      if (typeof job === 'string') {
        submitter.reject(lineNo, job);
        continue;
      }
      batch.push({ line: lineNo, job });
      batchBytes += text.length;
      if (batch.length >= BATCH_JOBS || batchBytes >= BATCH_BYTES) await send();
    }
    if (batch.length > 0) await send();
    await inFlight;
    bar?.update(size ?? 0, submitter.summary);
  } finally {
    bar?.stop();
    submitter.reportFailures();
  }
  const s = submitter.summary;
  print(output, s, [s], ['submitted', 'created', 'existing', 'failed']);
  if (s.failed > 0) process.exitCode = 1;
}
