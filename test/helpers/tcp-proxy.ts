import net from 'node:net';
import { once } from 'node:events';
import { freePort } from '../../src/ledger/embedded.ts';

/**
 * A TCP proxy in front of a real server (PostgreSQL here), so a test can take
 * the server away from one process — refuse new connections and reset open
 * ones, as a restart or a network cut does — without stopping the machine's
 * server that other tests use.
 */
export class TcpProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private constructor(private readonly target: { host: string; port: number }, readonly port: number) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target, await freePort());
    await proxy.restore();
    return proxy;
  }

  /**
   * A proxy in front of the PostgreSQL of `databaseUrl`, and that URL through it
   * (the server under test connects there; the test keeps the direct URL).
   */
  static async inFrontOf(databaseUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
    const direct = new URL(databaseUrl);
    const proxy = await TcpProxy.start({ host: direct.hostname, port: Number(direct.port || 5432) });
    const via = new URL(databaseUrl);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    return { proxy, url: via.toString() };
  }

  /** Accepts connections again (after cut()). */
  async restore(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
  }

  /** Resets every open connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.resetAndDestroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
