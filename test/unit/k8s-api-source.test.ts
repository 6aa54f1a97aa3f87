import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiSource, buildKubeConfig } from '../../src/k8s/api-source.js';
import { waitFor } from '../../src/lab/netns.js';
import { logger, type Logger } from '../../src/util/log.js';
import type { ClusterState, InputWarning } from '../../src/k8s/types.js';
import { FakeApiServer, labelSelectorMatches } from '../support/k8s-fake-apiserver.js';
import { TEST_CA_CERT, TEST_SERVER_CERT, TEST_SERVER_KEY } from '../support/k8s-test-certs.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
void logger;

function svc(name: string, ip: string, port = 80, labels: Record<string, string> = {}, ns = 'default') {
  return { metadata: { name, namespace: ns, labels }, spec: { clusterIP: ip, clusterIPs: [ip], ipFamilies: ['IPv4'], ports: [{ name: 'http', port, protocol: 'TCP', targetPort: 8080 }] } };
}

function slice(name: string, service: string, ips: string[], ns = 'default') {
  return {
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function node(name: string, ip: string) {
  return { metadata: { name, labels: { 'topology.kubernetes.io/zone': 'z1' } }, status: { addresses: [{ type: 'InternalIP', address: ip }] } };
}

interface Harness {
  server: FakeApiServer;
  source: ApiSource;
  changes: ClusterState[];
  warnings: InputWarning[];
  connected: boolean[];
  latest(): ClusterState;
}

async function harness(setup: (s: FakeApiServer) => void, opts: { pods?: boolean } = {}): Promise<Harness> {
  const server = new FakeApiServer();
  await server.start();
  setup(server);
  const source = new ApiSource({
    kubeconfig: server.writeKubeconfig(),
    nodeName: 'node-a',
    pods: opts.pods,
    backoffInitialMs: 50,
    backoffMaxMs: 400,
    logger: quiet,
  });
  const h: Harness = {
    server,
    source,
    changes: [],
    warnings: [],
    connected: [],
    latest: () => h.changes[h.changes.length - 1]!,
  };
  source.on('change', (s) => h.changes.push(s));
  source.on('warning', (w) => h.warnings.push(w));
  source.on('connected', (ok) => h.connected.push(ok));
  await source.start();
  return h;
}

async function done(h: Harness): Promise<void> {
  await h.source.stop();
  await h.server.stop();
}

const names = (s: ClusterState) => s.services.map((x) => `${x.meta.namespace}/${x.meta.name}`).sort();
const ports = (s: ClusterState, name: string) => s.services.find((x) => x.meta.name === name)?.ports.map((p) => p.port);
const sliceIPs = (s: ClusterState, name: string) => s.endpointSlices.find((x) => x.meta.name === name)?.endpoints.map((e) => e.addresses[0]).sort();

test('fake API server: label selector subset', () => {
  assert.ok(labelSelectorMatches('!a,!b', { c: '1' }));
  assert.ok(!labelSelectorMatches('!a,!b', { b: '' }));
  assert.ok(labelSelectorMatches('x=1', { x: '1' }));
  assert.ok(!labelSelectorMatches('x!=1', { x: '1' }));
});

test('initial list: kube-proxy selectors, this node only, normalized objects, kubeconfig auth', async () => {
  const h = await harness((s) => {
    s.apply('services', svc('web', '10.96.0.041'));
    s.apply('services', svc('other-proxy', '10.96.0.2', 80, { 'service.kubernetes.io/service-proxy-name': 'foo' }));
    s.apply('services', svc('headless-labelled', '10.96.0.3', 80, { 'service.kubernetes.io/headless': '' }));
    s.apply('endpointslices', slice('web-abc', 'web', ['10.244.1.5', '10.244.2.6']));
    s.apply('endpointslices', { ...slice('x-abc', 'other-proxy', ['10.244.1.9']), metadata: { name: 'x-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'other-proxy', 'service.kubernetes.io/service-proxy-name': 'foo' } } });
    s.apply('nodes', node('node-a', '192.168.0.2'));
    s.apply('nodes', node('node-b', '192.168.0.3'));
    // Several pages: the list must follow `continue`.
    for (let i = 0; i < 7; i++) s.apply('services', svc(`many-${i}`, `10.96.1.${i + 1}`));
  });
  try {
    assert.ok(h.source.synced);
    assert.equal(h.changes.length, 1);
    const st = h.latest();
    assert.deepEqual(names(st), ['default/many-0', 'default/many-1', 'default/many-2', 'default/many-3', 'default/many-4', 'default/many-5', 'default/many-6', 'default/web']);
    assert.deepEqual(st.services.find((x) => x.meta.name === 'web')!.clusterIPs, ['10.96.0.41']);
    assert.deepEqual(st.endpointSlices.map((x) => x.meta.name), ['web-abc']);
    assert.deepEqual(st.nodes.map((n) => n.meta.name), ['node-a']);
    assert.deepEqual(st.pods, []);
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    const lists = h.server.requests.filter((r) => r.path === '/api/v1/services' && r.query.watch === undefined);
    assert.ok(lists.every((r) => r.query.labelSelector === '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless'));
    const nodeReqs = h.server.requests.filter((r) => r.path === '/api/v1/nodes');
    assert.ok(nodeReqs.length >= 2 && nodeReqs.every((r) => r.query.fieldSelector === 'metadata.name=node-a'));
    const watches = h.server.requests.filter((r) => r.query.watch === 'true');
    assert.ok(watches.some((r) => r.path === '/apis/discovery.k8s.io/v1/endpointslices' && r.query.labelSelector!.startsWith('!service')));
    assert.ok(watches.every((r) => r.query.allowWatchBookmarks === 'true' && Number(r.query.timeoutSeconds) >= 300));
    assert.ok(!h.server.requests.some((r) => r.path === '/api/v1/pods'), 'pods are not watched unless asked');
    assert.deepEqual(h.connected, [true]);
  } finally {
    await done(h);
  }
});

test('list pages follow continue tokens', async () => {
  const server = new FakeApiServer();
  await server.start();
  for (let i = 0; i < 5; i++) server.apply('services', svc(`s${i}`, `10.96.2.${i + 1}`));
  const source = new ApiSource({ kubeconfig: server.writeKubeconfig(), nodeName: 'node-a', pageSize: 2, logger: quiet, backoffInitialMs: 50 });
  try {
    await source.start();
    assert.equal(source.current().services.length, 5);
    const lists = server.requests.filter((r) => r.path === '/api/v1/services' && !r.query.watch);
    assert.deepEqual(lists.map((r) => r.query.continue ?? ''), ['', '2', '4']);
  } finally {
    await source.stop();
    await server.stop();
  }
});

test('watch events: ADDED, MODIFIED, DELETED, BOOKMARK, and label changes through the selector', async () => {
  const h = await harness((s) => {
    s.apply('services', svc('web', '10.96.0.1'));
    s.apply('endpointslices', slice('web-abc', 'web', ['10.244.1.5']));
    s.apply('nodes', node('node-a', '192.168.0.2'));
  });
  try {
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    h.server.apply('services', svc('api', '10.96.0.2'));
    await waitFor('ADDED', () => names(h.latest()).includes('default/api'), 5000, 10);
    h.server.apply('services', svc('web', '10.96.0.1', 8443));
    await waitFor('MODIFIED', () => ports(h.latest(), 'web')?.[0] === 8443, 5000, 10);
    h.server.apply('endpointslices', slice('web-abc', 'web', ['10.244.1.5', '10.244.3.7']));
    await waitFor('slice MODIFIED', () => sliceIPs(h.latest(), 'web-abc')?.length === 2, 5000, 10);
    h.server.delete('services', 'default', 'api');
    await waitFor('DELETED', () => !names(h.latest()).includes('default/api'), 5000, 10);
    // A label that the proxy selector excludes: the watch turns the update into a DELETED.
    h.server.apply('services', svc('web', '10.96.0.1', 8443, { 'service.kubernetes.io/service-proxy-name': 'other' }));
    await waitFor('label-excluded service removed', () => !names(h.latest()).includes('default/web'), 5000, 10);
    // Bookmark: no change emitted, but the next watch resumes from its resourceVersion.
    const before = h.changes.length;
    h.server.bookmark();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(h.changes.length, before, 'a bookmark is not a change');
    const bookmarkRV = h.server.resourceVersion;
    const nWatches = h.server.requests.filter((r) => r.query.watch).length;
    h.server.endWatches();
    await waitFor('re-watch after clean end', () => h.server.openWatchCount() === 3, 5000, 10);
    const rewatches = h.server.requests.filter((r) => r.query.watch).slice(nWatches);
    assert.ok(rewatches.every((r) => r.query.resourceVersion === bookmarkRV), JSON.stringify(rewatches.map((r) => r.query.resourceVersion)));
    assert.ok(!h.server.requests.slice(-3).some((r) => !r.query.watch), 'a clean end re-watches without relisting');
  } finally {
    await done(h);
  }
});

for (const mode of ['event', 'http'] as const) {
  test(`410 Gone (${mode === 'event' ? 'ERROR event with code 410' : 'HTTP 410'}) → relist, and deletions during the gap are noticed`, async () => {
    const h = await harness((s) => {
      s.apply('services', svc('web', '10.96.0.1'));
      s.apply('services', svc('old', '10.96.0.9'));
      s.apply('nodes', node('node-a', '192.168.0.2'));
    });
    try {
      await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
      h.server.goneMode = mode;
      // Changes the client misses: watches cut, history compacted, then they come back with an old RV.
      h.server.endWatches();
      const listsBefore = h.server.requests.filter((r) => r.path === '/api/v1/services' && !r.query.watch).length;
      h.server.delete('services', 'default', 'old');
      h.server.apply('services', svc('new', '10.96.0.10'));
      h.server.compact();
      if (mode === 'event') h.server.expireOpenWatches();
      await waitFor('relist catches up', () => names(h.latest()).join() === 'default/new,default/web', 5000, 10);
      const lists = h.server.requests.filter((r) => r.path === '/api/v1/services' && !r.query.watch).length;
      assert.ok(lists > listsBefore, 'relisted');
      await waitFor('watching again', () => h.server.openWatchCount() === 3, 5000, 10);
      h.server.apply('services', svc('after', '10.96.0.11'));
      await waitFor('events after relist', () => names(h.latest()).includes('default/after'), 5000, 10);
    } finally {
      await done(h);
    }
  });
}

test('an in-stream 410 on an open watch → relist', async () => {
  const h = await harness((s) => s.apply('services', svc('web', '10.96.0.1')));
  try {
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    h.server.expireNextWatches(1);
    h.server.expireOpenWatches();
    h.server.apply('services', svc('x', '10.96.0.5'));
    await waitFor('caught up', () => names(h.latest()).includes('default/x'), 5000, 10);
  } finally {
    await done(h);
  }
});

test('a dropped connection → reconnect with backoff and catch up from the last resourceVersion', async () => {
  const h = await harness((s) => s.apply('services', svc('web', '10.96.0.1')));
  try {
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    h.server.dropWatches();
    h.server.apply('services', svc('during-drop', '10.96.0.7'));
    await waitFor('reconnected and caught up', () => names(h.latest()).includes('default/during-drop'), 5000, 10);
    await waitFor('watches open again', () => h.server.openWatchCount() === 3, 5000, 10);
    assert.ok(h.connected.includes(false), 'reported the failure');
    assert.equal(h.connected[h.connected.length - 1], true);
  } finally {
    await done(h);
  }
});

test('API server down then back: last state kept, connected false→true, then catches up', async () => {
  const h = await harness((s) => {
    s.apply('services', svc('web', '10.96.0.1'));
    s.apply('services', svc('gone', '10.96.0.2'));
  });
  try {
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    await h.server.stop();
    await waitFor('disconnected', () => h.connected[h.connected.length - 1] === false, 5000, 10);
    assert.deepEqual(names(h.source.current()), ['default/gone', 'default/web'], 'state kept while down');
    // Let a few retries fail (backoff grows, capped at 400 ms here).
    await new Promise((r) => setTimeout(r, 700));
    const retries = h.server.requests.length;
    h.server.delete('services', 'default', 'gone');
    h.server.apply('services', svc('born', '10.96.0.3'));
    h.server.compact(); // what happened while down is only visible through a relist
    await h.server.start();
    await waitFor('caught up', () => names(h.latest()).join() === 'default/born,default/web', 10_000, 10);
    assert.equal(h.connected[h.connected.length - 1], true);
    assert.ok(h.server.requests.length > retries);
  } finally {
    await done(h);
  }
});

test('backoff is capped and spaced: a server failing every request is not hammered', async () => {
  const server = new FakeApiServer();
  await server.start();
  const url = server.url;
  await server.stop(); // nothing listens: every request fails at once
  const delays: number[] = [];
  const counting: Logger = {
    ...quiet,
    warn(msg) {
      const m = /retrying in (\d+) ms/.exec(msg);
      if (m) delays.push(Number(m[1]));
    },
  };
  const source = new ApiSource({ master: url, nodeName: 'node-a', backoffInitialMs: 20, backoffMaxMs: 100, logger: counting });
  const started = source.start();
  started.catch(() => {});
  await new Promise((r) => setTimeout(r, 600));
  await server.start(); // same port
  server.apply('services', svc('web', '10.96.0.1'));
  await started;
  // 3 resources; with delays 20,40,80,100,100… ≈ 8 attempts each in 600 ms. A spinning client would make thousands.
  assert.deepEqual(names(source.current()), ['default/web']);
  assert.ok(delays.length >= 6 && delays.length <= 60, `attempts: ${delays.length}`);
  assert.ok(delays.includes(20) && delays.includes(40) && delays.includes(100), `exponential: ${delays.join(',')}`);
  assert.ok(Math.max(...delays) === 100, 'capped');
  await source.stop();
  await server.stop();
});

test('invalid objects: skipped with a warning and a Kubernetes Event; the rest is used; forbidden events do not crash', async () => {
  const h = await harness((s) => {
    s.apply('services', svc('web', '10.96.0.1'));
    s.apply('services', { ...svc('bad-ip', '10.96.0.300'), metadata: { name: 'bad-ip', namespace: 'team-a' } });
  });
  try {
    assert.deepEqual(names(h.latest()), ['default/web']);
    const w = h.warnings.find((x) => x.object === 'team-a/bad-ip');
    assert.ok(w, JSON.stringify(h.warnings));
    assert.equal(w.source, 'api');
    assert.equal(w.field, 'spec.clusterIP');
    await waitFor('event posted', () => h.server.events.length === 1, 5000, 10);
    const ev = h.server.events[0]! as Record<string, any>;
    assert.equal(ev.reason, 'InvalidObject');
    assert.equal(ev.type, 'Warning');
    assert.equal(ev.metadata.namespace, 'team-a');
    assert.equal(ev.regarding.name, 'bad-ip');
    assert.equal(ev.regarding.kind, 'Service');
    assert.match(ev.note, /spec\.clusterIP/);
    assert.match(ev.eventTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // A valid update replaces it; an invalid update of a valid object removes it.
    h.server.eventStatus = 403;
    h.server.apply('services', { ...svc('bad-ip', '10.96.0.30'), metadata: { name: 'bad-ip', namespace: 'team-a' } });
    await waitFor('fixed object used', () => names(h.latest()).includes('team-a/bad-ip'), 5000, 10);
    h.server.apply('services', { ...svc('web', '10.96.0.1'), spec: { clusterIP: '10.96.0.1', ports: [{ port: 70000 }] } });
    await waitFor('invalid update drops it', () => !names(h.latest()).includes('default/web'), 5000, 10);
    await Promise.all([...h.source.pendingEvents]);
    assert.equal(h.server.events.length, 1, 'the forbidden event was not stored, and nothing crashed');
  } finally {
    await done(h);
  }
});

test('pods are watched when asked (for DNS)', async () => {
  const h = await harness(
    (s) =>
      s.apply('pods', {
        metadata: { name: 'p1', namespace: 'default', labels: { app: 'web' } },
        spec: { nodeName: 'node-a', containers: [{ name: 'c' }] },
        status: { podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }], conditions: [{ type: 'Ready', status: 'True' }] },
      }),
    { pods: true },
  );
  try {
    assert.deepEqual(h.latest().pods.map((p) => [p.meta.name, p.podIPs, p.ready]), [['p1', ['10.244.1.5'], true]]);
    assert.deepEqual(h.latest().endpointSlices, [], 'the API source does not derive slices: the controller writes them');
  } finally {
    await done(h);
  }
});

test('buildKubeConfig: --master overrides the kubeconfig server; http needs no TLS settings', async () => {
  const server = new FakeApiServer();
  await server.start();
  try {
    const kc = buildKubeConfig({ kubeconfig: server.writeKubeconfig(), master: 'http://127.0.0.1:1/' });
    assert.equal(kc.getCurrentCluster()!.server, 'http://127.0.0.1:1');
    assert.equal(kc.getCurrentUser()!.token, 'test-token');
    const kc2 = buildKubeConfig({ master: server.url });
    assert.equal(kc2.getCurrentCluster()!.server, server.url);
    server.apply('services', svc('web', '10.96.0.1'));
    const src = new ApiSource({ kubeConfig: kc2, nodeName: 'n', logger: quiet });
    await src.start();
    assert.deepEqual(names(src.current()), ['default/web']);
    await src.stop();
  } finally {
    await server.stop();
  }
});

test('HTTPS with the kubeconfig CA and a bearer token; a wrong token is retried, not fatal', async () => {
  const server = new FakeApiServer({ tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT, ca: TEST_CA_CERT }, token: 's3cret' });
  await server.start();
  server.apply('services', svc('web', '10.96.0.1'));
  const source = new ApiSource({ kubeconfig: server.writeKubeconfig(), nodeName: 'node-a', logger: quiet, backoffInitialMs: 50 });
  try {
    assert.match(server.url, /^https:/);
    await source.start();
    assert.deepEqual(names(source.current()), ['default/web']);
    assert.ok(server.requests.length >= 3 && server.requests.every((r) => r.authorization === 'Bearer s3cret'));
    await waitFor('watches open', () => server.openWatchCount() === 3, 5000, 10);
  } finally {
    await source.stop();
  }
  // The same server, a kubeconfig with a wrong token: 401s are retried with backoff until stop().
  const bad = new FakeApiServer({ tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT, ca: TEST_CA_CERT }, token: 'other' });
  await bad.start();
  const kubeconfig = bad.writeKubeconfig();
  await bad.stop();
  const wrong = new ApiSource({ kubeconfig, master: server.url, nodeName: 'node-a', logger: quiet, backoffInitialMs: 20, backoffMaxMs: 40 });
  const started = wrong.start();
  started.catch(() => {});
  try {
    await waitFor('401s retried', () => server.requests.filter((r) => r.authorization === 'Bearer other').length >= 6, 5000, 10);
    assert.equal(wrong.synced, false);
  } finally {
    await wrong.stop();
    await assert.rejects(started, /stopped before its first sync/);
    await server.stop();
  }
});

test('a non-410 ERROR event on a watch → restart with backoff, from the last resourceVersion (no relist)', async () => {
  const h = await harness((s) => s.apply('services', svc('web', '10.96.0.1')));
  try {
    await waitFor('watches open', () => h.server.openWatchCount() === 3, 5000, 10);
    const lists = h.server.requests.filter((r) => !r.query.watch).length;
    h.server.errorOpenWatches(500);
    await waitFor('disconnected', () => h.connected.includes(false), 5000, 10);
    h.server.apply('services', svc('api', '10.96.0.2'));
    await waitFor('caught up', () => names(h.latest()).includes('default/api'), 5000, 10);
    assert.equal(h.server.requests.filter((r) => !r.query.watch).length, lists, 'resumed from its resourceVersion');
    assert.equal(h.connected[h.connected.length - 1], true);
  } finally {
    await done(h);
  }
});
