import { connect, createInbox, headers } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
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
  /** Where JetStream's acknowledgements of this connection's publishes arrive (`<inbox>.<n>`). */
  private acks: { inbox: string; calls: Map<string, (refused: string | null) => void> } | null = null;
  private next = 0;
  /** A publish found no stream: create it again before the next one. */
  private streamMissing = false;
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
      let nc: NatsConnection | null = null;
      try {
        nc = await connect({ servers: this.url, name: 'orch', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
        if (this.closed) return void (await nc.close());
        await this.ensureStream(nc);
        this.watch(nc);
        this.listenForAcks(nc);
        this.nc = nc;
        this.up = true;
        this.log.info({ url: this.url, stream: this.stream.name }, 'connected to NATS JetStream');
        return;
      } catch (err) {
        await nc?.close().catch(() => undefined);
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

  /** One subscription receives the acknowledgements of every publishAll call: `<inbox>.<call>.<n>`. */
  private listenForAcks(nc: NatsConnection): void {
    const inbox = createInbox();
    const calls = new Map<string, (refused: string | null) => void>();
    nc.subscribe(`${inbox}.>`, {
      callback: (err, msg) => {
        if (err) return;
        const call = msg.subject.slice(inbox.length + 1, msg.subject.lastIndexOf('.'));
        // An ack is {"stream":…,"seq":…[,"duplicate":true]}; a refusal carries "error"; an empty
        // 503 status means no stream listens on the subject (deleted, or NATS restarted without its store).
        const text = msg.string();
        const refused = text === '' || text.includes('"error"');
        if (refused && (text === '' || msg.headers?.code === 503)) this.streamMissing = true;
        calls.get(call)?.(refused ? text || 'no stream for the subject (503 no responders)' : null);
      },
    });
    this.acks = { inbox, calls };
  }

  /**
   * Publishes every event with its id as Nats-Msg-Id, all at once, and
   * resolves when JetStream has acknowledged each (stored, or dropped as a
   * duplicate); rejects if one is refused or they are not all acknowledged
   * within timeoutMs. (The client's js.publish awaits a request per message,
   * with a timer each; counting acknowledgements on one subscription is
   * several times faster.)
   */
  async publishAll(events: OrchEvent[], timeoutMs = 10_000): Promise<void> {
    const nc = this.nc;
    const acks = this.acks;
    if (!nc || !acks || !this.up) throw new Error('NATS is not connected');
    if (events.length === 0) return;
    if (this.streamMissing) {
      await this.ensureStream(nc);
      this.streamMissing = false;
    }
    const call = String(this.next++);
    let timer: NodeJS.Timeout | undefined;
    const acknowledged = new Promise<void>((resolve, reject) => {
      let left = events.length;
      acks.calls.set(call, (refused) => {
        if (refused !== null) reject(new Error(`JetStream refused an event: ${refused}`));
        else if (--left === 0) resolve();
      });
      timer = setTimeout(() => reject(new Error(`JetStream acknowledged ${events.length - left} of ${events.length} events within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      events.forEach((e, i) => {
        const h = headers();
        h.set('Nats-Msg-Id', e.eventId);
        nc.publish(subjectOf(e), JSON.stringify(e), { reply: `${acks.inbox}.${call}.${i}`, headers: h });
      });
      await acknowledged;
    } finally {
      clearTimeout(timer);
      acks.calls.delete(call);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.nc?.drain().catch(() => this.nc?.close());
  }
}
