/**
 * The worker SDK entry point (`orch/sdk`): a remote worker and the API client
 * load no PostgreSQL driver, no Fastify and no NATS. A worker given a
 * `connectionString` instead of an `apiUrl` loads the in-process transport
 * (and pg) when it starts; `orch/sdk/in-process` exports that transport.
 */
export { createWorker, NonRetryableError, Worker, type Handler, type JobContext, type WorkerOptions } from './worker.ts';
export { OrchClient, type OperatorWhy, type SubmitJob, type JobTypeSettings } from './client.ts';
export { OrchApiError } from './http.ts';
export { HttpTransport, type ClaimParams, type WorkerTransport } from './transport.ts';
export type { Lease, LeaseRef, Job, JobState, HistoryEntry } from '../ledger/types.ts';
