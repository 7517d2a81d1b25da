import { useSearchParams } from 'react-router';

/**
 * A list's filters and page cursor in the URL, so that a link shares the
 * view; changing a filter goes back to the first page (`cursorKey`, for a
 * paged list), since the cursor of one filter means nothing to another.
 */
export function useUrlFilters(cursorKey?: string): { get: (key: string) => string | undefined; set: (key: string, value: string | undefined) => void } {
  const [params, setParams] = useSearchParams();
  return {
    get: (key) => params.get(key) || undefined,
    set: (key, value) => setParams((p) => {
      const next = new URLSearchParams(p);
      if (value) next.set(key, value); else next.delete(key);
      if (cursorKey && key !== cursorKey) next.delete(cursorKey);
      return next;
    }),
  };
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
