import type { FastifyRequest } from 'fastify';
import { checkText } from '../ledger/validate.ts';
import type { OperatorAction } from '../audit/audit-log.ts';
import { ApiError } from './errors.ts';
import { actorOf } from '../auth/principal.ts';

export const MAX_REASON = 256;
export const MAX_TICKET = 128;

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Why an operator changes a control: X-Operator-Reason (required, at most 256
 * characters) and X-Operator-Ticket (at most 128; required for quota
 * changes), recorded in the audit log with the change.
 */
export function operatorAction(request: FastifyRequest, opts: { ticketRequired?: boolean } = {}): OperatorAction {
  const reason = header(request, 'x-operator-reason')?.trim();
  const ticket = header(request, 'x-operator-ticket')?.trim() || null;
  if (!reason) throw new ApiError(400, 'reason_required', 'X-Operator-Reason', 'this change needs an X-Operator-Reason header');
  if (opts.ticketRequired && !ticket) throw new ApiError(400, 'ticket_required', 'X-Operator-Ticket', 'this change needs an X-Operator-Ticket header');
  if (reason.length > MAX_REASON) throw new ApiError(400, 'invalid', 'X-Operator-Reason', `X-Operator-Reason is over ${MAX_REASON} characters`);
  if (ticket !== null && ticket.length > MAX_TICKET) throw new ApiError(400, 'invalid', 'X-Operator-Ticket', `X-Operator-Ticket is over ${MAX_TICKET} characters`);
  checkText(reason, 'X-Operator-Reason');
  if (ticket !== null) checkText(ticket, 'X-Operator-Ticket');
  return { actor: actorOf(request.principal), reason, ticket, requestId: request.id };
}
