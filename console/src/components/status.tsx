import type { ReactNode } from 'react';

/** An API error as the API words it: status, code, field and message. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as { status?: number; code?: string; field?: string | null; message?: string };
  return (
    <p className="error" role="alert">
      {e.status ? `${e.status} ${e.code ?? ''}: ` : ''}{e.message ?? String(error)}{e.field ? ` (${e.field})` : ''}
    </p>
  );
}

/** Loading, error or the content, for a query's result. */
export function Loaded<T>({ query, children }: { query: { data: T | undefined; error: unknown; isPending: boolean }; children: (data: T) => ReactNode }) {
  if (query.error) return <ErrorNote error={query.error} />;
  if (query.isPending || query.data === undefined) return <p className="muted" aria-busy="true">Loading…</p>;
  return <>{children(query.data)}</>;
}

/** A job or resource state as a coloured badge (colour by state family, the text always says it). */
export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

export function Metric({ label, value, hint }: { label: string; value: ReactNode; hint?: string }) {
  return (
    <div className="metric" title={hint}>
      <div className="metric-value">{value}</div>
      <div className="metric-label">{label}</div>
    </div>
  );
}
