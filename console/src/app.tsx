import { NavLink, Route, Routes } from 'react-router';
import { SignIn } from './pages/sign-in.tsx';
import { useSession } from './session.tsx';
import { ErrorNote } from './components/status.tsx';
import { PAGES } from './pages/index.ts';

/** The shell: sign-in until a token is accepted, then the navigation, the tenant switcher and the page. */
export function App() {
  const { token, me, meError, signOut } = useSession();
  if (token === null || meError) return <SignIn error={meError} />;
  if (!me) return <main><p aria-busy="true">Signing in…</p></main>;
  return (
    <div className="shell">
      <header>
        <a className="brand" href="/">orch</a>
        <TenantSwitcher />
        <span className="who" title={`scopes: ${me.scopes.join(' ')}`}>{me.subject}</span>
        <button type="button" onClick={signOut}>Sign out</button>
      </header>
      <nav aria-label="Pages">
        <ul>
          {PAGES.filter((p) => p.nav).map((p) => (
            <li key={p.path}><NavLink to={p.path} end={p.path === '/'}>{p.nav}</NavLink></li>
          ))}
          <li><a href="/docs">API reference</a></li>
        </ul>
      </nav>
      <main>
        <Routes>
          {PAGES.map((p) => <Route key={p.path} path={p.path} element={<p.page />} />)}
          <Route path="*" element={<ErrorNote error={{ status: 404, code: 'not_found', message: 'no such console page' }} />} />
        </Routes>
      </main>
    </div>
  );
}

/** The tenant the console acts for: a list for a token of some tenants, free text for a token of every tenant. */
function TenantSwitcher() {
  const { me, tenant, setTenant } = useSession();
  if (!me) return null;
  if (me.tenants === '*') {
    return (
      <form className="tenant" onSubmit={(e) => { e.preventDefault(); const v = new FormData(e.currentTarget).get('tenant'); if (typeof v === 'string' && v) setTenant(v); }}>
        <label>Tenant <input name="tenant" defaultValue={tenant} key={tenant} pattern="[A-Za-z0-9][A-Za-z0-9_\-]{0,63}" size={12} /></label>
        <button type="submit">Switch</button>
      </form>
    );
  }
  return (
    <label className="tenant">Tenant{' '}
      <select value={tenant} onChange={(e) => setTenant(e.target.value)}>
        {me.tenants.map((t) => <option key={t} value={t}>{t}</option>)}
      </select>
    </label>
  );
}
