import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomBytes } from 'node:crypto';
import { defaultConfig, type Config } from '../../src/config/config.ts';
import { natsServers } from '../../src/events/bus.ts';
import { freePort } from '../../src/ledger/embedded.ts';
import { alive, kill } from './processes.ts';

/**
 * NATS for the event tests: the machine's JetStream server on 127.0.0.1:4222
 * for tests that only read, and nats-server processes of a test's own for
 * tests that stop and restart NATS (the machine's server is never touched).
 */

export const NATS_SERVER_BIN = process.env.ORCH_TEST_NATS_SERVER ?? '/usr/sbin/nats-server';
export const MACHINE_NATS_URL = process.env.ORCH_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

function tcpOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Why the NATS tests cannot run here (null: they can): the nats-server binary and/or the machine's server are missing. */
export async function natsMissing(need: { binary?: boolean; machine?: boolean }): Promise<string | null> {
  const problems: string[] = [];
  if (need.binary) {
    try {
      await access(NATS_SERVER_BIN, constants.X_OK);
    } catch {
      problems.push(`no executable ${NATS_SERVER_BIN}`);
    }
  }
  if (need.machine) {
    const u = new URL(MACHINE_NATS_URL);
    if (!(await tcpOpen(u.hostname, Number(u.port || 4222)))) problems.push(`nothing listening on ${MACHINE_NATS_URL}`);
  }
  return problems.length > 0 ? problems.join('; ') : null;
}

/**
 * Test option `skip` for a test that needs NATS: false when it can run; a
 * reason (printed loudly) when NATS is missing; and a failure in CI, where
 * a missing NATS is a broken environment, not a reason to skip.
 */
export async function skipUnlessNats(what: string, need: { binary?: boolean; machine?: boolean }): Promise<string | false> {
  const missing = await natsMissing(need);
  if (!missing) return false;
  if (process.env.CI === 'true') throw new Error(`${what}: NATS is required in CI but ${missing}`);
  const reason = `NATS unavailable (${missing}): skipping ${what}`;
  process.stderr.write(`\n*** ${reason} ***\n\n`);
  return reason;
}

/** A nats-server with JetStream of a test's own, on a free port; its store directory survives restarts. */
export class NatsProcess {
  private child: ChildProcess | null = null;
  private stderr = '';

  private constructor(readonly port: number, readonly storeDir: string, readonly monitorPort: number | null, private readonly extraArgs: string[] = []) {}

  /** Picks a port and a store directory (and a monitoring port, for varz/connz); does not start the server (call start()). */
  static async create(opts: { monitor?: boolean; args?: string[] } = {}): Promise<NatsProcess> {
    return new NatsProcess(await freePort(), await mkdtemp(path.join(tmpdir(), 'orch-test-nats-')), opts.monitor ? await freePort() : null, opts.args);
  }

  /** The server's monitoring endpoint (/varz, /connz, ...); needs create({ monitor: true }). */
  async monitor<T>(endpoint: string): Promise<T> {
    if (this.monitorPort === null) throw new Error('created without a monitoring port');
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/${endpoint}`);
    if (!res.ok) throw new Error(`${endpoint}: ${res.status}`);
    return (await res.json()) as T;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && alive(this.child);
  }

  /** Starts the server and resolves once JetStream answers (in a cluster: once its nodes have elected a meta leader). */
  async start(): Promise<void> {
    this.spawn();
    await this.ready();
  }

  /** Starts the process without waiting (the nodes of a cluster start together: none is ready alone). */
  spawn(): void {
    if (this.running) return;
    this.stderr = '';
    const args = ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-sd', this.storeDir, ...this.extraArgs];
    if (this.monitorPort !== null) args.push('-m', String(this.monitorPort));
    const child = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d) => (this.stderr += d));
    this.child = child;
  }

  /** Resolves once JetStream answers on this server. */
  async ready(): Promise<void> {
    const child = this.child;
    if (!child) throw new Error('not started');
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!alive(child)) throw new Error(`nats-server exited (${child.exitCode ?? child.signalCode}): ${this.stderr}`);
      if (await tcpOpen('127.0.0.1', this.port, 500)) {
        const nc = await connect({ servers: this.url, reconnect: false }).catch(() => null);
        if (nc) {
          try {
            await (await jetstreamManager(nc)).getAccountInfo();
            return;
          } catch {
            // JetStream not ready yet
          } finally {
            await nc.close();
          }
        }
      }
      if (Date.now() > deadline) {
        await kill(child, 'SIGKILL');
        throw new Error(`nats-server on ${this.port} did not become ready: ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the server (SIGTERM: a clean shutdown that keeps the store; SIGKILL: a crash). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child) await kill(this.child, signal);
    this.child = null;
  }

  /** Stops the server and removes its store. */
  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    await rm(this.storeDir, { recursive: true, force: true });
  }

  /**
   * A JetStream cluster of `n` nodes on loopback, routed to each other; started, with a meta leader.
   * A port found free can be taken (by another test's outgoing connection) before the node binds
   * it: then the cluster starts again on new ports.
   */
  static async cluster(n: number): Promise<NatsProcess[]> {
    for (let attempt = 1; ; attempt++) {
      const routePorts = await Promise.all(Array.from({ length: n }, () => freePort()));
      const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
      const nodes = await Promise.all(routePorts.map((p, i) => NatsProcess.create({
        args: ['-n', `orch-test-${i}`, '--cluster_name', 'orch-test', '--cluster', `nats://127.0.0.1:${p}`, '--routes', routes],
      })));
      for (const node of nodes) node.spawn();
      try {
        await Promise.all(nodes.map((node) => node.ready()));
        return nodes;
      } catch (err) {
        await Promise.all(nodes.map((node) => node.destroy()));
        if (attempt >= 3 || !/address already in use/.test(String(err))) throw err;
      }
    }
  }
}

/** One message of a stream: subject, Nats-Msg-Id header, stream sequence and the parsed body. */
export interface StoredMessage<T> {
  subject: string;
  msgId: string | undefined;
  seq: number;
  body: T;
}

export async function natsConnect(url: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect({ servers: natsServers(url), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  // No account check here: a cluster that just lost a node answers once it has a meta leader again,
  // so callers ask (and retry) when they need an answer
  return { nc, jsm: await jetstreamManager(nc, { timeout: 15_000, checkAPI: false }) };
}

/** Messages in the stream (0 when it does not exist yet). */
export async function streamCount(jsm: JetStreamManager, stream: string): Promise<number> {
  try {
    return (await jsm.streams.info(stream)).state.messages;
  } catch (err) {
    if (/not found/i.test((err as Error).message)) return 0;
    throw err;
  }
}

/** Every message the stream holds, in stream order, read with an ordered consumer. */
export async function readStream<T>(nc: NatsConnection, stream: string): Promise<StoredMessage<T>[]> {
  const jsm = await jetstreamManager(nc);
  const total = await streamCount(jsm, stream);
  const out: StoredMessage<T>[] = [];
  if (total === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream);
  const deadline = Date.now() + 30_000;
  while (out.length < total) {
    if (Date.now() > deadline) throw new Error(`read ${out.length} of ${total} messages of ${stream}`);
    const batch = await consumer.fetch({ max_messages: Math.min(1000, total - out.length), expires: 2000 });
    for await (const m of batch) {
      out.push({ subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id') || undefined, seq: m.info.streamSequence, body: m.json<T>() });
    }
  }
  return out;
}

/** Deletes the stream if it exists. */
export async function deleteStream(jsm: JetStreamManager, stream: string): Promise<void> {
  try {
    await jsm.streams.delete(stream);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
  }
}

/**
 * A stream and subject prefix of a test's own (the stream removed by the
 * test), so tests share the machine's NATS with each other and with anything
 * else there, in parallel: no two streams ever claim the same subjects.
 */
export function ownStream(over: Partial<Config['events']> = {}, stream = `T_${randomBytes(5).toString('hex')}`): Config['events'] {
  return { ...defaultConfig.events, stream, subjectPrefix: subjectPrefixOf(stream), ...over };
}

/** The subject prefix of a test's stream. */
export const subjectPrefixOf = (stream: string) => `${stream}.orch.events`;
