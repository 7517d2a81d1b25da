import type { ApiContext, App } from '../context.ts';

/** Probes and metrics, outside the API base path as surface.md fixes them. */
export function opsRoutes(app: App, ctx: ApiContext): void {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const r = await ctx.readiness();
    const degraded = Object.values(r.checks).some((c) => c.degraded);
    return reply.status(r.ok ? 200 : 503).send({ status: r.ok ? (degraded ? 'degraded' : 'ready') : 'not_ready', checks: r.checks });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const body = await ctx.metrics.scrape();
    return reply.type(ctx.metrics.registry.contentType).send(body);
  });
}
