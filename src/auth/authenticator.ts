import type { Config } from '../config/config.ts';
import { HttpError } from '../wire.ts';
import type { JwtVerifier } from './jwt.ts';
import { OPEN_PRINCIPAL, type Principal } from './principal.ts';
import type { ApiTokens } from './tokens.ts';

/** 401 and 429 from authentication; the message never says which part of a token was wrong. */
export class AuthError extends HttpError {}

const WINDOW_MS = 60_000;
/** Clients tracked for failed attempts; beyond this the oldest window is forgotten first. */
const MAX_TRACKED = 100_000;

/**
 * Turns an Authorization header into a principal: an API token ("orch_..."),
 * else a JWT when a JWT source is configured. In "open" mode every caller is
 * the open principal. Clients that fail too often in a minute get 429 before
 * their token is even looked at, so guessing is slow.
 */
export class Authenticator {
  private readonly failures = new Map<string, { since: number; n: number }>();

  constructor(private readonly auth: Config['auth'], private readonly tokens: ApiTokens, private readonly jwt: JwtVerifier | null) {}

  get open(): boolean {
    return this.auth.mode === 'open';
  }

  async authenticate(authorization: string | undefined, client: string): Promise<Principal> {
    if (this.open) return OPEN_PRINCIPAL;
    const now = Date.now();
    const f = this.failures.get(client);
    if (f && now - f.since < WINDOW_MS && f.n >= this.auth.failedPerMinute) {
      throw new AuthError(429, 'too_many_failed_authentications', 'authorization', `too many failed authentications; retry in ${Math.ceil((f.since + WINDOW_MS - now) / 1000)}s`);
    }
    const bearer = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(authorization ?? '')?.[1];
    const principal = bearer ? await this.verify(bearer) : null;
    if (principal) return principal;
    this.fail(client, now);
    throw new AuthError(401, 'unauthenticated', 'authorization', bearer ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>');
  }

  private async verify(bearer: string): Promise<Principal | null> {
    if (bearer.startsWith('orch_')) return this.tokens.verify(bearer);
    if (!this.jwt) return null;
    return this.jwt.verify(bearer).catch(() => null);
  }

  private fail(client: string, now: number): void {
    const f = this.failures.get(client);
    if (f && now - f.since < WINDOW_MS) f.n++;
    else {
      this.failures.delete(client);
      if (this.failures.size >= MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(client, { since: now, n: 1 });
    }
  }
}
