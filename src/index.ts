/** Public entry points: the worker SDK, the HTTP client, and the ledger for in-process (transactional) use. */
export { createWorker, NonRetryableError, Worker, type Handler, type JobContext, type WorkerOptions } from './sdk/worker.ts';
export { OrchClient, type SubmitJob, type JobTypeSettings } from './sdk/client.ts';
export { OrchApiError } from './sdk/http.ts';
export { HttpTransport, type WorkerTransport } from './sdk/transport.ts';
export { InProcessTransport } from './sdk/in-process.ts';
export { Ledger } from './ledger/ledger.ts';
export { LedgerError } from './ledger/errors.ts';
export { createPool } from './ledger/db.ts';
export { migrate } from './ledger/migrate.ts';
export { loadConfig, defaultConfig, type Config } from './config/config.ts';
export { startControlPlane, type ControlPlane } from './control-plane.ts';
export type * from './ledger/types.ts';
