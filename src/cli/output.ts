import { OrchApiError } from '../sdk/http.ts';

export type OutputFormat = 'table' | 'json';

/** Rows as aligned columns (table) or the raw value as JSON. */
export function print(format: OutputFormat, value: unknown, objects: readonly object[], columns: string[]): void {
  const rows = objects as readonly Record<string, unknown>[];
  if (format === 'json') {
    process.stdout.write(JSON.stringify(value, null, 2) + '\n');
    return;
  }
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => Math.min(60, cell(r[c]).length))));
  const line = (vals: string[]) => vals.map((v, i) => v.slice(0, 60).padEnd(widths[i]!)).join('  ').trimEnd();
  process.stdout.write(line(columns.map((c) => c.toUpperCase())) + '\n');
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + '\n');
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
    message = `cannot reach the orchestrator API (${err.message}); is "orch serve" running? (--api-url)`;
  } else {
    message = err instanceof Error ? err.message : String(err);
  }
  process.stderr.write(`orch: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(code);
}
