import { useCallback } from 'react';
import type { ColumnDef } from '@tanstack/react-table';
import { useSearchParams } from 'react-router';
import { Loaded } from './status.tsx';
import { DataTable } from './table.tsx';

/**
 * A list's filters and page cursor in the URL, so that a link shares the
 * view; changing a filter goes back to the first page (`cursorKey`, for a
 * paged list), since the cursor of one filter means nothing to another.
 */
export interface UrlFilters {
  get: (key: string) => string | undefined;
  set: (key: string, value: string | undefined) => void;
  /** Several keys at once (one history entry); an empty value removes its key. */
  setMany: (changes: Record<string, string | undefined>) => void;
  params: URLSearchParams;
}

export function useUrlFilters(cursorKey?: string): UrlFilters {
  const [params, setParams] = useSearchParams();
  // as stable as react-router's setter: a page may hand it to memoised children
  const setMany = useCallback((changes: Record<string, string | undefined>) => setParams((p) => {
    const next = new URLSearchParams(p);
    for (const [key, value] of Object.entries(changes)) {
      if (value) next.set(key, value); else next.delete(key);
    }
    if (cursorKey && !(cursorKey in changes)) next.delete(cursorKey);
    return next;
  }), [setParams, cursorKey]);
  return { get: (key) => params.get(key) || undefined, set: (key, value) => setMany({ [key]: value }), setMany, params };
}

/** Keyset paging: back to the first page, or on to the page after `next` (null on the last page). */
export function Pager({ cursor, next, onPage }: { cursor: string | undefined; next: string | null; onPage: (cursor: string | undefined) => void }) {
  return (
    <div className="pager">
      {cursor && <button type="button" onClick={() => onPage(undefined)}>First page</button>}
      {next && <button type="button" onClick={() => onPage(next)}>Next page</button>}
    </div>
  );
}

interface PagedTableProps<P extends { nextCursor: string | null }, T> {
  /** The query of one page: its rows and the cursor of the next. */
  query: { data: P | undefined; error: unknown; isPending: boolean };
  rows: (page: P) => T[];
  label: string;
  // TanStack types each column by its value; a table holds columns of several value types
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  columns: ColumnDef<T, any>[];
  rowId: (row: T) => string;
  empty: string;
  /** The page shown (undefined: the first) and how to show another. */
  cursor: string | undefined;
  onPage: (cursor: string | undefined) => void;
}

/** One keyset page of a list as a table, with the pager under it. */
export function PagedTable<P extends { nextCursor: string | null }, T>({ query, rows, label, columns, rowId, empty, cursor, onPage }: PagedTableProps<P, T>) {
  return (
    <Loaded query={query}>
      {(page) => (
        <>
          <DataTable label={label} data={rows(page)} columns={columns} rowId={rowId} empty={empty} />
          <Pager cursor={cursor} next={page.nextCursor} onPage={onPage} />
        </>
      )}
    </Loaded>
  );
}
