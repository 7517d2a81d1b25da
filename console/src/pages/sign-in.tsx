import { useState } from 'react';
import { useSession } from '../session.tsx';
import { ErrorNote } from '../components/status.tsx';

/** Sign-in with an API token (orch tokens create); an open server (no tokens configured) takes an empty one. */
export function SignIn({ error }: { error: Error | null }) {
  const { signIn } = useSession();
  const [token, setToken] = useState('');
  return (
    <main className="sign-in">
      <h1>orch console</h1>
      <form onSubmit={(e) => { e.preventDefault(); signIn(token.trim()); }}>
        <label>API token
          <input name="token" type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} />
        </label>
        <p className="muted">Create one with <code>orch tokens create --subject NAME --tenants '*' --scopes orch:read,orch:operate</code>; leave it empty on a server with no tokens configured (loopback only).</p>
        {error && <ErrorNote error={error} />}
        <button type="submit" className="primary">Sign in</button>
      </form>
    </main>
  );
}
