import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { recordAudit } from '../audit/audit-log.ts';
import { withTransaction } from '../ledger/db.ts';
import { JobTypes } from '../ledger/job-types.ts';
import { validateTenant } from '../ledger/validate.ts';
import { LedgerError } from '../ledger/errors.ts';
import { isScope, type Principal, type Scope } from './principal.ts';

/** An API token as listed: never its secret. */
export interface ApiTokenInfo {
  id: string;
  subject: string;
  tenants: string[];
  scopes: Scope[];
  jobTypes: string[] | null;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface NewToken {
  subject: string;
  tenants: string[];
  scopes: string[];
  jobTypes?: string[] | null;
  /** Seconds until it expires; omitted = never. */
  ttlSeconds?: number | null;
}

const TOKEN_RE = /^orch_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;
/** A verified token is trusted this long before it is looked up again, so a revocation takes effect within it. */
export const TOKEN_CACHE_MS = 5000;
const SUBJECT_RE = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/;

const sha256 = (s: string) => createHash('sha256').update(s).digest();
const toUuid = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;

interface TokenRow {
  id: string; subject: string; tenants: string[]; scopes: string[]; job_types: string[] | null; secret_hash: Buffer;
  created_at: Date; created_by: string; expires_at: Date | null; revoked_at: Date | null;
}

const toInfo = (r: TokenRow): ApiTokenInfo => ({
  id: r.id, subject: r.subject, tenants: r.tenants, scopes: r.scopes.filter(isScope), jobTypes: r.job_types,
  createdAt: r.created_at.toISOString(), createdBy: r.created_by, expiresAt: r.expires_at?.toISOString() ?? null, revokedAt: r.revoked_at?.toISOString() ?? null,
});

/**
 * Static API tokens (`orch tokens create|list|revoke`): "orch_<id>_<secret>".
 * Only the secret's SHA-256 is stored; verification looks the id up and
 * compares hashes in constant time.
 */
export class ApiTokens {
  private readonly cache = new Map<string, { principal: Principal | null; until: number }>();

  constructor(private readonly pool: pg.Pool) {}

  /** Creates a token, with its audit entry; the returned `token` is shown once and cannot be recovered. */
  async create(t: NewToken, createdBy: string, requestId: string | null = null): Promise<{ token: string; info: ApiTokenInfo }> {
    if (!SUBJECT_RE.test(t.subject)) throw new LedgerError('invalid', 'subject', 'subject must be 1 to 128 letters, digits or _.@:-');
    if (t.tenants.length === 0) throw new LedgerError('invalid', 'tenants', 'name at least one tenant, or "*"');
    for (const tenant of t.tenants) if (tenant !== '*') validateTenant(tenant, 'tenants');
    if (t.scopes.length === 0) throw new LedgerError('invalid', 'scopes', 'name at least one scope');
    for (const s of t.scopes) if (!isScope(s)) throw new LedgerError('invalid', 'scopes', `unknown scope "${s}"`);
    for (const jt of t.jobTypes ?? []) JobTypes.validateName(jt, 'jobTypes');
    if (t.ttlSeconds != null && !(Number.isInteger(t.ttlSeconds) && t.ttlSeconds > 0)) throw new LedgerError('invalid', 'ttlSeconds', 'ttlSeconds must be a positive integer');
    const id = randomUUID();
    const secret = randomBytes(32).toString('base64url');
    const info = await withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<TokenRow>(
        `INSERT INTO orch.api_tokens (id, subject, tenants, scopes, job_types, secret_hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8::int IS NULL THEN NULL ELSE now() + make_interval(secs => $8::int) END) RETURNING *`,
        [id, t.subject, [...new Set(t.tenants)], [...new Set(t.scopes)], t.jobTypes?.length ? [...new Set(t.jobTypes)] : null, sha256(secret), createdBy, t.ttlSeconds ?? null],
      );
      const made = toInfo(rows[0]!);
      await recordAudit(tx, {
        actor: createdBy, tenantId: null, action: 'token.create', target: `token:${id}`, reason: null, ticket: null, requestId, result: 'ok',
        details: { subject: made.subject, tenants: made.tenants, scopes: made.scopes, jobTypes: made.jobTypes, expiresAt: made.expiresAt },
      });
      return made;
    });
    return { token: `orch_${id.replace(/-/g, '')}_${secret}`, info };
  }

  async list(includeRevoked = false): Promise<ApiTokenInfo[]> {
    const { rows } = await this.pool.query<TokenRow>(
      `SELECT * FROM orch.api_tokens ${includeRevoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY created_at, id`);
    return rows.map(toInfo);
  }

  /** One token, revoked or not; null when there is none with that id. */
  async get(id: string): Promise<ApiTokenInfo | null> {
    const { rows } = await this.pool.query<TokenRow>('SELECT * FROM orch.api_tokens WHERE id = $1', [id]);
    return rows[0] ? toInfo(rows[0]) : null;
  }

  /** Revokes a token (idempotent), with its audit entry; not_found when there is none with that id. */
  async revoke(id: string, revokedBy: string, requestId: string | null = null): Promise<ApiTokenInfo> {
    const info = await withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<TokenRow>(
        'UPDATE orch.api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *', [id]);
      if (rows.length === 0) throw new LedgerError('not_found', 'id', `no token ${id}`);
      await recordAudit(tx, { actor: revokedBy, tenantId: null, action: 'token.revoke', target: `token:${id}`, reason: null, ticket: null, requestId, result: 'ok' });
      return toInfo(rows[0]!);
    });
    this.cache.clear();
    return info;
  }

  /** The principal of a bearer string shaped like an API token, or null when it is not a valid, live token. */
  async verify(bearer: string): Promise<Principal | null> {
    const m = TOKEN_RE.exec(bearer);
    if (!m) return null;
    const key = sha256(bearer).toString('hex');
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.principal;
    const { rows } = await this.pool.query<TokenRow>(
      'SELECT * FROM orch.api_tokens WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())', [toUuid(m[1]!)]);
    const row = rows[0];
    const given = sha256(m[2]!);
    // compare even when the id is unknown, against itself, so both paths do the same work
    const match = timingSafeEqual(given, row ? row.secret_hash : given) && row !== undefined;
    const principal: Principal | null = match ? {
      kind: 'token', subject: row.subject, tenants: row.tenants.includes('*') ? '*' : row.tenants,
      scopes: new Set(row.scopes.filter(isScope)), jobTypes: row.job_types, tokenId: row.id,
    } : null;
    if (this.cache.size > 10_000) this.cache.clear();
    // trusted for the cache time, but never past the token's own expiry
    const until = Math.min(Date.now() + TOKEN_CACHE_MS, row?.expires_at?.getTime() ?? Infinity);
    this.cache.set(key, { principal, until });
    return principal;
  }
}
