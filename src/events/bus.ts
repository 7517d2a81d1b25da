import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from '../logging.ts';
import type { OrchEvent } from './envelope.ts';

/** The JetStream stream the orchestrator publishes to, as configured (see docs/events.md for what each limit means). */
export interface StreamSettings {
  name: string;
  /** Events older than this are dropped by the stream. */
  maxAgeMs: number;
  /** The stream drops its oldest events beyond this size. */
  maxBytes: number;
  /** Re-publications of one event id within this window are dropped. */
  duplicateWindowMs: number;
  replicas: number;
}

export const SUBJECT_PREFIX = 'orch.events';

/** `orch.events.<tenant>.<jobType>.<eventType>`; control events without a job type use `_`, events for every tenant `_all`. */
export function subjectOf(e: OrchEvent): string {
  const tenant = e.tenantId === '*' ? '_all' : e.tenantId;
  return `${SUBJECT_PREFIX}.${tenant}.${e.job?.type ?? '_'}.${e.eventType}`;
}

const ms = (n: number) => n * 1_000_000;

/**
 * The NATS JetStream connection. It is made in the background, so the server
 * starts (and runs jobs) while NATS is away; it reconnects for ever, and
 * publishes fail meanwhile (the outbox keeps the events). Once connected, the
 * stream is created or updated to the configured limits.
 */
export class EventBus {
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  /** False from a disconnect until the next reconnect. */
  private up = false;
  private closed = false;

  constructor(private readonly url: string, private readonly stream: StreamSettings, private readonly log: Logger) {}

  /** Connects in the background; resolves at once. */
  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    while (!this.closed) {
      try {
        const nc = await connect({ servers: this.url, name: 'orch', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
        if (this.closed) return void (await nc.close());
        this.watch(nc);
        await this.ensureStream(nc);
        this.nc = nc;
        this.js = jetstream(nc);
        this.up = true;
        this.log.info({ url: this.url, stream: this.stream.name }, 'connected to NATS JetStream');
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'NATS unavailable; retrying (events wait in the outbox)');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type !== 'disconnect' && s.type !== 'reconnect') continue;
        this.up = s.type === 'reconnect';
        this.log.warn({ bus: s.type }, `NATS ${s.type}`);
      }
    })();
  }

  private async ensureStream(nc: NatsConnection): Promise<void> {
    const s = this.stream;
    const jsm = await jetstreamManager(nc);
    const config = {
      name: s.name, subjects: [`${SUBJECT_PREFIX}.>`], max_age: ms(s.maxAgeMs), max_bytes: s.maxBytes,
      duplicate_window: ms(s.duplicateWindowMs), num_replicas: s.replicas,
    };
    try {
      await jsm.streams.info(s.name);
      await jsm.streams.update(s.name, config);
    } catch (err) {
      if (!/not found/i.test((err as Error).message)) throw err;
      await jsm.streams.add(config);
      this.log.info({ stream: s.name }, 'JetStream stream created');
    }
  }

  /** True while connected to a NATS server. */
  get connected(): boolean {
    return this.up && this.nc !== null && !this.nc.isClosed();
  }

  /** Publishes with the event id as Nats-Msg-Id; resolves once JetStream has stored it (or dropped it as a duplicate). */
  async publish(e: OrchEvent): Promise<void> {
    if (!this.js || !this.up) throw new Error('NATS is not connected');
    await this.js.publish(subjectOf(e), JSON.stringify(e), { msgID: e.eventId, timeout: 5000 });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.nc?.drain().catch(() => this.nc?.close());
  }
}
