import { OrchApiError } from '../sdk/http.ts';
import { unreachableHint } from './api-address.ts';

export type OutputFormat = 'table' | 'json';

/** Widest a table cell is drawn unless --wide: one long payload or error would otherwise push every other column off screen. */
const CELL_WIDTH = 60;

/** Set once from the global options before a command runs (src/cli/program.ts). */
const tables = { wide: false };
export function setWideTables(wide: boolean): void {
  tables.wide = wide;
}

/** A cell as drawn: cut to CELL_WIDTH with "…" so a cut value never passes for the whole one. */
function fit(v: string): string {
  return tables.wide || v.length <= CELL_WIDTH ? v : `${v.slice(0, CELL_WIDTH - 1)}…`;
}

/** Rows as aligned columns (table) or the raw value as JSON. */
export function print(format: OutputFormat, value: unknown, objects: readonly object[], columns: string[]): void {
  const rows = objects as readonly Record<string, unknown>[];
  if (format === 'json') {
    process.stdout.write(JSON.stringify(value, null, 2) + '\n');
    return;
  }
  const cell = (v: unknown) => fit(v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  process.stdout.write(line(columns.map((c) => c.toUpperCase())) + '\n');
  for (const r of cells) process.stdout.write(line(r) + '\n');
}

/** A comma-separated option value ("1,2, 3") as its items. */
export const commaList = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** One line on stderr and the exit code surface.md fixes: 2 for auth or tenant problems, 1 otherwise. */
export function fail(err: unknown): never {
  let code = 1;
  let message: string;
  if (err instanceof OrchApiError) {
    if (err.status === 401 || err.status === 403 || err.code === 'tenant_required') code = 2;
    message = `${err.message}${err.field ? ` (field: ${err.field})` : ''} [HTTP ${err.status} ${err.code}]`;
  } else if (err instanceof CliError) {
    code = err.exitCode;
    message = err.message;
  } else if (err instanceof Error && /ECONNREFUSED|fetch failed/.test(`${err.message} ${String((err as { cause?: unknown }).cause)}`)) {
    message = `cannot reach the orchestrator API${unreachableHint(err.message)}`;
  } else {
    message = err instanceof Error ? err.message : String(err);
  }
  process.stderr.write(`orch: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(code);
}
