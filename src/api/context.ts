import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Config } from '../config/config.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import type { Pauses } from '../flow/pauses.ts';
import type { Quotas } from '../flow/quotas.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { DeadLetters } from '../recovery/dead-letters.ts';
import type { Replays, ReplayRunner } from '../recovery/replays.ts';
import type { Snapshots } from '../recovery/snapshots.ts';

export interface ReadinessCheck {
  ok: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

/** What route modules need from the running server. */
export interface ApiContext {
  config: Config;
  ledger: Ledger;
  dispatcher: Dispatcher;
  pauses: Pauses;
  quotas: Quotas;
  metrics: Metrics;
  recovery: { deadLetters: DeadLetters; snapshots: Snapshots; replays: Replays; replayRunner: ReplayRunner };
  readiness: () => Promise<ReadinessCheck>;
}

export type App = FastifyInstance<
  import('node:http').Server, import('node:http').IncomingMessage, import('node:http').ServerResponse,
  import('fastify').FastifyBaseLogger, TypeBoxTypeProvider
>;
