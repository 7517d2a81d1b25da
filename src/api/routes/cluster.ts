import { Type } from 'typebox';
import type { ApiContext, App } from '../context.ts';
import { IsoTime, Nullable } from '../schemas.ts';

const Replica = Type.Object({
  id: Type.String(),
  host: Type.String(),
  version: Type.String(),
  notify: Type.Union([Type.Literal('listen'), Type.Literal('poll')], { description: 'How idle claimers on it wake: LISTEN/NOTIFY, or polling (PgBouncer in transaction mode)' }),
  services: Type.Array(Type.String(), { description: 'Background services running on it now' }),
  startedAt: IsoTime,
  lastSeenAt: IsoTime,
  state: Type.Union([Type.Literal('up'), Type.Literal('stopped'), Type.Literal('lost')]),
  leader: Type.Boolean(),
});
const ClusterSchema = Type.Object({
  leader: Nullable(Type.Object({
    replicaId: Type.String(), term: Type.Integer(), since: IsoTime, expiresAt: IsoTime,
    live: Type.Boolean({ description: 'false: the lease expired and no replica has taken it yet' }),
  })),
  replicas: Type.Array(Replica),
});

/** The replicas sharing this database, which one leads (runs the leader-only services), since when. */
export function clusterRoutes(app: App, ctx: ApiContext): void {
  app.get('/cluster', {
    config: { scope: 'orch:read' },
    schema: { summary: 'Replicas, the leader and its term, and which services run where', tags: ['cluster'], response: { 200: ClusterSchema } },
  }, async () => ctx.cluster.status());
}
