import { Type } from 'typebox';
import { REASON_SCOPES as REASON, SCOPES, TICKET_SCOPES as TICKET } from '../../auth/principal.ts';
import type { App } from '../context.ts';
import { ErrorBody } from '../schemas.ts';

const ScopeSchema = Type.String({ description: SCOPES.join(' | ') });

/** Who the caller's token is: what the console (and a script) may offer it before it acts. */
export function whoamiRoutes(app: App): void {
  app.get('/whoami', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'The caller: subject, tenants and scopes of its token', tags: ['auth'],
      description: 'tenants is "*" for a token of every tenant. Operator scopes need X-Operator-Reason on their actions, orch:quota and orch:backfill also X-Operator-Ticket (reasonScopes, ticketScopes).',
      response: {
        200: Type.Object({
          kind: Type.Union([Type.Literal('token'), Type.Literal('jwt'), Type.Literal('open')]),
          subject: Type.String(),
          tenants: Type.Union([Type.Literal('*'), Type.Array(Type.String())]),
          scopes: Type.Array(ScopeSchema),
          jobTypes: Type.Union([Type.Array(Type.String()), Type.Null()]),
          reasonScopes: Type.Array(ScopeSchema),
          ticketScopes: Type.Array(ScopeSchema),
        }),
        401: ErrorBody, 403: ErrorBody,
      },
    },
  }, async (request) => {
    const p = request.principal;
    return {
      kind: p.kind, subject: p.subject, tenants: p.tenants === '*' ? '*' as const : [...p.tenants],
      scopes: SCOPES.filter((s) => p.scopes.has(s)), jobTypes: p.jobTypes ? [...p.jobTypes] : null,
      reasonScopes: SCOPES.filter((s) => REASON.has(s)), ticketScopes: SCOPES.filter((s) => TICKET.has(s)),
    };
  });
}
