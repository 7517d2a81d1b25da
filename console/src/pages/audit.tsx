import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import type { AuditRecord } from '../../../src/audit/audit-log.ts';
import { time } from '../components/format.ts';
import { JsonDetails } from '../components/json.tsx';
import { PagedTable, useUrlFilters } from '../components/paging.tsx';
import { StateBadge } from '../components/status.tsx';
import { fromUtcInput } from '../components/when.tsx';
import { useClient } from '../session.tsx';
import '../components/timeline.css';

const column = createColumnHelper<AuditRecord>();
const COLUMNS = [
  column.accessor('at', { header: 'When', cell: (c) => <time dateTime={c.getValue()}>{time(c.getValue())}</time> }),
  column.accessor('actor', { header: 'Actor' }),
  column.accessor('action', { header: 'Action', cell: (c) => <code>{c.getValue()}</code> }),
  column.accessor('target', { header: 'Target' }),
  column.accessor('tenantId', { header: 'Tenant', cell: (c) => c.getValue() ?? <span className="muted">every tenant</span> }),
  column.accessor('reason', { header: 'Reason', cell: (c) => c.getValue() ?? '' }),
  column.accessor('ticket', { header: 'Ticket', cell: (c) => c.getValue() ?? '' }),
  column.accessor('result', { header: 'Result', cell: (c) => <StateBadge state={c.getValue()} /> }),
  column.accessor('details', { header: 'Details', cell: (c) => <JsonDetails summary="details" value={c.getValue()} /> }),
];

/** The audit log of operator actions, newest first: filters in the URL, a page at a time (keyset on the entry id). */
export function AuditPage() {
  const client = useClient();
  const url = useUrlFilters('cursor');
  const since = url.get('since');
  const filter = { action: url.get('action'), actor: url.get('actor'), since: fromUtcInput(since) ?? undefined, cursor: url.get('cursor'), limit: 50 };
  const audit = useQuery({ queryKey: ['audit', filter], queryFn: () => client.listAudit(filter), placeholderData: keepPreviousData });
  return (
    <section>
      <h1>Audit log</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>Action <input value={filter.action ?? ''} onChange={(e) => url.set('action', e.target.value.trim())} placeholder="schedule.trigger" /></label>
        <label>Actor <input value={filter.actor ?? ''} onChange={(e) => url.set('actor', e.target.value.trim())} placeholder="operator:alice" /></label>
        <label>Since (UTC) <input type="datetime-local" value={since ?? ''} onChange={(e) => url.set('since', e.target.value)} /></label>
      </form>
      <PagedTable query={audit} rows={(page) => page.entries} label="Audit log" columns={COLUMNS} rowId={(e) => e.id} empty="No entry matches."
        cursor={filter.cursor} onPage={(c) => url.set('cursor', c)} />
    </section>
  );
}
