import type { FastifyRequest } from 'fastify';
import { validateTenant } from '../ledger/validate.ts';
import { allowsTenant } from '../auth/principal.ts';
import { ApiError } from './errors.ts';

/**
 * The caller's tenant from X-Tenant-Id (or the original's X-Stella-Tenant),
 * refused (403) when the caller's token does not cover it; undefined when
 * neither header is sent.
 */
export function optionalTenant(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-tenant-id'] ?? request.headers['x-stella-tenant'];
  if (raw === undefined) return undefined;
  const value = (Array.isArray(raw) ? raw[0] : raw) ?? '';
  validateTenant(value, 'X-Tenant-Id');
  return authorizeTenant(request, value);
}

/** The tenant a request acts for: the header's, or the token's when it names exactly one. */
export function requireTenant(request: FastifyRequest): string {
  const tenant = optionalTenant(request);
  if (tenant !== undefined) return tenant;
  const own = request.principal.tenants;
  if (own !== '*' && own.length === 1) return own[0]!;
  throw new ApiError(400, 'tenant_required', 'X-Tenant-Id', 'the X-Tenant-Id header is required');
}

/** The tenants a request may reach: the header's one, else every tenant of the token (undefined = all). */
export function reachableTenants(request: FastifyRequest): string[] | undefined {
  const tenant = optionalTenant(request);
  if (tenant !== undefined) return [tenant];
  const own = request.principal.tenants;
  return own === '*' ? undefined : [...own];
}

/** Refuses a tenant the caller's token does not cover ("*", every tenant, needs a token for every tenant). */
export function authorizeTenant(request: FastifyRequest, tenantId: string): string {
  if (!allowsTenant(request.principal, tenantId)) {
    throw new ApiError(403, 'tenant_forbidden', 'X-Tenant-Id', tenantId === '*' ? 'acting on every tenant needs a token for every tenant' : `this token does not cover tenant ${tenantId}`);
  }
  return tenantId;
}
