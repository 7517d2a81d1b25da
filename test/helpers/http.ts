/**
 * The one HTTP client of the tests that call the API by hand (the SDK's
 * OrchClient covers the happy paths; these tests also send what the SDK never
 * would). A file binds its server and defaults once with `httpClient`.
 */

export interface HttpOptions {
  body?: unknown;
  /** X-Tenant-Id; null sends none even when the client has a default. */
  tenant?: string | null;
  /** Bearer token; null sends none even when the client has a default. */
  token?: string | null;
  /** X-Operator-Reason and X-Operator-Ticket. */
  reason?: string;
  ticket?: string;
  headers?: Record<string, string>;
}

export interface HttpResult<T> {
  status: number;
  /** Parsed JSON for a JSON response, the text otherwise, null when empty. */
  body: T;
  headers: Headers;
  contentType: string | null;
}

/** One request to `url`: JSON body in, JSON (or text) out; never throws on a status. */
export async function httpRequest<T = any>(url: string, method: string, o: HttpOptions = {}): Promise<HttpResult<T>> {
  const headers: Record<string, string> = {};
  if (o.tenant) headers['x-tenant-id'] = o.tenant;
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.reason !== undefined) headers['x-operator-reason'] = o.reason;
  if (o.ticket !== undefined) headers['x-operator-ticket'] = o.ticket;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  Object.assign(headers, o.headers);
  const res = await fetch(url, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await res.text();
  const contentType = res.headers.get('content-type');
  const body = text === '' ? null : contentType?.includes('application/json') ? JSON.parse(text) : text;
  return { status: res.status, body: body as T, headers: res.headers, contentType };
}

export type HttpClient = <T = any>(method: string, path: string, o?: HttpOptions) => Promise<HttpResult<T>>;

/**
 * A client for `base()` + `prefix` + path with default options (a tenant, a
 * token) that each call may override. `base` is a function so a file can bind
 * the client before its server has started.
 */
export function httpClient(base: () => string, prefix = '', defaults: HttpOptions = {}): HttpClient {
  return (method, path, o = {}) => {
    // an option left undefined keeps the default; null clears it
    const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
    return httpRequest(`${base()}${prefix}${path}`, method, { ...defaults, ...given, headers: { ...defaults.headers, ...o.headers } });
  };
}
