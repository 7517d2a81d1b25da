import { useId, useState } from 'react';

/**
 * The keys of a record literal as a list. Spelling a server's union as a
 * Record<Union, …> makes the compiler reject a list that misses or adds a
 * member, so the console's options cannot drift from the server's; the
 * server's own arrays live in modules that import Node built-ins a browser
 * bundle cannot load.
 */
export function keysOf<K extends string>(all: Record<K, unknown>): K[] {
  return Object.keys(all) as K[];
}

interface ChoiceProps<T extends string> {
  label: string;
  value: T | undefined;
  options: readonly T[];
  /** undefined when the `any` option is picked. */
  onChange: (value: T | undefined) => void;
  /** The text of an empty first option (a filter that is off); without it one of `options` is always picked. */
  any?: string;
}

/** A labelled select of fixed options. */
export function Choice<T extends string>({ label, value, options, onChange, any }: ChoiceProps<T>) {
  return (
    <label>{label}
      <select value={value ?? ''} onChange={(e) => onChange(options.find((o) => o === e.target.value))}>
        {any !== undefined && <option value="">{any}</option>}
        {options.map((o) => <option key={o} value={o}>{o}</option>)}
      </select>
    </label>
  );
}

const UNITS = { s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNITS;

/** The largest unit `ms` is a whole number of (seconds at least). */
function unitOf(ms: number): Unit {
  return keysOf<Unit>(UNITS).reverse().find((u) => ms % UNITS[u] === 0) ?? 's';
}

/**
 * A duration as an amount and a unit (what people type: "15 min", "1 d"),
 * reported in milliseconds, the API's unit; NaN while the amount is not a
 * positive whole number.
 */
export function DurationField({ label, defaultMs, onChange }: { label: string; defaultMs: number; onChange: (ms: number) => void }) {
  const [amount, setAmount] = useState(String(defaultMs / UNITS[unitOf(defaultMs)]));
  const [unit, setUnit] = useState<Unit>(unitOf(defaultMs));
  const id = useId();
  const report = (a: string, u: Unit) => {
    setAmount(a);
    setUnit(u);
    onChange(/^[1-9][0-9]*$/.test(a) ? Number(a) * UNITS[u] : Number.NaN);
  };
  return (
    <div className="field-pair" role="group" aria-labelledby={id}>
      <span id={id} className="field-label">{label}</span>
      <span>
        <input type="number" min={1} step={1} size={6} value={amount} aria-label={`${label}: amount`} onChange={(e) => report(e.target.value, unit)} />
        <select value={unit} aria-label={`${label}: unit`} onChange={(e) => report(amount, keysOf<Unit>(UNITS).find((u) => u === e.target.value) ?? unit)}>
          {keysOf<Unit>(UNITS).map((u) => <option key={u} value={u}>{u}</option>)}
        </select>
      </span>
    </div>
  );
}
