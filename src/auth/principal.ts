/**
 * Scopes a token can carry. Every API route declares the one it needs
 * (src/api/auth.ts refuses to start a route without one).
 *   orch:read      view jobs, queues, controls, DLQ, leases, audit, events
 *   orch:write     enqueue
 *   orch:operate   pause, resume, cancel, replay, DLQ snapshot and clear, lease release, job type settings
 *   orch:quota     quotas and boosts
 *   orch:backfill  start, pause, resume, cancel and retry backfills
 *   orch:worker    claim, heartbeat and ack, for the job types the token names
 *   orch:admin     API tokens
 */
export const SCOPES = ['orch:read', 'orch:write', 'orch:operate', 'orch:quota', 'orch:backfill', 'orch:worker', 'orch:admin'] as const;
export type Scope = (typeof SCOPES)[number];

export const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);

/** Actions of these scopes need X-Operator-Reason; quota and backfill also X-Operator-Ticket. */
export const REASON_SCOPES: ReadonlySet<Scope> = new Set(['orch:operate', 'orch:quota', 'orch:backfill']);
export const TICKET_SCOPES: ReadonlySet<Scope> = new Set(['orch:quota', 'orch:backfill']);

/** Who is calling, as a verified token says. */
export interface Principal {
  /** "token", "jwt", or "open" (no authentication configured, loopback only). */
  kind: 'token' | 'jwt' | 'open';
  subject: string;
  /** The tenants it may act for; "*" = every tenant (and actions across tenants). */
  tenants: readonly string[] | '*';
  scopes: ReadonlySet<Scope>;
  /** orch:worker: the job types it may claim; null = any. */
  jobTypes: readonly string[] | null;
  /** The API token's id, for the audit log. */
  tokenId: string | null;
}

/** The caller when the server runs open: every scope, every tenant. */
export const OPEN_PRINCIPAL: Principal = { kind: 'open', subject: 'anonymous', tenants: '*', scopes: new Set(SCOPES), jobTypes: null, tokenId: null };

export const allowsTenant = (p: Principal, tenantId: string): boolean => p.tenants === '*' || p.tenants.includes(tenantId);

/** Whether a row of `tenantId` is the caller's to see: its own tenants' rows, and rows that apply to every tenant ("*"). */
export const sees = (p: Principal, tenantId: string): boolean => tenantId === '*' || allowsTenant(p, tenantId);

export const allowsJobType = (p: Principal, jobType: string): boolean => p.jobTypes === null || p.jobTypes.includes(jobType);

/** "kind:subject" ("token:ci-deployer", "jwt:alice"), or "anonymous" on an open server, as history, audit log and events record actors. */
export const actorOf = (p: Principal): string => (p.kind === 'open' ? p.subject : `${p.kind}:${p.subject}`);

/** Who an ack is recorded as: the caller's token, or (no authentication) null, which the ledger records as the lease's holder. */
export const ackActorOf = (p: Principal): string | null => (p.kind === 'open' ? null : actorOf(p));
