/**
 * The browser console (console/, served by orch serve at `/`) in a real
 * Chromium: sign-in, the shell, the API reference at /docs, and the server's
 * handling of console paths next to the API's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { API_BASE } from '../src/wire.ts';
import { consoleWorld, screenshot, signIn, skipUnlessChromium } from './helpers/browser.ts';

const skip = skipUnlessChromium('the console tests');

describe('the console', { skip }, () => {

  const world = consoleWorld();

  test('the server answers console paths with the app and API paths with JSON', async () => {
    for (const path of ['/', '/jobs', '/runbook/OrchestratorLeaseStall']) {
      const res = await fetch(world.cp.url + path, { headers: { accept: 'text/html' } });
      assert.equal(res.status, 200, path);
      assert.match(await res.text(), /<div id="root">/, path);
      assert.equal(res.headers.get('cache-control'), 'no-cache', path);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self';.*frame-ancestors 'none'/, path);
    }
    const api = await fetch(`${world.cp.url}${API_BASE}/nope`, { headers: { accept: 'text/html' } });
    assert.equal(api.status, 404);
    assert.equal((await api.json() as { error: { code: string } }).error.code, 'not_found');
    const docs = await fetch(`${world.cp.url}/docs`, { redirect: 'follow' });
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /swagger/i);
  });

  test('the API reference at /docs lists every operation, with request bodies and their examples', async () => {
    const page = await (await world.browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    await page.goto(`${world.cp.url}/docs`);
    const enqueue = page.locator('.opblock').filter({ hasText: `${API_BASE}/jobs` }).filter({ hasText: 'Enqueue a job' });
    await enqueue.waitFor();
    const spec = await (await fetch(`${world.cp.url}/.well-known/openapi`)).json() as { paths: Record<string, object> };
    const operations = Object.values(spec.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
    assert.equal(await page.locator('.opblock').count(), operations);
    await screenshot(page, 'api-reference');
    await enqueue.locator('.opblock-summary').click();
    await page.getByText('"invoiceId": "inv-1042"').first().waitFor();
    await page.close();
  });

  test('sign in with an open server shows the navigation and a submitted job on the jobs page', async () => {
    const made = await fetch(`${world.cp.url}${API_BASE}/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant-id': 'default' },
      body: JSON.stringify({ jobType: 'console-smoke', payload: { n: 1 } }),
    });
    assert.equal(made.status, 201);
    const job = await made.json() as { id: string };
    const page = await signIn(world.browser, world.cp.url, '');
    await page.getByRole('link', { name: 'Jobs', exact: true }).click();
    await page.getByRole('link', { name: job.id, exact: true }).waitFor();
    await page.close();
  });
});
