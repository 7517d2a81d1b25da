import http from 'node:http';
import { once } from 'node:events';
import { freePort } from '../../src/ledger/embedded.ts';

/**
 * A load balancer in front of several replicas, as production puts one:
 * requests go round robin; one a replica refuses to connect (its process is
 * gone) goes to the next; one cut after it was sent gets a 502 (it may have
 * been applied: the client retries, as it would behind a real balancer).
 */
export class Balancer {
  private next = 0;
  private constructor(private readonly server: http.Server, readonly url: string, private backends: string[]) {}

  static async start(backends: string[]): Promise<Balancer> {
    const port = await freePort();
    let self: Balancer | null = null;
    const server = http.createServer((req, res) => void self!.forward(req, res));
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    self = new Balancer(server, `http://127.0.0.1:${port}`, backends);
    return self;
  }

  /** Takes a backend out (the test killed it). */
  remove(backend: string): void {
    this.backends = this.backends.filter((b) => b !== backend);
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    for (let tries = 0; tries < this.backends.length * 2; tries++) {
      const backend = this.backends[this.next++ % this.backends.length]!;
      const answered = await new Promise<boolean>((resolve) => {
        const up = http.request(new URL(req.url ?? '/', backend), { method: req.method, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
          r.on('end', () => resolve(true));
          r.on('error', () => resolve(true));
        });
        up.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED') return resolve(false);
          if (!res.headersSent) res.writeHead(502).end();
          else res.destroy();
          resolve(true);
        });
        up.end(body);
      });
      if (answered) return;
    }
    res.writeHead(502).end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
