import { randomUUID } from 'node:crypto';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { LogController, type FastifyReply } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from '../logging.ts';
import type { ApiContext, App } from './context.ts';
import { API_BASE } from '../wire.ts';
import { installAuth } from './auth.ts';
import { ApiError, clientErrorHandler, errorHandler } from './errors.ts';
import { alertRoutes } from './routes/alerts.ts';
import { auditRoutes } from './routes/audit.ts';
import { bridgeRoutes } from './routes/bridge.ts';
import { controlRoutes } from './routes/controls.ts';
import { deadLetterRoutes } from './routes/deadletter.ts';
import { eventRoutes } from './routes/events.ts';
import { jobTypeRoutes } from './routes/job-types.ts';
import { jobRoutes } from './routes/jobs.ts';
import { leaseRoutes } from './routes/leases.ts';
import { opsRoutes } from './routes/ops.ts';
import { quotaRoutes } from './routes/quotas.ts';
import { scheduleRoutes } from './routes/schedules.ts';
import { backfillRoutes } from './routes/backfills.ts';
import { workflowRoutes } from './routes/workflows.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { whoamiRoutes } from './routes/whoami.ts';
import { installConsole, isConsolePage } from './console.ts';

/** Builds the HTTP app: validation from the route schemas, OpenAPI 3.1 at /.well-known/openapi. */
export async function buildApi(ctx: ApiContext, log: Logger): Promise<App> {
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    // request ids name audit entries and log lines: unique across restarts, and returned to the caller
    genReqId: () => randomUUID(),
    clientErrorHandler,
    // errors of the router itself (bad URL encoding, an overlong path parameter) in the API's error shape, without echoing the URL
    frameworkErrors: (error, _request, reply) => {
      const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
      void (reply as unknown as FastifyReply).code(status).type('application/json').send(JSON.stringify({ error: { code: 'bad_url', message: 'the request URL is malformed or a path parameter is too long', field: 'url' } }));
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  app.setErrorHandler(errorHandler);
  useStrictValidation(app);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  installAuth(app, ctx.auth.authenticator);
  limitJsonDepth(app, ctx.config.maxJsonDepth);
  app.addHook('onResponse', async (request, reply) => {
    ctx.metrics.onHttpResponse(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000);
  });
  let consolePage: ((reply: FastifyReply) => FastifyReply) | null = null;
  app.setNotFoundHandler((request, reply) => consolePage && isConsolePage(request.method, request.url, request.headers.accept)
    ? consolePage(reply)
    : reply.status(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}`, field: null } }));

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'orch: job orchestrator API', version: '1.0.0', description: 'Job ledger, worker bridge and operator controls.' },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
    },
  });
  app.get('/.well-known/openapi', { schema: { hide: true } }, async () => app.swagger());

  opsRoutes(app, ctx);
  consolePage = await installConsole(app, ctx.config.consoleDir);
  await app.register(async (api) => {
    const scoped = api as unknown as App;
    jobRoutes(scoped, ctx);
    bridgeRoutes(scoped, ctx);
    jobTypeRoutes(scoped, ctx);
    controlRoutes(scoped, ctx);
    quotaRoutes(scoped, ctx);
    auditRoutes(scoped, ctx);
    deadLetterRoutes(scoped, ctx);
    leaseRoutes(scoped, ctx);
    eventRoutes(scoped, ctx);
    tokenRoutes(scoped, ctx);
    clusterRoutes(scoped, ctx);
    scheduleRoutes(scoped, ctx);
    backfillRoutes(scoped, ctx);
    workflowRoutes(scoped, ctx);
    whoamiRoutes(scoped);
    alertRoutes(scoped, ctx);
  }, { prefix: API_BASE });
  return app;
}

/**
 * JSON bodies nested deeper than `maxDepth` are refused before they are
 * parsed (a deep body costs the parser and every schema walk after it);
 * parsing itself is Fastify's (prototype poisoning refused).
 */
function limitJsonDepth(app: App, maxDepth: number): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    let depth = 0;
    let inString = false;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 92) i++; // backslash: skip the escaped character
        else if (c === 34) inString = false;
      } else if (c === 34) inString = true;
      else if (c === 123 || c === 91) {
        if (++depth > maxDepth) return done(new ApiError(400, 'too_deep', 'body', `JSON nested deeper than ${maxDepth} levels`), undefined);
      } else if (c === 125 || c === 93) depth--;
    }
    parse(request, text, done);
  });
}

/**
 * Two validators: JSON bodies are taken as typed (no coercion: "Infinity" is
 * a string, not a number that passes every maximum); query strings, params
 * and headers are text, coerced to their schema's types, and a numeric text
 * that is not finite ("Infinity", "1e400") is refused before coercion.
 */
function useStrictValidation(app: App): void {
  const options = { removeAdditional: false, useDefaults: true, addUsedSchema: false, allErrors: false } as const;
  const body = new Ajv({ ...options, coerceTypes: false });
  const text = new Ajv({ ...options, coerceTypes: 'array' });
  for (const ajv of [body, text]) addFormats.default(ajv);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? body : text).compile(schema));
  app.addHook('preValidation', async (request) => {
    for (const [part, values] of [['querystring', request.query], ['params', request.params]] as const) {
      for (const [key, value] of Object.entries((values ?? {}) as Record<string, unknown>)) {
        for (const v of Array.isArray(value) ? value : [value]) {
          if (typeof v === 'string' && NON_FINITE.test(v.trim()) && !Number.isFinite(Number(v))) {
            throw new ApiError(400, 'invalid', `${part}.${key}`, `${part} field "${key}": not a finite number`);
          }
        }
      }
    }
  });
}

const NON_FINITE = /^[+-]?(infinity|[0-9.]+e[+-]?[0-9]+)$/i;
