import { ago, duration, time } from './format.ts';

/** A time relative to now, past ("3 min ago") or future ("in 5 min"), with the exact time on hover. */
export function When({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span className="muted">—</span>;
  const ahead = Date.parse(iso) - Date.now();
  return <time dateTime={iso} title={time(iso)}>{ahead > 0 ? `in ${duration(ahead)}` : ago(iso)}</time>;
}

/** A time as a datetime-local input shows it, to the minute: the console's forms take times in UTC (their labels say so). */
export const toUtcInput = (time: string | number | undefined): string => (time === undefined || time === '' ? '' : new Date(time).toISOString().slice(0, 16));

/** A datetime-local input's value read as UTC: the ISO time, or null for no time. */
export function fromUtcInput(v: string | undefined): string | null {
  const d = v ? new Date(`${v}Z`) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
}

/** "2026-12-01 00:00Z": a time of a window or range in UTC, as the forms that take one read it. */
export function utc(iso: string | null | undefined): string {
  if (!iso) return '—';
  const [date, clock = ''] = iso.split('T');
  return `${date} ${clock.slice(0, clock.endsWith(':00.000Z') ? 5 : 8)}Z`;
}
