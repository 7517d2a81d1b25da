import { flexRender, getCoreRowModel, getSortedRowModel, useReactTable, type ColumnDef, type SortingState } from '@tanstack/react-table';
import { useState } from 'react';

interface TableProps<T> {
  data: T[];
  // TanStack types each column by its value; a table holds columns of several value types
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  columns: ColumnDef<T, any>[];
  /** Accessible name of the table. */
  label: string;
  rowId?: (row: T) => string;
  empty?: string;
  /** Sort the loaded rows by clicking a header (pages that sort on the server leave it off). */
  sortable?: boolean;
}

/** A data table (TanStack Table): headers, rows, optional client-side sorting. */
export function DataTable<T>({ data, columns, label, rowId, empty = 'Nothing here.', sortable = false }: TableProps<T>) {
  const [sorting, setSorting] = useState<SortingState>([]);
  const table = useReactTable({
    data, columns, getRowId: rowId, state: { sorting }, onSortingChange: setSorting, enableSorting: sortable,
    getCoreRowModel: getCoreRowModel(), getSortedRowModel: getSortedRowModel(),
  });
  if (data.length === 0) return <p className="muted">{empty}</p>;
  return (
    <table aria-label={label}>
      <thead>
        {table.getHeaderGroups().map((group) => (
          <tr key={group.id}>
            {group.headers.map((h) => (
              <th key={h.id} scope="col" aria-sort={h.column.getIsSorted() === 'asc' ? 'ascending' : h.column.getIsSorted() === 'desc' ? 'descending' : undefined}>
                {h.isPlaceholder ? null : h.column.getCanSort()
                  ? <button type="button" className="link" onClick={h.column.getToggleSortingHandler()}>{flexRender(h.column.columnDef.header, h.getContext())}{{ asc: ' ▲', desc: ' ▼' }[h.column.getIsSorted() as string] ?? ''}</button>
                  : flexRender(h.column.columnDef.header, h.getContext())}
              </th>
            ))}
          </tr>
        ))}
      </thead>
      <tbody>
        {table.getRowModel().rows.map((row) => (
          <tr key={row.id}>
            {row.getVisibleCells().map((cell) => <td key={cell.id}>{flexRender(cell.column.columnDef.cell, cell.getContext())}</td>)}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
