import type { Authenticator } from '../auth/authenticator.ts';
import { REASON_SCOPES, TICKET_SCOPES, type Principal, type Scope } from '../auth/principal.ts';
import { API_BASE } from '../wire.ts';
import type { App } from './context.ts';
import { ApiError } from './errors.ts';
import { operatorAction } from './operator.ts';
import { authorizeTenant, optionalTenant } from './tenant.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a caller's token must hold; every route under the API base declares one. */
    scope?: Scope;
  }
  interface FastifyRequest {
    principal: Principal;
  }
}

/**
 * Authentication and scopes for every API route: a route under the API base
 * without a declared scope stops the server from starting; the scope goes
 * into the OpenAPI document (security requirement); each request is
 * authenticated before its body is validated, and refused (403) without the
 * route's scope. Operator scopes also need X-Operator-Reason, quota and
 * backfill X-Operator-Ticket, before anything runs.
 */
export function installAuth(app: App, authenticator: Authenticator): void {
  app.decorateRequest('principal', null as unknown as Principal);
  app.decorateRequest('operator', null);

  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(API_BASE)) return;
    const scope = route.config?.scope;
    if (!scope) throw new Error(`route ${route.method} ${route.url} declares no scope`);
    const headers = REASON_SCOPES.has(scope) ? ` Needs X-Operator-Reason${TICKET_SCOPES.has(scope) ? ' and X-Operator-Ticket' : ''}.` : '';
    route.schema = { ...route.schema, security: [{ bearer: [scope] }], description: `${route.schema?.description ?? ''}\n\nScope: \`${scope}\`.${headers}`.trim() };
  });

  app.addHook('onRequest', async (request) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return;
    const principal = await authenticator.authenticate(request.headers.authorization, request.ip);
    request.principal = principal;
    if (!principal.scopes.has(scope)) throw new ApiError(403, 'forbidden', 'authorization', `this needs the ${scope} scope`);
  });

  // After schema validation, so a malformed request hears about its fields first: the tenant
  // header and a tenant named in the path or query must be the token's; then the operator headers.
  app.addHook('preHandler', async (request) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return;
    optionalTenant(request);
    for (const source of [request.params, request.query]) {
      const tenantId = (source as { tenantId?: unknown } | undefined)?.tenantId;
      if (typeof tenantId === 'string') authorizeTenant(request, tenantId);
    }
    request.operator = operatorAction(request, scope);
  });
}

