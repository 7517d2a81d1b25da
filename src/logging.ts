import { createRequire } from 'node:module';
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** ORCH_LOG_FORMAT: pretty (for a person), json (one object a line, for machines), auto (pretty on a terminal). */
export type LogFormat = 'auto' | 'pretty' | 'json';

/** For loggers made without the server's config (the SDK's workers); the server reads it through config.ts. */
function formatFromEnv(): LogFormat {
  const f = process.env.ORCH_LOG_FORMAT || 'auto';
  if (f !== 'auto' && f !== 'pretty' && f !== 'json') throw new Error(`ORCH_LOG_FORMAT must be pretty, json or auto, got "${f}"`);
  return f;
}

/**
 * Logs on stderr, so stdout stays free for CLI output. "auto" is pretty when
 * stderr is a terminal, since that is where the logs land (`orch serve >out`
 * still shows them pretty; `orch serve 2>server.log` writes JSON).
 */
export function createLogger(level: string, format: LogFormat = formatFromEnv()): Logger {
  const options = { level, base: { service: 'orch' } };
  const tty = process.stderr.isTTY === true;
  if (format === 'json' || (format === 'auto' && !tty)) return pino(options, pino.destination(2));
  // Loaded only when chosen: a worker logging JSON does without its dozen packages. As a stream
  // in this thread (not a pino transport's worker thread), lines written before process.exit are not lost.
  const { build } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  return pino(options, build({ destination: 2, sync: true, colorize: tty, ignore: 'service', translateTime: 'SYS:HH:MM:ss.l' }));
}
