import type { FastifyRequest } from 'fastify';
import { validateTenant } from '../ledger/validate.ts';
import { ApiError } from './errors.ts';

/** The caller's tenant from X-Tenant-Id (or the original's X-Stella-Tenant); undefined when neither is sent. */
export function optionalTenant(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-tenant-id'] ?? request.headers['x-stella-tenant'];
  if (raw === undefined) return undefined;
  const value = (Array.isArray(raw) ? raw[0] : raw) ?? '';
  validateTenant(value, 'X-Tenant-Id');
  return value;
}

export function requireTenant(request: FastifyRequest): string {
  const tenant = optionalTenant(request);
  if (tenant === undefined) throw new ApiError(400, 'tenant_required', 'X-Tenant-Id', 'the X-Tenant-Id header is required');
  return tenant;
}
