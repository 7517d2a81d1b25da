/**
 * The floors of docs/architecture.md, checked over the import graph of
 * src/: each floor imports only the floors below it (type-only imports
 * included: a type from above is knowledge of above), and no two modules
 * import each other through a cycle.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Floor of a module by its path under src/; a module may import its own floor and those below. */
const FLOORS: [RegExp, number, string][] = [
  [/^(wire|logging|version)\.ts$|^config\//, 0, 'shared vocabulary: wire types, config, logging, version'],
  [/^ledger\//, 1, 'the ledger: tables, transitions, history, outbox writes'],
  [/^(flow|recovery|events|audit|auth|dispatch|metrics|maintenance|cluster|schedules|backfills|windows|workflows)\//, 2, 'services on the ledger'],
  [/^api\//, 3, 'the HTTP API'],
  [/^sdk\//, 3, 'the SDK (HTTP; the in-process transport reaches the ledger)'],
  [/^(control-plane|index)\.ts$/, 4, 'composition'],
  [/^synthetic\//, 4, 'probe and smoke: operator tools built on the SDK'],
  [/^cli\//, 5, 'the CLI'],
];

function floorOf(file: string): number {
  const hit = FLOORS.find(([re]) => re.test(file));
  assert.ok(hit, `${file} belongs to no floor of docs/architecture.md`);
  return hit[1];
}

/** The TypeScript modules under `root`, as paths relative to it. */
async function sources(root = SRC, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await sources(root, p));
    else if (/\.tsx?$/.test(e.name)) out.push(path.relative(root, p).split(path.sep).join('/'));
  }
  return out;
}

/** Relative imports of a module, static and dynamic, resolved to paths under src/. */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(path.join(SRC, file), 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"\n;]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)].map((m) => m[1] ?? m[2]!);
  return specs.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)));
}

describe('the floors', () => {
  test('every module imports only its own floor and the floors below', async () => {
    const broken: string[] = [];
    for (const file of await sources()) {
      for (const dep of await importsOf(file)) {
        if (floorOf(dep) > floorOf(file)) broken.push(`${file} -> ${dep}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('the ledger imports nothing of ours but the shared vocabulary', async () => {
    const broken: string[] = [];
    for (const file of (await sources()).filter((f) => f.startsWith('ledger/'))) {
      for (const dep of await importsOf(file)) if (floorOf(dep) > 1 || (floorOf(dep) === 1 && !dep.startsWith('ledger/'))) broken.push(`${file} -> ${dep}`);
    }
    assert.deepEqual(broken, []);
  });

  test('no import cycles between modules', async () => {
    const files = await sources();
    const graph = new Map<string, string[]>();
    for (const f of files) graph.set(f, await importsOf(f));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, trail: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(f)), f].join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const d of graph.get(f) ?? []) visit(d, [...trail, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    assert.deepEqual(cycles, []);
  });
});

describe('the console', () => {
  const CONSOLE = fileURLToPath(new URL('../console/src/', import.meta.url));
  /** What the browser bundle may run of the server's code: the wire vocabulary, the HTTP client, and constant lists without imports. */
  const BUNDLED = new Set(['wire.ts', 'sdk/client.ts', 'sdk/http.ts', 'ledger/types.ts']);

  test('its value imports from src/ are the HTTP SDK and the wire vocabulary (types may come from anywhere)', async () => {
    const broken: string[] = [];
    for (const file of await sources(CONSOLE)) {
      const text = await readFile(path.join(CONSOLE, file), 'utf8');
      for (const m of text.matchAll(/(?:^|\n)\s*import\s+(?!type\b)[^'"\n;]*?from\s+'(\.[^']+)'/g)) {
        const target = path.relative(SRC, path.resolve(CONSOLE, path.dirname(file), m[1]!)).split(path.sep).join('/');
        if (!target.startsWith('..') && !BUNDLED.has(target)) broken.push(`console/src/${file} -> src/${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('the modules it bundles from src/ import nothing outside that set at run time', async () => {
    const broken: string[] = [];
    for (const file of BUNDLED) {
      const text = await readFile(path.join(SRC, file), 'utf8');
      for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s+(?!type\b)[^'"\n;]*?from\s+'([^']+)'/g)) {
        const dep = m[1]!.startsWith('.') ? path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]!)) : m[1]!;
        if (!BUNDLED.has(dep)) broken.push(`${file} -> ${dep}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});

describe('files a reader can hold in their head', () => {
  /** Over this many lines, a module says at its top why it is one file ("Long because ..."). */
  const MAX_LINES = 400;

  test(`no module over ${MAX_LINES} lines without a reason at its top`, async () => {
    const unexplained: string[] = [];
    for (const file of await sources()) {
      const text = await readFile(path.join(SRC, file), 'utf8');
      const lines = text.split('\n').length;
      if (lines > MAX_LINES && !/Long because /.test(text.split('\n').slice(0, 15).join('\n'))) unexplained.push(`${file}: ${lines} lines`);
    }
    assert.deepEqual(unexplained, []);
  });
});
