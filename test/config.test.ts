import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_DATA_DIR } from '../src/cli/api-address.ts';
import { ConfigError, loadConfig } from '../src/config/config.ts';

test('defaults match surface.md: 127.0.0.1:8080, data in ./.orch', () => {
  const c = loadConfig({});
  assert.equal(c.httpHost, '127.0.0.1');
  assert.equal(c.httpPort, 8080);
  assert.equal(c.dataDir, './.orch');
  assert.equal(c.databaseUrl, undefined);
});

test('environment overrides are read and validated', () => {
  const c = loadConfig({ ORCH_HTTP_PORT: '9999', ORCH_DEFAULT_LEASE_MS: '5000', ORCH_DATABASE_URL: 'postgres://x/y' });
  assert.equal(c.httpPort, 9999);
  assert.equal(c.jobTypeDefaults.leaseMs, 5000);
  assert.equal(c.databaseUrl, 'postgres://x/y');
});

test('bad values fail at start-up with the variable named', () => {
  assert.throws(() => loadConfig({ ORCH_HTTP_PORT: 'eighty' }), (e: Error) => e instanceof ConfigError && /ORCH_HTTP_PORT/.test(e.message));
  assert.throws(() => loadConfig({ ORCH_HTTP_PORT: '70000' }), ConfigError);
  assert.throws(() => loadConfig({ ORCH_DEFAULT_LEASE_MS: '10' }), ConfigError);
  assert.throws(() => loadConfig({ ORCH_LOG_LEVEL: 'loud' }), ConfigError);
  assert.throws(() => loadConfig({ ORCH_DEFAULT_BACKOFF_BASE_MS: '5000', ORCH_DEFAULT_BACKOFF_MAX_MS: '10' }), ConfigError);
});

test('the CLI looks for the local address file under the server\'s default data dir', () => {
  assert.equal(loadConfig({}).dataDir, DEFAULT_DATA_DIR);
});

test('ORCH_LOG_FORMAT: auto unless pretty or json; anything else fails at start-up', () => {
  assert.equal(loadConfig({}).logFormat, 'auto');
  assert.equal(loadConfig({ ORCH_LOG_FORMAT: 'json' }).logFormat, 'json');
  assert.equal(loadConfig({ ORCH_LOG_FORMAT: 'pretty' }).logFormat, 'pretty');
  assert.throws(() => loadConfig({ ORCH_LOG_FORMAT: 'xml' }), (e: Error) => e instanceof ConfigError && /logFormat/.test(e.message));
});
