/** "3 s ago", "5 min ago", "2 h ago" for an ISO time; "—" for none. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  return `${duration(now - Date.parse(iso))} ago`;
}

/** A duration in ms as people read it: 850 ms, 12 s, 5 min, 3 h, 2 d. */
export function duration(ms: number): string {
  const a = Math.abs(ms);
  if (a < 1_000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${Math.round(ms / 1_000)} s`;
  if (a < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (a < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

export function time(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

/** JSON for display, cut at `max` characters with a visible ellipsis. */
export function json(value: unknown, max = Infinity): string {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
