import { API_BASE, HttpError } from '../wire.ts';

/** An error the orchestrator's API returned: HTTP status plus its { error: { code, message, field } } body. */
export class OrchApiError extends HttpError {}

export interface HttpOptions {
  /** e.g. http://127.0.0.1:8080 (the API base path is added). */
  apiUrl: string;
  token?: string;
  tenant?: string;
}

/** JSON over fetch against the API base path; non-2xx answers throw OrchApiError. */
export class HttpClient {
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(opts: HttpOptions) {
    this.base = opts.apiUrl.replace(/\/+$/, '') + API_BASE;
    this.headers = {};
    if (opts.token) this.headers.authorization = `Bearer ${opts.token}`;
    if (opts.tenant) this.headers['x-tenant-id'] = opts.tenant;
  }

  async request<T>(method: string, path: string, body?: unknown, extra: { signal?: AbortSignal; headers?: Record<string, string> } = {}): Promise<T> {
    const res = await fetch(this.base + path, {
      method,
      headers: { ...this.headers, ...extra.headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: extra.signal,
    }).catch((err: unknown) => failed(err, method, path));
    if (!res.ok) await HttpClient.throwFor(res);
    const text = await res.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  /** The response itself, for bodies that are not JSON (downloads); non-2xx answers throw like request(). */
  async raw(method: string, path: string): Promise<Response> {
    const res = await fetch(this.base + path, { method, headers: this.headers }).catch((err: unknown) => failed(err, method, path));
    if (!res.ok) await HttpClient.throwFor(res);
    return res;
  }

  private static async throwFor(res: Response): Promise<never> {
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    const e = (parsed as { error?: { code?: string; message?: string; field?: string | null } } | null)?.error;
    throw new OrchApiError(res.status, e?.code ?? 'http_error', e?.field ?? null, e?.message ?? `HTTP ${res.status}`);
  }
}

/**
 * fetch() reports every transport failure as a bare "fetch failed"; the
 * cause (refused, reset, closed by the other side) is what an operator needs.
 */
function failed(err: unknown, method: string, path: string): never {
  if (err instanceof Error && err.name === 'AbortError') throw err;
  const cause = err instanceof Error ? (err.cause instanceof Error ? `${(err.cause as NodeJS.ErrnoException).code ?? ''} ${err.cause.message}`.trim() : err.message) : String(err);
  throw new TypeError(`fetch failed: ${method} ${path}: ${cause}`, { cause: err });
}
