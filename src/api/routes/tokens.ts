import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import { actorOf, allowsTenant, SCOPES } from '../../auth/principal.ts';
import type { ApiTokenInfo } from '../../auth/tokens.ts';
import { authorizeTenant } from '../tenant.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { ErrorBody, IsoTime, JobTypeName, Nullable, Uuid } from '../schemas.ts';

const TokenInfo = Type.Object({
  id: Uuid, subject: Type.String(), tenants: Type.Array(Type.String()), scopes: Type.Array(Type.String()),
  jobTypes: Nullable(Type.Array(Type.String())), createdAt: IsoTime, createdBy: Type.String(), expiresAt: Nullable(IsoTime), revokedAt: Nullable(IsoTime),
});

/** An admin sees and revokes only tokens confined to tenants its own token covers. */
const manages = (request: FastifyRequest, t: ApiTokenInfo) => t.tenants.every((tenant) => allowsTenant(request.principal, tenant));

/** API tokens (orch tokens create|list|revoke); the secret is returned once, at creation. */
export function tokenRoutes(app: App, ctx: ApiContext): void {
  const { tokens } = ctx.auth;

  app.post('/tokens', {
    config: { scope: 'orch:admin' },
    schema: {
      summary: 'Create an API token', tags: ['tokens'],
      body: Type.Object({
        subject: Type.String({ minLength: 1, maxLength: 128 }),
        tenants: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 1000, description: '"*" for every tenant' }),
        scopes: Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))), { minItems: 1, maxItems: SCOPES.length }),
        jobTypes: Type.Optional(Type.Array(JobTypeName, { maxItems: 1000, description: 'orch:worker: the job types it may claim' })),
        ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 365 * 24 * 3600 })),
      }, { additionalProperties: false }),
      response: { 201: Type.Object({ token: Type.String(), info: TokenInfo }), 400: ErrorBody },
    },
  }, async (request, reply) => {
    // a token never grants more than its creator holds
    for (const t of request.body.tenants) authorizeTenant(request, t);
    const missing = request.body.scopes.find((s) => !request.principal.scopes.has(s));
    if (missing) throw new ApiError(403, 'forbidden', 'scopes', `a token cannot grant ${missing}, which yours does not hold`);
    const own = request.principal.jobTypes;
    if (own !== null && (!request.body.jobTypes?.length || request.body.jobTypes.some((t) => !own.includes(t)))) {
      throw new ApiError(403, 'forbidden', 'jobTypes', `a token cannot reach job types beyond yours (${own.join(', ')})`);
    }
    const created = await tokens.create(request.body, actorOf(request.principal), request.id);
    return reply.status(201).send(created);
  });

  app.get('/tokens', {
    config: { scope: 'orch:admin' },
    schema: {
      summary: 'API tokens (without secrets)', tags: ['tokens'],
      querystring: Type.Object({ revoked: Type.Optional(Type.Boolean({ description: 'include revoked tokens' })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ tokens: Type.Array(TokenInfo) }), 400: ErrorBody },
    },
  }, async (request) => ({ tokens: (await tokens.list(request.query.revoked ?? false)).filter((t) => manages(request, t)) }));

  app.delete('/tokens/:id', {
    config: { scope: 'orch:admin' },
    schema: {
      summary: 'Revoke an API token (effective within 5 s on every server)', tags: ['tokens'],
      params: Type.Object({ id: Uuid }), response: { 200: TokenInfo, 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request) => {
    const target = await tokens.get(request.params.id);
    if (!target || !manages(request, target)) throw new ApiError(404, 'not_found', 'id', `no token ${request.params.id}`);
    return tokens.revoke(request.params.id, actorOf(request.principal), request.id);
  });
}
