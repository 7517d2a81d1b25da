/**
 * deploy/: no Kubernetes cluster runs here, so the manifests are checked
 * against the Kubernetes API schemas (kubernetes-models), and against the
 * server: every ORCH_* variable they set is one it reads and accepts, the
 * probes hit its routes, the container port is the one it listens on.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { loadConfig } from '../src/config/config.ts';
import { SERVE_NODE_FLAGS } from '../src/synthetic/server-process.ts';
import { REPO_ROOT } from './helpers/server.ts';

const DIR = path.join(REPO_ROOT, 'deploy/kubernetes');
const KINDS: Record<string, new (o: never) => { validate(): void }> = { Deployment, PodDisruptionBudget, Secret, Service };

async function manifests(): Promise<{ file: string; doc: Record<string, any> }[]> {
  const out = [];
  for (const file of (await readdir(DIR)).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const d of parseAllDocuments(await readFile(path.join(DIR, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      out.push({ file, doc: d.toJS() as Record<string, any> });
    }
  }
  return out;
}

describe('deploy/kubernetes', () => {
  test('every manifest is valid against the Kubernetes API schema of its kind', async () => {
    const all = await manifests();
    assert.deepEqual(all.map((m) => m.doc.kind).sort(), ['Deployment', 'PodDisruptionBudget', 'Secret', 'Service']);
    for (const { file, doc } of all) {
      const Kind = KINDS[doc.kind];
      assert.ok(Kind, `${file}: no schema for kind ${doc.kind}`);
      assert.doesNotThrow(() => new Kind(doc as never).validate(), `${file} (${doc.kind})`);
    }
  });

  test('a manifest with a mistake fails the schema check (the check is real)', () => {
    const bad = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { replicas: 'three', selector: {}, template: {} } };
    assert.throws(() => new Deployment(bad as never).validate());
  });

  test('the Deployment fits the server: probes on its routes, its port, settings it reads, labels the Service and PDB select', async () => {
    const all = await manifests();
    const dep = all.find((m) => m.doc.kind === 'Deployment')!.doc;
    const c = dep.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value ?? 'from-secret']));
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(String(c.ports[0].containerPort), env.ORCH_HTTP_PORT);
    assert.equal(dep.spec.template.metadata.annotations['prometheus.io/path'], '/metrics');
    assert.ok(dep.spec.replicas >= 3, 'several replicas');
    // every ORCH_* setting it gives is accepted by the server's own configuration (secrets replaced by valid values)
    const resolved = {
      ...env, ORCH_DATABASE_URL: 'postgres://orch@db/orch', ORCH_MIGRATION_DATABASE_URL: 'postgres://owner@db/orch',
      ORCH_NATS_URL: 'nats://a:4222,nats://b:4222', ORCH_AUTH_JWT_SECRET: 'x'.repeat(32), ORCH_REPLICA_ID: 'orch-7d9f-abcde',
    };
    const config = loadConfig(resolved);
    assert.equal(config.httpHost, '0.0.0.0');
    assert.equal(config.auth.mode, 'required', 'listening beyond loopback needs authentication');
    assert.equal(config.events.replicas, 3);
    const secretKeys = Object.keys(all.find((m) => m.doc.kind === 'Secret')!.doc.stringData);
    for (const e of c.env.filter((x: { valueFrom?: { secretKeyRef?: { key: string } } }) => x.valueFrom?.secretKeyRef)) {
      assert.ok(secretKeys.includes(e.valueFrom.secretKeyRef.key), `${e.name}: key ${e.valueFrom.secretKeyRef.key} is in the example secret`);
    }
    const labels = dep.spec.template.metadata.labels;
    for (const kind of ['Service', 'PodDisruptionBudget']) {
      const m = all.find((x) => x.doc.kind === kind)!.doc;
      const selector = m.spec.selector.matchLabels ?? m.spec.selector;
      for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `${kind} selects the Deployment's pods`);
    }
  });

  test('the image runs the compiled server the way the Deployment expects', async () => {
    const docker = await readFile(path.join(REPO_ROOT, 'deploy/Dockerfile'), 'utf8');
    assert.match(docker, /^FROM node:20/m, 'Node 20, the version the project names');
    // orch serve runs with the node flags the bench and the tests give it (src/synthetic/server-process.ts)
    const serve = ['node', ...SERVE_NODE_FLAGS, 'dist/cli/main.js', 'serve'];
    assert.ok(docker.includes(`CMD ${JSON.stringify(serve).replaceAll(',', ', ')}`), 'the image\'s CMD');
    const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.start, serve.join(' '), 'npm start');
    assert.match(docker, /COPY migrations/, 'migrations ship with the image (the server applies them at start)');
    assert.match(docker, /EXPOSE 8080/);
  });
});
