import type { FastifyRequest } from 'fastify';
import { checkText } from '../ledger/validate.ts';
import type { OperatorAction } from '../audit/audit-log.ts';
import { ApiError } from './errors.ts';
import { actorOf, REASON_SCOPES, TICKET_SCOPES, type Scope } from '../auth/principal.ts';

export const MAX_REASON = 256;
export const MAX_TICKET = 128;

declare module 'fastify' {
  interface FastifyRequest {
    /** Who acts and why, read from the operator headers before the handler of an operator route runs. */
    operator: OperatorAction | null;
  }
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Why an operator acts: X-Operator-Reason (at most 256 characters) for the
 * operator scopes, and X-Operator-Ticket (at most 128), required for quota
 * and backfill; recorded in the audit log with the change. Null for a scope
 * that needs neither.
 */
export function operatorAction(request: FastifyRequest, scope: Scope): OperatorAction | null {
  if (!REASON_SCOPES.has(scope)) return null;
  const reason = header(request, 'x-operator-reason')?.trim();
  const ticket = header(request, 'x-operator-ticket')?.trim() || null;
  if (!reason) throw new ApiError(400, 'reason_required', 'X-Operator-Reason', 'this action needs an X-Operator-Reason header');
  if (TICKET_SCOPES.has(scope) && !ticket) throw new ApiError(400, 'ticket_required', 'X-Operator-Ticket', 'this action needs an X-Operator-Ticket header');
  if (reason.length > MAX_REASON) throw new ApiError(400, 'invalid', 'X-Operator-Reason', `X-Operator-Reason is over ${MAX_REASON} characters`);
  if (ticket !== null && ticket.length > MAX_TICKET) throw new ApiError(400, 'invalid', 'X-Operator-Ticket', `X-Operator-Ticket is over ${MAX_TICKET} characters`);
  checkText(reason, 'X-Operator-Reason');
  if (ticket !== null) checkText(ticket, 'X-Operator-Ticket');
  return { actor: actorOf(request.principal), reason, ticket, requestId: request.id };
}

/** The operator action of a route whose scope needs one (src/api/auth.ts reads it before the handler). */
export function operatorOf(request: FastifyRequest): OperatorAction {
  if (!request.operator) throw new Error(`route ${request.routeOptions.url} reads an operator action its scope does not require`);
  return request.operator;
}
