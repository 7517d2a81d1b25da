import { fetchEventSource } from '@microsoft/fetch-event-source';
import { useQueryClient, type QueryKey } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import type { OrchEvent } from '../../../src/events/envelope.ts';
import { API_BASE } from '../../../src/wire.ts';
import { useSession } from '../session.tsx';

export type { OrchEvent };

export interface StreamFilter {
  jobType?: string;
  jobId?: string;
  eventType?: string[];
}

/**
 * The tenant's live events (GET /stream, Server-Sent Events) for as long as
 * the component is mounted. fetch-event-source rather than EventSource: the
 * stream needs the Authorization and X-Tenant-Id headers; it reconnects with
 * Last-Event-ID, so nothing is missed across a server restart.
 */
export function useLiveEvents(filter: StreamFilter, onEvent: (e: OrchEvent) => void): { connected: boolean } {
  const { token, tenant } = useSession();
  const [connected, setConnected] = useState(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const key = JSON.stringify(filter);
  useEffect(() => {
    const abort = new AbortController();
    const params = new URLSearchParams();
    const f = JSON.parse(key) as StreamFilter;
    if (f.jobType) params.set('jobType', f.jobType);
    if (f.jobId) params.set('jobId', f.jobId);
    for (const t of f.eventType ?? []) params.append('eventType', t);
    void fetchEventSource(`${API_BASE}/stream?${params}`, {
      signal: abort.signal,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'x-tenant-id': tenant },
      openWhenHidden: true,
      onopen: async (res) => {
        if (!res.ok) throw new Error(`stream: HTTP ${res.status}`);
        setConnected(true);
      },
      onmessage: (m) => {
        if (!m.data) return;
        try {
          handler.current(JSON.parse(m.data) as OrchEvent);
        } catch {
          // a message that is not an envelope (none are sent today) is skipped, not fatal
        }
      },
      onclose: () => setConnected(false),
      // reconnect after a second on any error (server restart, network), as EventSource would
      onerror: () => {
        setConnected(false);
        return 1_000;
      },
    });
    return () => abort.abort();
  }, [key, token, tenant]);
  return { connected };
}

/** Events are gathered this long before the queries they touch refetch once: a busy tenant sends hundreds a second. */
const REFRESH_AFTER_MS = 500;

/**
 * Refetches `keys` when events of `filter` arrive (those `when` accepts),
 * at most once per REFRESH_AFTER_MS, and without cancelling a refetch already
 * on its way (a busy stream would otherwise restart the same request over and
 * over). Progress events are left out unless the filter names a job.
 */
export function useLiveRefresh(filter: StreamFilter, keys: QueryKey[], when?: (e: OrchEvent) => boolean): { connected: boolean } {
  const queries = useQueryClient();
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  const latest = useRef({ keys, when });
  latest.current = { keys, when };
  useEffect(() => () => {
    if (pending.current) clearTimeout(pending.current);
  }, []);
  return useLiveEvents(filter, (e) => {
    if (e.eventType === 'job.progress' && !filter.jobId) return;
    if (latest.current.when && !latest.current.when(e)) return;
    pending.current ??= setTimeout(() => {
      pending.current = null;
      for (const queryKey of latest.current.keys) void queries.invalidateQueries({ queryKey }, { cancelRefetch: false });
    }, REFRESH_AFTER_MS);
  });
}
