import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyReply } from 'fastify';
import { API_BASE } from '../wire.ts';
import type { App } from './context.ts';

/**
 * The browser console's build (vite, `npm run build`): beside this module
 * once compiled (dist/api -> dist/console), or under dist/ when the server
 * runs from its TypeScript sources (src/api -> dist/console).
 */
const CONSOLE_DIRS = ['../console/', '../../dist/console/'].map((p) => fileURLToPath(new URL(p, import.meta.url)));

/** Paths that are never console pages: a miss there stays the API's JSON 404. */
const NOT_PAGES = [API_BASE, '/docs', '/metrics', '/healthz', '/readyz', '/.well-known', '/assets'];

/**
 * The operator console at `/` (a single-page app: any other GET that asks
 * for HTML gets its index, and the app's router draws the page) and the API
 * reference at `/docs` (Swagger UI over /.well-known/openapi), on the API's
 * own port. Both are static files shipped in the package: no CDN.
 */
export async function installConsole(app: App, consoleDir: string | null): Promise<(reply: FastifyReply) => FastifyReply> {
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true, tryItOutEnabled: false }, staticCSP: true });
  const root = (consoleDir ? [path.resolve(consoleDir) + path.sep] : CONSOLE_DIRS).find((dir) => existsSync(`${dir}index.html`));
  if (!root) {
    const notBuilt = (reply: FastifyReply) => reply.type('text/html; charset=utf-8').send(NOT_BUILT);
    app.get('/', { schema: { hide: true } }, async (_request, reply) => notBuilt(reply));
    return notBuilt;
  }
  await app.register(fastifyStatic, { root, prefix: '/', wildcard: false, index: ['index.html'], cacheControl: false, setHeaders: cacheHeaders });
  app.get('/assets/*', { schema: { hide: true } }, async (request, reply) => reply.sendFile(`assets/${(request.params as { '*': string })['*']}`, { immutable: true, maxAge: '365d' }));
  return (reply) => pageHeaders(reply).sendFile('index.html');
}

/** Whether a request that matched no route is a console page (the SPA's index answers it). */
export function isConsolePage(method: string, url: string, accept: string | undefined): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const path = url.split('?')[0] ?? '/';
  if (NOT_PAGES.some((p) => path === p || path.startsWith(`${p}/`))) return false;
  return (accept ?? '').includes('text/html');
}

function cacheHeaders(reply: FastifyReply, path: string): void {
  // the index names hashed assets: it must never be cached, they may be forever
  if (path.endsWith('.html')) void pageHeaders(reply);
}

/**
 * A console page runs only its own scripts and talks only to its own origin
 * (no CDN, no third party: an injected script has nowhere to load from or send
 * to); inline styles stay allowed for the chart and graph libraries; no site
 * may frame it (clickjacking an operator's actions).
 */
const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-cache').header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-frame-options', 'DENY');
}

const NOT_BUILT = `<!doctype html><html lang="en"><title>orch</title><body>
<h1>orch</h1><p>The console is not built in this checkout: run <code>npm run build</code> (npm install runs it).</p>
<p>The API reference is at <a href="/docs">/docs</a>.</p></body></html>`;
