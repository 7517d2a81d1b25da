import { useQuery, useQueryClient } from '@tanstack/react-query';
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from 'react';
import { OrchClient } from '../../src/sdk/client.ts';

/** What GET /whoami answers: the token's subject, tenants and scopes. */
export interface WhoAmI {
  kind: 'token' | 'jwt' | 'open';
  subject: string;
  tenants: '*' | string[];
  scopes: string[];
  jobTypes: string[] | null;
  reasonScopes: string[];
  ticketScopes: string[];
}

interface Session {
  token: string | null;
  tenant: string;
  client: OrchClient;
  me: WhoAmI | undefined;
  /** Why /whoami failed (a wrong token, a token without orch:read), or null. */
  meError: Error | null;
  signIn(token: string): void;
  signOut(): void;
  setTenant(tenant: string): void;
  /** Why the signed-in token may not do what `scope` allows, or null when it may. */
  denied(scope: string): string | null;
}

// sessionStorage: the token lives as long as the browser tab, and no other site can read it
const TOKEN_KEY = 'orch.token';
const TENANT_KEY = 'orch.tenant';
const SessionContext = createContext<Session | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [token, setToken] = useState<string | null>(() => sessionStorage.getItem(TOKEN_KEY));
  const [chosen, setTenantState] = useState<string>(() => sessionStorage.getItem(TENANT_KEY) ?? 'default');
  const queries = useQueryClient();
  const me = useQuery({
    queryKey: ['whoami', token],
    // who the token is does not depend on the tenant
    queryFn: () => new OrchClient({ apiUrl: window.location.origin, token: token ?? undefined }).http.request<WhoAmI>('GET', '/whoami'),
    enabled: token !== null,
    staleTime: 60_000,
  });
  // a token of some tenants acts for one of them: the one chosen if it may, else its first
  const allowed = me.data?.tenants;
  const tenant = Array.isArray(allowed) && allowed[0] !== undefined && !allowed.includes(chosen) ? allowed[0] : chosen;
  const client = useMemo(() => new OrchClient({ apiUrl: window.location.origin, token: token ?? undefined, tenant }), [token, tenant]);
  const signIn = useCallback((t: string) => {
    sessionStorage.setItem(TOKEN_KEY, t);
    setToken(t);
  }, []);
  const signOut = useCallback(() => {
    sessionStorage.removeItem(TOKEN_KEY);
    setToken(null);
    queries.clear();
  }, [queries]);
  const setTenant = useCallback((t: string) => {
    sessionStorage.setItem(TENANT_KEY, t);
    setTenantState(t);
    queries.removeQueries({ predicate: (q) => q.queryKey[0] !== 'whoami' });
  }, [queries]);
  const denied = useCallback((scope: string) => {
    if (!me.data) return 'not signed in';
    return me.data.scopes.includes(scope) ? null : `this token (${me.data.subject}) lacks the ${scope} scope`;
  }, [me.data]);
  const value = useMemo(() => ({ token, tenant, client, me: me.data, meError: me.error, signIn, signOut, setTenant, denied }), [token, tenant, client, me.data, me.error, signIn, signOut, setTenant, denied]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionProvider');
  return s;
}

/** The signed-in session's API client and tenant, for pages (which render only once signed in). */
export function useClient(): OrchClient {
  return useSession().client;
}

