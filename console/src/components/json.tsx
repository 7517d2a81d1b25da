import { useId } from 'react';
import { json } from './format.ts';

export type ParsedJson = { ok: true; value: unknown } | { ok: false; error: string };

/** The text of a JSON field: empty means "none" (undefined, so the API applies its default). */
export function parseJson(text: string): ParsedJson {
  if (text.trim() === '') return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/** A textarea for a JSON value (a payload), saying why its text does not parse. */
export function JsonField({ label, value, onChange, placeholder }: { label: string; value: string; onChange: (text: string) => void; placeholder?: string }) {
  const parsed = parseJson(value);
  const id = useId();
  return (
    <label className="json-field">{label}
      <textarea value={value} rows={3} cols={40} spellCheck={false} placeholder={placeholder} onChange={(e) => onChange(e.target.value)}
        aria-invalid={!parsed.ok} aria-describedby={parsed.ok ? undefined : id} />
      {!parsed.ok && <span id={id} className="error">not JSON: {parsed.error}</span>}
    </label>
  );
}

/** A JSON value folded away behind its summary (audit details, event data). */
export function JsonDetails({ summary, value }: { summary: string; value: unknown }) {
  if (value === null || value === undefined) return <span className="muted">—</span>;
  return (
    <details>
      <summary>{summary}</summary>
      <pre>{json(value)}</pre>
    </details>
  );
}
