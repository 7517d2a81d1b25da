import type { Command } from 'commander';
import { loadConfig } from '../../config/config.ts';
import { createLogger } from '../../logging.ts';
import { CliError } from '../output.ts';

/** The server's modules (Fastify, pg, NATS) load only for the verbs that run it, not for every CLI call. */
const server = () => import('../../control-plane.ts');

export function registerServerCommands(program: Command): void {
  program
    .command('serve')
    .description('run the control plane (HTTP API, lease reaper) on ORCH_DATABASE_URL or an embedded PostgreSQL')
    .action(async () => {
      const config = loadConfig();
      const log = createLogger(config.logLevel);
      // Signals are handled from the first moment: a Ctrl-C while the embedded database starts must
      // still stop it (it runs in its own process group and would outlive us).
      let stopping = false;
      const starting = server().then(({ startControlPlane }) => startControlPlane(config, log));
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        starting.then((plane) => plane.stop()).then(() => process.exit(0), (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        });
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      try {
        await starting;
      } catch (err) {
        throw new CliError(`cannot start the control plane: ${(err as Error).message}`);
      }
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const config = loadConfig();
      const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
      const { openDatabase, createPool, migrate } = await server();
      const { connectionString, embedded } = await openDatabase(config, log);
      const pool = createPool(connectionString, 2);
      try {
        const applied = await migrate(pool);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
      } finally {
        await pool.end();
        await embedded?.stop();
      }
    });
}
