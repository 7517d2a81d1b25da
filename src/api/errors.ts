import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseUnavailable, isSerializationFailure } from '../ledger/db.ts';
import { LedgerError } from '../ledger/errors.ts';
import { HttpError } from '../wire.ts';

/** An error meant for the client: status, machine-readable code, the offending field. */
export class ApiError extends HttpError {}

const LEDGER_STATUS = { invalid: 400, not_found: 404, conflict: 409, limit: 422, backpressure: 429, unprocessable: 422 } as const;
/** Seconds a refused producer should wait: a few rollups of the queue counts, enough for workers to make room. */
const BACKPRESSURE_RETRY_AFTER_S = 5;
/** Seconds a caller should wait while the database is unreachable: a restart usually takes a few. */
const UNAVAILABLE_RETRY_AFTER_S = 2;
/** An outage fails every request: log it once a while, not once per request. */
const UNAVAILABLE_LOG_EVERY_MS = 10_000;
let unavailableLoggedAt = 0;

/** Field of a schema validation failure, as the client named it ("body.jobs[3].priority"-like). */
function validationField(err: FastifyError): string | null {
  const v = err.validation?.[0];
  if (!v) return null;
  const params = v.params as { missingProperty?: string; additionalProperty?: string } | undefined;
  const missing = params?.missingProperty ?? params?.additionalProperty;
  const path = v.instancePath.replace(/^\//, '').replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.');
  const full = [path, missing].filter(Boolean).join('.');
  return full || err.validationContext || null;
}

function send(reply: FastifyReply, status: number, code: string, field: string | null, message: string) {
  return reply.status(status).send({ error: { code, message, field } });
}

/**
 * Every error leaves as { error: { code, message, field } }. Client mistakes
 * are 4xx naming the field; anything unexpected is a bare 500 (details go to
 * the log, never to the client: no stack, no SQL).
 */
export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (err instanceof HttpError) {
    if (err.status === 429) reply.header('retry-after', '60');
    return send(reply, err.status, err.code, err.field, err.message);
  }
  if (err instanceof LedgerError) {
    if (err.code === 'backpressure') reply.header('retry-after', String(BACKPRESSURE_RETRY_AFTER_S));
    return send(reply, LEDGER_STATUS[err.code], err.code, err.field, err.message);
  }
  if (err.validation) {
    const field = validationField(err);
    const where = err.validationContext ?? 'body';
    return send(reply, 400, 'invalid', field, `${where}${field ? ` field "${field}"` : ''}: ${err.validation[0]?.message ?? 'invalid'}`);
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return send(reply, 413, 'too_large', 'body', 'request body is too large');
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return send(reply, 415, 'unsupported_media_type', 'content-type', 'send application/json');
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    return send(reply, 400, 'invalid_json', 'body', 'request body is not valid JSON');
  }
  const pgCode = (err as { code?: string }).code;
  // PostgreSQL data exceptions (class 22) come from values the schema let through, e.g. out-of-range numbers.
  if (typeof pgCode === 'string' && pgCode.startsWith('22')) return send(reply, 400, 'invalid', null, 'a value is out of range or malformed');
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return send(reply, err.statusCode, 'bad_request', null, err.message);
  }
  if (isSerializationFailure(err)) {
    // a transition met a concurrent change more often than it retries (a parent gaining dependents as it ends)
    reply.header('retry-after', '1');
    return send(reply, 503, 'conflict_retry', null, 'a concurrent change got in the way; retry');
  }
  if (isDatabaseUnavailable(err)) {
    if (Date.now() - unavailableLoggedAt > UNAVAILABLE_LOG_EVERY_MS) {
      unavailableLoggedAt = Date.now();
      request.log.warn({ err: err.message }, 'the database is unavailable: answering 503');
    }
    reply.header('retry-after', String(UNAVAILABLE_RETRY_AFTER_S));
    return send(reply, 503, 'unavailable', null, 'the ledger database is unavailable; retry later');
  }
  request.log.error({ err }, 'request failed');
  return send(reply, 500, 'internal', null, 'internal error');
}

/**
 * A request the HTTP parser refused (headers over the size limit, a
 * malformed request line) in the API's error shape. The connection is closed
 * after it, and the response says so: without `Connection: close` a client
 * would keep the socket for its next request and find it gone.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message, field] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'headers_too_large', 'the request headers are too large', 'headers']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'timeout', 'the request took too long to arrive', null]
    : [400, 'bad_request', 'the request is not valid HTTP', null];
  const body = JSON.stringify({ error: { code, message, field } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  socket.destroy();
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };
