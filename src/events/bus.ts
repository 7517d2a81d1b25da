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
  /** Subjects are `<prefix>.<tenant>.<jobType>.<eventType>`; the stream takes `<prefix>.>`. One prefix per deployment sharing a NATS account. */
  subjectPrefix: string;
}

/** `<prefix>.<tenant>.<jobType>.<eventType>`; control events without a job type use `_`, events for every tenant `_all`. */
export function subjectOf(prefix: string, e: OrchEvent): string {
  const tenant = e.tenantId === '*' ? '_all' : e.tenantId;
  return `${prefix}.${tenant}.${e.job?.type ?? '_'}.${e.eventType}`;
}

/** `ORCH_NATS_URL` may list several servers of a cluster, comma-separated. */
export const natsServers = (url: string): string[] => url.split(',').map((s) => s.trim()).filter((s) => s !== '');

const ms = (n: number) => n * 1_000_000;

/** JetStream refused the stream's configuration: an operator must change a setting; retrying fast will not help. */
class StreamRefused extends Error {}

/** Whether two subject filters can match a common subject (`*` one token, `>` the rest). */
function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split('.');
  const y = b.split('.');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] === '>' || y[i] === '>') return x[i] !== undefined && y[i] !== undefined;
    if (x[i] === undefined || y[i] === undefined) return false;
    if (x[i] !== '*' && y[i] !== '*' && x[i] !== y[i]) return false;
  }
  return true;
}

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
  /** Why the stream cannot be used (another stream holds its subjects, limits refused), until it can. */
  private refusal: string | null = null;

  constructor(private readonly url: string, private readonly stream: StreamSettings, private readonly log: Logger) {}

  /** Connects in the background; resolves at once. */
  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    while (!this.closed) {
      let nc: NatsConnection | null = null;
      try {
        nc = await connect({ servers: natsServers(this.url), name: 'orch', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
        if (this.closed) return void (await nc.close());
        await this.ensureStream(nc);
        // closed while the stream was being made: nobody else would close this connection
        if (this.closed) return void (await nc.close());
        if (this.refusal) this.log.info({ stream: this.stream.name }, 'JetStream accepted the events stream');
        this.refusal = null;
        this.watch(nc);
        this.listenForAcks(nc);
        this.nc = nc;
        this.up = true;
        this.log.info({ url: this.url, stream: this.stream.name }, 'connected to NATS JetStream');
        return;
      } catch (err) {
        await nc?.close().catch(() => undefined);
        if (err instanceof StreamRefused) {
          // a configuration problem, not an outage: said once (and again only if it changes), retried slowly
          if (err.message !== this.refusal) this.log.error({ stream: this.stream.name }, err.message);
          this.refusal = err.message;
          await new Promise((r) => setTimeout(r, 5000));
        } else {
          this.log.warn({ err: (err as Error).message }, 'NATS unavailable; retrying (events wait in the outbox)');
          await new Promise((r) => setTimeout(r, 1000));
        }
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
    const subject = `${s.subjectPrefix}.>`;
    const config = {
      name: s.name, subjects: [subject], max_age: ms(s.maxAgeMs), max_bytes: s.maxBytes,
      duplicate_window: ms(s.duplicateWindowMs), num_replicas: s.replicas,
    };
    const exists = await jsm.streams.info(s.name).then(() => true, (err: Error) => {
      if (/not found/i.test(err.message)) return false;
      throw err;
    });
    try {
      if (exists) await jsm.streams.update(s.name, config);
      else await jsm.streams.add(config);
    } catch (err) {
      const why = (err as Error).message;
      if (!/overlap|insufficient|replicas|limit|exceed|invalid|not (be )?(allowed|permitted)/i.test(why)) throw err;
      let holder = '';
      if (/overlap/i.test(why)) {
        for await (const other of jsm.streams.list()) {
          if (other.config.name !== s.name && other.config.subjects?.some((x) => subjectsOverlap(x, subject))) holder = ` (stream ${other.config.name} holds ${other.config.subjects.join(', ')})`;
        }
      }
      throw new StreamRefused(`JetStream refused to ${exists ? 'update' : 'create'} stream ${s.name} on ${subject}${holder}: ${why}; `
        + 'events wait in the outbox. Set ORCH_EVENTS_SUBJECT_PREFIX (and ORCH_EVENTS_STREAM) to a prefix of this deployment\'s own, or fix the limits');
    }
    if (!exists) this.log.info({ stream: s.name, subject }, 'JetStream stream created');
  }

  /** Why the events stream cannot be used (null: it can, or NATS has not answered yet). */
  get problem(): string | null {
    return this.refusal;
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
        nc.publish(subjectOf(this.stream.subjectPrefix, e), JSON.stringify(e), { reply: `${acks.inbox}.${call}.${i}`, headers: h });
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
