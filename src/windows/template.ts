import { LedgerError } from '../ledger/errors.ts';

/**
 * Payload templates of schedules and backfills. Any string in the payload
 * may name values with `{{name}}`: a string that is exactly one reference
 * becomes the value itself (a time as an ISO string, or null), a reference
 * inside longer text is replaced by its text. Names are checked when the
 * schedule or backfill is created, so a typo is a 400, not a tick that fails.
 */
export const TEMPLATE_VALUES = {
  /** Start and end of the window the job covers: a backfill's window, or a schedule's span from its previous tick to this one. */
  windowStart: 'start of the window (ISO time)',
  windowEnd: 'end of the window (ISO time)',
  windowIndex: 'the window\'s position from 0',
  /** The tick's time (schedules only). */
  tick: 'the scheduled time of the tick (ISO time)',
  /** The tenant and job type's watermark when the job was made: "process from the watermark to now". */
  watermark: 'the tenant and job type\'s watermark, or null when none yet',
  now: 'the database time when the job was enqueued',
  scheduleName: 'the schedule\'s name (schedules only)',
  backfillId: 'the backfill\'s id (backfills only)',
} as const;
export type TemplateName = keyof typeof TEMPLATE_VALUES;
export type TemplateValues = Partial<Record<TemplateName, string | number | null>>;

const REFERENCE = /\{\{\s*([^{}]*?)\s*\}\}/g;
const WHOLE = /^\{\{\s*([^{}]*?)\s*\}\}$/;

/** Every name the template refers to. */
function referencesIn(value: unknown, out: Set<string>): Set<string> {
  if (typeof value === 'string') for (const m of value.matchAll(REFERENCE)) out.add(m[1]!);
  else if (Array.isArray(value)) for (const v of value) referencesIn(v, out);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) referencesIn(v, out);
  return out;
}

/** Refuses a template naming a value that the kind of owner (schedule or backfill) does not give. */
export function checkTemplate(template: unknown, allowed: readonly TemplateName[], field = 'payload'): void {
  const unknown = [...referencesIn(template, new Set())].filter((n) => !(allowed as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new LedgerError('invalid', field, `${field} refers to ${unknown.map((n) => `{{${n}}}`).join(', ')}, which ${unknown.length > 1 ? 'are' : 'is'} not given; `
      + `a template may use ${allowed.map((n) => `{{${n}}}`).join(', ')}`);
  }
}

/** The payload for one job: the template with its references filled in. */
export function renderTemplate(template: unknown, values: TemplateValues): unknown {
  if (typeof template === 'string') {
    const whole = WHOLE.exec(template);
    if (whole) return values[whole[1] as TemplateName] ?? null;
    return template.replace(REFERENCE, (_m, name: string) => String(values[name as TemplateName] ?? ''));
  }
  if (Array.isArray(template)) return template.map((v) => renderTemplate(v, values));
  if (template !== null && typeof template === 'object') {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, renderTemplate(v, values)]));
  }
  return template;
}
