/**
 * The console at scale: the API calls its jobs page makes, timed against a
 * ledger of 1,000,000 jobs (seeded by scrape.ts's seedAtScale), and the
 * first load of the console in Chromium (navigation until the sign-in form
 * shows). Targets: each jobs-page call p99 < 300 ms, first load < 1 s.
 */
import { existsSync } from 'node:fs';
import { API_BASE } from '../src/wire.ts';
import { nowMs, percentile, timeCalls } from './anchors/util.ts';

export interface ConsoleResult {
  /** p50 / p99 ms of each jobs-page call, by what it asks. */
  calls: Record<string, { p50Ms: number; p99Ms: number }>;
  slowestP99Ms: number;
  /** Navigation to the sign-in form in Chromium, median of 5 cold loads (null: no Chromium here). */
  firstLoadMs: number | null;
}

const CHROMIUM = process.env.ORCH_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** The jobs page's calls: its first page, a state filter in claim order, a type and state, an error class, the counts. */
const CALLS: Record<string, string> = {
  'newest 50': '/jobs?limit=50',
  'queued, oldest first': '/jobs?state=queued&sort=oldest&limit=50',
  'dead letters of one type': '/jobs?state=dead_lettered&jobType=pdf&limit=50',
  'by error class': '/jobs?errorClass=Timeout&limit=50',
  'counts per state': '/jobs/counts',
};

export async function consoleAtScale(apiUrl: string, tenant: string, rounds = 30): Promise<ConsoleResult> {
  const calls: ConsoleResult['calls'] = {};
  for (const [what, path] of Object.entries(CALLS)) {
    const { p50Ms, p99Ms } = await timeCalls(rounds, async () => {
      const res = await fetch(`${apiUrl}${API_BASE}${path}`, { headers: { 'x-tenant-id': tenant } });
      await res.text();
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    });
    calls[what] = { p50Ms, p99Ms };
  }
  return { calls, slowestP99Ms: Math.max(...Object.values(calls).map((c) => c.p99Ms)), firstLoadMs: await firstLoad(apiUrl) };
}

async function firstLoad(apiUrl: string): Promise<number | null> {
  if (!existsSync(CHROMIUM)) return null;
  // loaded only here: the library alone adds some 60 MB to the process whose RSS the drain reports
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
  try {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const context = await browser.newContext(); // cold: no cache from the previous load
      const page = await context.newPage();
      const t = nowMs();
      await page.goto(apiUrl);
      await page.getByLabel('API token').waitFor();
      samples.push(nowMs() - t);
      await context.close();
    }
    samples.sort((a, b) => a - b);
    return round(percentile(samples, 50));
  } finally {
    await browser.close();
  }
}

const round = (x: number) => Math.round(x * 10) / 10;
