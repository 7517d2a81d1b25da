import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Config } from '../config/config.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import type { Pauses } from '../flow/pauses.ts';
import type { Quotas } from '../flow/quotas.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { DeadLetters } from '../recovery/dead-letters.ts';
import type { Replays } from '../recovery/replays.ts';
import type { Snapshots } from '../recovery/snapshots.ts';
import type { EventStream } from '../events/stream.ts';
import type { ClusterStatus } from '../cluster/status.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import type { ApiTokens } from '../auth/tokens.ts';
import type { Schedules } from '../schedules/schedules.ts';
import type { Backfills } from '../backfills/backfills.ts';
import type { Workflows } from '../workflows/workflows.ts';

export interface ReadinessCheck {
  ok: boolean;
  /** A check that fails without making the server unready (the event bus: jobs run on, events wait in the outbox). */
  checks: Record<string, { ok: boolean; degraded?: boolean; detail?: string }>;
}

/** What route modules need from the running server. */
export interface ApiContext {
  config: Config;
  ledger: Ledger;
  dispatcher: Dispatcher;
  pauses: Pauses;
  quotas: Quotas;
  metrics: Metrics;
  recovery: { deadLetters: DeadLetters; snapshots: Snapshots; replays: Replays; nudgeReplays: () => void };
  events: { stream: EventStream };
  readiness: () => Promise<ReadinessCheck>;
  auth: { authenticator: Authenticator; tokens: ApiTokens };
  cluster: { status: () => Promise<ClusterStatus> };
  schedules: Schedules;
  backfills: Backfills;
  workflows: Workflows;
}

export type App = FastifyInstance<
  import('node:http').Server, import('node:http').IncomingMessage, import('node:http').ServerResponse,
  import('fastify').FastifyBaseLogger, TypeBoxTypeProvider
>;
