import type { TestContext } from 'node:test';

/** Registers a value's clean-up and hands the value back. */
export type End = <T>(value: T, cleanup: (v: T) => Promise<unknown>) => T;

/**
 * Clean-ups for one test, run in reverse order when it ends (passed or not);
 * a clean-up that fails is reported, and the others still run.
 */
export function scope(t: TestContext): End {
  const list: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const c of list.reverse()) await c().catch((err) => process.stderr.write(`cleanup failed: ${(err as Error).message}\n`));
  });
  return (value, cleanup) => {
    list.push(() => cleanup(value));
    return value;
  };
}
