import { Cron } from 'croner';
import { LedgerError } from '../ledger/errors.ts';

/**
 * When a schedule ticks: a cron expression read in an IANA time zone, or a
 * fixed interval from an anchor. croner parses the expression and walks
 * wall-clock times (in UTC, where no time is missing or repeated); each wall
 * time is then placed in the zone here, so daylight-saving days behave as
 * docs/schedules.md says:
 * - a wall time that does not exist (the spring-forward gap) fires once, at
 *   the first instant after the gap (02:30 on a day that jumps from 02:00 to
 *   03:00 fires at 03:00);
 * - a wall time that happens twice (the fall-back hour) fires once, the first
 *   time.
 * Ticks are strictly increasing instants, so a tick can never repeat.
 */
export interface Recurrence {
  cron: string | null;
  everyMs: number | null;
  timeZone: string;
  /** No tick before this; interval ticks count from it. */
  anchor: Date;
  /** No tick at or after this. */
  endsAt: Date | null;
}

const DAY = 86_400_000;
/** Ticks looked at in one search before giving up (a pattern like "30 2 31 2 *" never matches). */
const MAX_STEPS = 1000;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Refuses a zone the runtime's time zone database does not know (a typo); its legacy names ("CET", "EST") are accepted as it reads them. */
export function validateTimeZone(zone: string, field = 'timeZone'): void {
  try {
    formatterFor(zone);
  } catch {
    throw new LedgerError('invalid', field, `${field}: "${zone}" is not an IANA time zone (e.g. "UTC", "Europe/Berlin", "America/New_York")`);
  }
}

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** The zone's offset from UTC at an instant, in ms (local = instant + offset). */
function offsetAt(instant: number, zone: string): number {
  const p: Record<string, number> = {};
  for (const part of formatterFor(zone).formatToParts(new Date(instant))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const wall = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return wall - Math.floor(instant / 1000) * 1000;
}

const wallOf = (instant: number, zone: string) => instant + offsetAt(instant, zone);

/** The instant of a wall time in the zone: the earlier of two (fall back), or the end of the gap (spring forward). */
function instantOf(wall: number, zone: string): number {
  const offsets = [...new Set([offsetAt(wall - DAY, zone), offsetAt(wall + DAY, zone), offsetAt(wall, zone)])];
  const fits = offsets.map((o) => wall - o).filter((t) => wallOf(t, zone) === wall);
  if (fits.length > 0) return Math.min(...fits);
  // In a gap: the first instant whose wall time is past `wall`, to the second (offsets change on whole seconds).
  let lo = wall - Math.max(...offsets);
  let hi = wall - Math.min(...offsets);
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (wallOf(mid, zone) > wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Parses a cron expression (five fields, or six with seconds first; @daily-style nicknames); 400 naming the problem otherwise. */
export function parseCron(expr: string, field = 'cron'): Cron {
  const fields = expr.trim().split(/\s+/);
  if (!(fields.length === 5 || fields.length === 6 || (fields.length === 1 && fields[0]!.startsWith('@')))) {
    throw new LedgerError('invalid', field, `${field}: "${expr}" has ${fields.length} fields; give five (minute hour day month weekday) or six (seconds first)`);
  }
  try {
    return new Cron(expr, { paused: true, timezone: 'Etc/UTC' });
  } catch (err) {
    throw new LedgerError('invalid', field, `${field}: "${expr}" is not a cron expression: ${(err as Error).message.replace(/^CronPattern: /, '')}`);
  }
}

/** Parsed expressions, the most recently used last: a tick's search asks for one many times; a tenant's many schedules cannot grow it past the bound. */
const patterns = new Map<string, Cron>();
const MAX_PATTERNS = 1000;

function patternOf(expr: string): Cron {
  let cron = patterns.get(expr);
  if (cron) patterns.delete(expr);
  else cron = parseCron(expr);
  patterns.set(expr, cron);
  if (patterns.size > MAX_PATTERNS) patterns.delete(patterns.keys().next().value!);
  return cron;
}

/** The first tick strictly after `after` (ms since the epoch), or null when there is none (past the end, or the pattern never matches). */
export function nextTick(r: Recurrence, after: number): number | null {
  const from = Math.max(after, r.anchor.getTime() - 1);
  let tick: number | null;
  if (r.everyMs !== null) {
    const k = Math.floor((from - r.anchor.getTime()) / r.everyMs) + 1;
    tick = r.anchor.getTime() + Math.max(0, k) * r.everyMs;
  } else {
    const cron = patternOf(r.cron!);
    tick = null;
    let wall = wallOf(from, r.timeZone);
    for (let i = 0; i < MAX_STEPS; i++) {
      const next = cron.nextRun(new Date(wall));
      if (!next) break;
      const t = instantOf(next.getTime(), r.timeZone);
      if (t > from) {
        tick = t;
        break;
      }
      wall = next.getTime();
    }
  }
  return tick !== null && (r.endsAt === null || tick < r.endsAt.getTime()) ? tick : null;
}

/**
 * The ticks from `first` (itself a tick) up to `now`, oldest first: at most
 * `keep` of the newest are returned, with how many there were in all (capped
 * at `maxCount`, past which the rest are counted by skipping ahead).
 */
export function ticksUpTo(r: Recurrence, first: number, now: number, keep: number, maxCount = 100_000): { ticks: number[]; total: number; next: number | null } {
  const ticks: number[] = [];
  let total = 0;
  let t: number | null = first;
  while (t !== null && t <= now && total < maxCount) {
    ticks.push(t);
    if (ticks.length > keep) ticks.shift();
    total++;
    t = nextTick(r, t);
  }
  // Past the cap the remaining ticks up to now are skipped without counting each (a year of per-second ticks).
  if (t !== null && t <= now) t = nextTick(r, now);
  return { ticks, total, next: t };
}
