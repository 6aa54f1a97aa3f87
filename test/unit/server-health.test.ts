import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProxyHealthServer, goTime, healthBody, isNodeEligible } from '../../src/server/health.js';
import { createProxyMetrics } from '../../src/server/metrics.js';
import type { Node } from '../../src/k8s/types.js';

function fakeClock(start = Date.UTC(2024, 0, 2, 3, 4, 5, 0)) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function node(over: Partial<Node['meta']> = {}, taints: Node['taints'] = []): Node {
  return {
    meta: { namespace: '', name: 'n1', labels: {}, annotations: {}, deleting: false, ...over },
    addresses: [],
    podCIDRs: [],
    taints,
  };
}

const T0 = '2024-01-02T03:04:05Z';

test('goTime formats like Go RFC3339Nano in UTC, zero time for undefined', () => {
  assert.equal(goTime(undefined), '0001-01-01T00:00:00Z');
  assert.equal(goTime(Date.UTC(2024, 0, 2, 3, 4, 5, 0)), T0);
  assert.equal(goTime(Date.UTC(2024, 0, 2, 3, 4, 5, 120)), '2024-01-02T03:04:05.12Z');
  assert.equal(goTime(Date.UTC(2024, 0, 2, 3, 4, 5, 7)), '2024-01-02T03:04:05.007Z');
});

test('fresh server: healthy, no status map, zero lastUpdated replaced by now on 200', () => {
  const c = fakeClock();
  const m = createProxyMetrics();
  const hs = new ProxyHealthServer({ healthTimeoutMs: 60_000, clock: c, metrics: m });
  const r = hs.healthz();
  assert.equal(r.status, 200);
  assert.deepEqual(r.headers, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
  assert.equal(r.body, `{"lastUpdated":"${T0}","currentTime":"${T0}","nodeEligible":true,"healthy":true}`);
  const l = hs.livez();
  assert.equal(l.body, `{"lastUpdated":"${T0}","currentTime":"${T0}","healthy":true}`);
});

test('an update queued longer than the timeout makes the family unhealthy (503), exactly at the timeout', async () => {
  const c = fakeClock();
  const m = createProxyMetrics();
  const hs = new ProxyHealthServer({ healthTimeoutMs: 60_000, clock: c, metrics: m });
  hs.updated('IPv4');
  hs.updated('IPv6');
  c.advance(1000);
  hs.queuedUpdate('IPv4');
  c.advance(30_000);
  hs.queuedUpdate('IPv4'); // only the oldest pending one counts
  c.advance(29_999);
  assert.equal(hs.healthz().status, 200);
  c.advance(1);
  const r = hs.healthz();
  assert.equal(r.status, 503);
  assert.equal(
    r.body,
    '{"lastUpdated":"2024-01-02T03:04:05Z","currentTime":"2024-01-02T03:05:06Z","nodeEligible":true,"healthy":false,' +
      '"status":{"IPv4":{"lastUpdated":"2024-01-02T03:04:05Z","healthy":false},"IPv6":{"lastUpdated":"2024-01-02T03:04:05Z","healthy":true}}}',
  );
  assert.equal(hs.livez().status, 503);
  hs.updated('IPv4');
  const ok = hs.livez();
  assert.equal(ok.status, 200);
  assert.equal(
    ok.body,
    '{"lastUpdated":"2024-01-02T03:05:06Z","currentTime":"2024-01-02T03:05:06Z","healthy":true,' +
      '"status":{"IPv4":{"lastUpdated":"2024-01-02T03:05:06Z","healthy":true},"IPv6":{"lastUpdated":"2024-01-02T03:04:05Z","healthy":true}}}',
  );
  const text = await m.registry.metrics();
  assert.match(text, /kubeproxy_proxy_healthz_total\{code="200"\} 1\n/);
  assert.match(text, /kubeproxy_proxy_healthz_total\{code="503"\} 1\n/);
  assert.match(text, /kubeproxy_proxy_livez_total\{code="503"\} 1\n/);
  assert.match(text, /kubeproxy_proxy_livez_total\{code="200"\} 1\n/);
});

test('a family that never synced is treated as starting up (healthy), as upstream', () => {
  const c = fakeClock();
  const hs = new ProxyHealthServer({ healthTimeoutMs: 1000, clock: c, metrics: createProxyMetrics() });
  hs.queuedUpdate('IPv4');
  c.advance(10_000);
  assert.equal(hs.isHealthy(), true);
  hs.updated('IPv4');
  hs.queuedUpdate('IPv4');
  c.advance(1000);
  assert.equal(hs.isHealthy(), false);
});

test('node eligibility: deleting or autoscaler taint → /healthz 503 while /livez stays 200', () => {
  const c = fakeClock();
  const hs = new ProxyHealthServer({ healthTimeoutMs: 1000, clock: c, metrics: createProxyMetrics() });
  hs.setNode(node({ deleting: true }));
  let r = hs.healthz();
  assert.equal(r.status, 503);
  assert.equal(r.body, `{"lastUpdated":"0001-01-01T00:00:00Z","currentTime":"${T0}","nodeEligible":false,"healthy":true}`);
  assert.equal(hs.livez().status, 200);
  hs.setNode(node({}, [{ key: 'ToBeDeletedByClusterAutoscaler', value: '123', effect: 'NoSchedule' }]));
  assert.equal(hs.healthz().status, 503);
  hs.setNode(node({}, [{ key: 'other', effect: 'NoSchedule' }]));
  r = hs.healthz();
  assert.equal(r.status, 200);
  hs.setNode(undefined);
  assert.equal(hs.nodeEligible(), true);
  assert.equal(isNodeEligible(node()), true);
});

test('routing mirrors Go ServeMux: only the exact paths', () => {
  const hs = new ProxyHealthServer({ healthTimeoutMs: 1000, metrics: createProxyMetrics() });
  assert.equal(hs.handle('/healthz').status, 200);
  assert.equal(hs.handle('/livez').status, 200);
  const nf = hs.handle('/healthz/');
  assert.equal(nf.status, 404);
  assert.equal(nf.body, '404 page not found\n');
});

test('healthBody omits nodeEligible when undefined and sorts families', () => {
  const s = new Map([
    ['IPv6', { lastUpdated: 0, healthy: true }],
    ['IPv4', { lastUpdated: undefined, healthy: false }],
  ] as const);
  assert.equal(
    healthBody({ lastUpdated: 0, currentTime: 0, healthy: false, status: new Map(s) }),
    '{"lastUpdated":"1970-01-01T00:00:00Z","currentTime":"1970-01-01T00:00:00Z","healthy":false,"status":{"IPv4":{"lastUpdated":"0001-01-01T00:00:00Z","healthy":false},"IPv6":{"lastUpdated":"1970-01-01T00:00:00Z","healthy":true}}}',
  );
});

test('real socket: /healthz over HTTP with headers and status', async () => {
  const c = fakeClock();
  const hs = new ProxyHealthServer({ healthTimeoutMs: 1000, clock: c, metrics: createProxyMetrics() });
  const { port } = await hs.listen('127.0.0.1:0');
  try {
    hs.updated('IPv4');
    let res = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await res.text(), `{"lastUpdated":"${T0}","currentTime":"${T0}","nodeEligible":true,"healthy":true,"status":{"IPv4":{"lastUpdated":"${T0}","healthy":true}}}`);
    hs.queuedUpdate('IPv4');
    c.advance(2000);
    res = await fetch(`http://127.0.0.1:${port}/livez`);
    assert.equal(res.status, 503);
    await res.text();
    res = await fetch(`http://127.0.0.1:${port}/nope`);
    assert.equal(res.status, 404);
    await res.text();
  } finally {
    await hs.close();
  }
});

test('listen on a taken port fails with a clear error', async () => {
  const a = new ProxyHealthServer({ healthTimeoutMs: 1000, metrics: createProxyMetrics() });
  const { port } = await a.listen('127.0.0.1:0');
  const b = new ProxyHealthServer({ healthTimeoutMs: 1000, metrics: createProxyMetrics() });
  try {
    await assert.rejects(b.listen(`127.0.0.1:${port}`), /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
    await assert.rejects(b.listen('nonsense'), /invalid bind address "nonsense"/);
  } finally {
    await a.close();
    await b.close();
  }
});

test('bind addresses parse as kube-proxy writes them', async () => {
  const { parseBindAddress } = await import('../../src/server/listen.js');
  assert.deepEqual(parseBindAddress('0.0.0.0:10256'), { host: '0.0.0.0', port: 10256 });
  assert.deepEqual(parseBindAddress('[::1]:10249'), { host: '::1', port: 10249 });
  assert.deepEqual(parseBindAddress(':10256'), { host: '::', port: 10256 });
  assert.throws(() => parseBindAddress('10256'), /invalid bind address "10256": want host:port/);
  assert.throws(() => parseBindAddress('1.2.3.4:70000'), /port 70000 is out of range/);
});
