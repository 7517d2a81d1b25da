import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useId, useRef, useState, type ReactNode } from 'react';
import type { OperatorWhy } from '../../../src/sdk/client.ts';
import { useSession } from '../session.tsx';
import { ErrorNote } from './status.tsx';


interface ActionProps {
  /** The button's text, e.g. "Pause". */
  label: string;
  /** The scope the API route needs: without it the button is disabled and says why. */
  scope: string;
  /** What the action will do, shown before it runs (e.g. "Replays 42 dead letters"). */
  confirm: ReactNode;
  /** Gets the reason (and ticket) the audit log records, sent as X-Operator-Reason / X-Operator-Ticket. */
  run: (why: OperatorWhy) => Promise<unknown>;
  /** Query keys to refetch after the action succeeded. */
  invalidates?: unknown[][];
  danger?: boolean;
  disabled?: string | null;
  onDone?: (result: unknown) => void;
}

/**
 * A button for an operator action: disabled with the reason when the token
 * lacks the scope; otherwise a dialog that shows what it will do and asks for
 * the reason and, where the API requires one, the ticket, exactly as the
 * API's scopes demand; the API's own error shows in the dialog.
 */
export function ActionButton({ label, scope, confirm, run, invalidates = [], danger, disabled, onDone }: ActionProps) {
  const { me, denied } = useSession();
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [ticket, setTicket] = useState('');
  const id = useId();
  const queries = useQueryClient();
  const needsReason = me?.reasonScopes.includes(scope) ?? false;
  const needsTicket = me?.ticketScopes.includes(scope) ?? false;
  const action = useMutation({
    mutationFn: () => run({ reason: reason.trim(), ticket: ticket.trim() || undefined }),
    onSuccess: async (result) => {
      dialog.current?.close();
      setReason('');
      setTicket('');
      onDone?.(result);
      await Promise.all(invalidates.map((queryKey) => queries.invalidateQueries({ queryKey })));
    },
  });
  const blocked = denied(scope) ?? disabled ?? null;
  const ready = (!needsReason || reason.trim() !== '') && (!needsTicket || ticket.trim() !== '');
  return (
    <>
      <button type="button" className={danger ? 'danger' : undefined} disabled={blocked !== null} title={blocked ?? undefined}
        aria-describedby={blocked ? `${id}-why` : undefined} onClick={() => { action.reset(); dialog.current?.showModal(); }}>
        {label}
      </button>
      {blocked && <span id={`${id}-why`} className="why-disabled">{blocked}</span>}
      <dialog ref={dialog} aria-labelledby={`${id}-title`}>
        <form method="dialog" onSubmit={(e) => { e.preventDefault(); if (ready) action.mutate(); }}>
          <h2 id={`${id}-title`}>{label}</h2>
          <div className="confirm">{confirm}</div>
          {needsReason && (
            <label>Reason (recorded in the audit log)
              <input name="reason" value={reason} onChange={(e) => setReason(e.target.value)} required maxLength={500} autoFocus />
            </label>
          )}
          {needsTicket && (
            <label>Ticket
              <input name="ticket" value={ticket} onChange={(e) => setTicket(e.target.value)} required maxLength={128} />
            </label>
          )}
          {action.error && <ErrorNote error={action.error} />}
          <div className="buttons">
            <button type="button" onClick={() => dialog.current?.close()}>Cancel</button>
            <button type="submit" className={danger ? 'danger' : 'primary'} disabled={!ready || action.isPending}>
              {action.isPending ? 'Working…' : `Confirm ${label.toLowerCase()}`}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
