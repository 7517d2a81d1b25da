import type { Command } from 'commander';
import { removeLocalAddress, writeLocalAddress } from '../api-address.ts';
import { CliError } from '../output.ts';

/**
 * The server's modules (config schema, logger, Fastify, pg, NATS) load only for the verbs that
 * run it: `orch --help` and the API verbs start without them.
 */
const server = () => import('../../control-plane.ts');
async function setup(level: (configured: string) => string) {
  const [{ loadConfig }, { createLogger }] = await Promise.all([import('../../config/config.ts'), import('../../logging.ts')]);
  const config = loadConfig();
  return { config, log: createLogger(level(config.logLevel) as typeof config.logLevel, config.logFormat) };
}

export function registerServerCommands(program: Command): void {
  program
    .command('serve')
    .description('run the control plane (HTTP API, lease reaper) on ORCH_DATABASE_URL or an embedded PostgreSQL')
    .action(async () => {
      const { config, log } = await setup((l) => l);
      // Signals are handled from the first moment: a Ctrl-C while the embedded database starts must
      // still stop it (it runs in its own process group and would outlive us).
      let stopping = false;
      const starting = server().then(({ startControlPlane }) => startControlPlane(config, log));
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        removeLocalAddress(config.dataDir);
        starting.then((plane) => plane.stop()).then(() => process.exit(0), (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        });
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      const plane = await starting.catch((err: unknown) => {
        throw new CliError(`cannot start the control plane: ${(err as Error).message}`);
      });
      // A signal while starting: shutdown has run (and found no file to remove), so leave none behind.
      if (stopping) return;
      const file = writeLocalAddress(config.dataDir, { url: plane.url, auth: config.auth.mode });
      log.info({ file }, 'local address written: "orch" commands on this machine, from this directory, use it without --api-url');
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const { config, log } = await setup((l) => (l === 'info' ? 'warn' : l));
      const { openDatabase, migrateAsOwner } = await server();
      const { connectionString, embedded } = await openDatabase(config, log);
      try {
        const applied = await migrateAsOwner(config, connectionString, log);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
      } finally {
        await embedded?.stop();
      }
    });
}
