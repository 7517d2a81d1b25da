import { isTenantId, TENANT_PATTERN } from '../wire.ts';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, type JWTVerifyResult } from 'jose';
import type { Config } from '../config/config.ts';
import { isScope, type Principal } from './principal.ts';

/**
 * JWT bearer tokens, verified with jose against a shared HS256 secret or a
 * JWKS (URL or file), checking signature, issuer and audience when configured,
 * expiry and not-before. Claims: `sub`; `tenants` (array, "*" for all) or
 * `tenant`; `scope` (space-separated, as OAuth 2 issues it) or `scopes`;
 * `job_types` for worker tokens.
 */
export class JwtVerifier {
  private constructor(private readonly check: (token: string) => Promise<JWTVerifyResult>) {}

  /** null when no JWT source is configured. */
  static async fromConfig(auth: Config['auth']): Promise<JwtVerifier | null> {
    const options: JWTVerifyOptions = { issuer: auth.issuer, audience: auth.audience, requiredClaims: ['sub', 'exp'] };
    const withKeys = (keys: JWTVerifyGetKey) => new JwtVerifier((token) => jwtVerify(token, keys, options));
    if (auth.jwtSecret) {
      const secret = new TextEncoder().encode(auth.jwtSecret);
      return new JwtVerifier((token) => jwtVerify(token, secret, { ...options, algorithms: ['HS256'] }));
    }
    if (auth.jwksUrl) return withKeys(createRemoteJWKSet(new URL(auth.jwksUrl)));
    if (auth.jwksFile) return withKeys(createLocalJWKSet(JSON.parse(await readFile(auth.jwksFile, 'utf8'))));
    return null;
  }

  /** The principal of a valid token; throws (with jose's reason) when it is not. */
  async verify(token: string): Promise<Principal> {
    return principalOf((await this.check(token)).payload);
  }
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return v.split(' ').filter(Boolean);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function principalOf(p: JWTPayload): Principal {
  const tenants = p.tenants !== undefined ? strings(p.tenants) : strings(p.tenant);
  // A claim like "A,B" is no tenant: refused whole, never read as two tenants anywhere downstream.
  const bad = tenants.find((t) => t !== '*' && !isTenantId(t));
  if (bad !== undefined) throw new Error(`the token's tenant claim "${bad.slice(0, 80)}" is not a tenant id (${TENANT_PATTERN})`);
  const jobTypes = p.job_types === undefined ? null : strings(p.job_types);
  return {
    kind: 'jwt', subject: p.sub!, tenants: tenants.includes('*') ? '*' : tenants,
    scopes: new Set(strings(p.scope ?? p.scopes).filter(isScope)), jobTypes, tokenId: null,
  };
}
