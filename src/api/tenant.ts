import type { FastifyRequest } from 'fastify';
import { TENANT_PATTERN } from '../ledger/validate.ts';
import { ApiError } from './errors.ts';

const TENANT_RE = new RegExp(TENANT_PATTERN);

/** The caller's tenant from X-Tenant-Id (or the original's X-Stella-Tenant); undefined when neither is sent. */
export function optionalTenant(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-tenant-id'] ?? request.headers['x-stella-tenant'];
  if (raw === undefined) return undefined;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || !TENANT_RE.test(value)) {
    throw new ApiError(400, 'invalid', 'X-Tenant-Id', `X-Tenant-Id must match ${TENANT_PATTERN}`);
  }
  return value;
}

export function requireTenant(request: FastifyRequest): string {
  const tenant = optionalTenant(request);
  if (tenant === undefined) throw new ApiError(400, 'tenant_required', 'X-Tenant-Id', 'the X-Tenant-Id header is required');
  return tenant;
}
