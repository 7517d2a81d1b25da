import { useState } from 'react';

/** One number input of a settings form: its key in the request, its label, the API's bounds. */
export interface NumberSpec<K extends string> {
  key: K;
  label: string;
  min?: number;
  max?: number;
  /** "any" for rates and factors; 1 for counts and milliseconds. */
  step?: number | 'any';
}

export type NumberValues<K extends string> = Record<K, number | null>;

/**
 * The text of number inputs, kept as typed (an operator clears a field before
 * typing a new value), and the numbers it stands for: an empty field is null,
 * which the quota API reads as "no limit" and a settings form as "unchanged".
 */
export function useNumberFields<K extends string>(initial: NumberValues<K>) {
  const [texts, setTexts] = useState(() => Object.fromEntries(
    Object.entries<number | null>(initial).map(([k, v]) => [k, v === null ? '' : String(v)]),
  ) as Record<K, string>);
  const values = Object.fromEntries(
    Object.entries<string>(texts).map(([k, t]) => [k, t.trim() === '' ? null : Number(t)]),
  ) as NumberValues<K>;
  const set = (key: K, text: string) => setTexts((prev) => ({ ...prev, [key]: text }));
  return { texts, values, set };
}

/** Labelled number inputs for the fields `specs` lists, inside an action's dialog. */
export function NumberFields<K extends string>({ specs, fields }: { specs: NumberSpec<K>[]; fields: ReturnType<typeof useNumberFields<K>> }) {
  return (
    <div className="filters">
      {specs.map((s) => (
        <label key={s.key}>{s.label}
          <input type="number" name={s.key} value={fields.texts[s.key]} min={s.min} max={s.max} step={s.step ?? 1}
            onChange={(e) => fields.set(s.key, e.target.value)} />
        </label>
      ))}
    </div>
  );
}
