// The agent loop (source → tracker → runner → backend) with a fake source and
// a fake backend: full sync first, partial syncs with the changed keys after,
// a failed sync retried as a full one, health and metrics following.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ClusterSource, SourceEvents } from '../../src/k8s/source.js';
import type { ClusterState } from '../../src/k8s/types.js';
import type { FamilySyncReport, ProxyBackend } from '../../src/dataplane/backend.js';
import type { PendingChanges } from '../../src/proxy/change-tracker.js';
import { ProxyAgent } from '../../src/proxy/change-loop.js';
import { createProxyMetrics } from '../../src/server/metrics.js';
import { ProxyHealthServer } from '../../src/server/health.js';
import { logger } from '../../src/util/log.js';
import { syntheticService, syntheticSlice } from '../../bench/sync.js';

class FakeSource extends EventEmitter<SourceEvents> implements ClusterSource {
  state: ClusterState = { services: [], endpointSlices: [], nodes: [], pods: [] };
  synced = false;
  async start() {
    this.synced = true;
  }
  async stop() {}
  current() {
    return this.state;
  }
  set(s: ClusterState) {
    this.state = s;
    this.emit('change', s);
  }
}

class FakeBackend implements ProxyBackend {
  readonly mode = 'fake';
  calls: { full: boolean; changed: string[] }[] = [];
  failNext = false;
  requestFull: () => void = () => {};
  async start(requestFullSync: () => void) {
    this.requestFull = requestFullSync;
  }
  async sync(_s: ClusterState, full: boolean, changes: PendingChanges): Promise<FamilySyncReport[]> {
    this.calls.push({ full, changed: [...changes.changed].sort() });
    if (this.failNext) {
      this.failNext = false;
      return [{ family: 'IPv4', ok: false, full, detail: {}, error: new Error('restore failed') }];
    }
    return [{ family: 'IPv4', ok: true, full, detail: {} }];
  }
  async cleanup() {}
  async stop() {}
}

function state(n: number, eps = 2): ClusterState {
  const s: ClusterState = { services: [], endpointSlices: [], nodes: [], pods: [] };
  for (let i = 0; i < n; i++) {
    s.services.push(syntheticService(i));
    s.endpointSlices.push(syntheticSlice(i, eps));
  }
  return s;
}

async function until(what: string, p: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!p()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('agent: full first, then partial syncs of what changed; a failure makes the next sync full', async () => {
  const source = new FakeSource();
  source.state = state(3);
  const backend = new FakeBackend();
  const metrics = createProxyMetrics();
  const health = new ProxyHealthServer({ healthTimeoutMs: 60_000, metrics });
  const agent = new ProxyAgent({
    source,
    backend,
    nodeName: 'node-a',
    families: ['IPv4'],
    minSyncPeriodMs: 20,
    syncPeriodMs: 60_000,
    metrics,
    health,
    log: logger({ test: 'agent' }),
  });
  try {
    await agent.start();
    await until('the first sync', () => backend.calls.length === 1);
    assert.equal(backend.calls[0]!.full, true);
    assert.equal(health.isHealthy(), true);

    const s2 = state(3);
    s2.endpointSlices[1] = syntheticSlice(1, 3);
    source.set(s2);
    await until('a partial sync', () => backend.calls.length === 2);
    assert.deepEqual(backend.calls[1], { full: false, changed: ['ns1/svc1:http'] });

    backend.failNext = true;
    const s3 = { ...s2, endpointSlices: s2.endpointSlices.slice() };
    s3.endpointSlices[2] = syntheticSlice(2, 5);
    source.set(s3);
    await until('the failing sync', () => backend.calls.length === 3);
    assert.deepEqual(backend.calls[2], { full: false, changed: ['ns2/svc2:http'] });
    // The retry comes within syncPeriod; a new change brings it sooner, and it is full.
    source.set(state(4));
    await until('the retry', () => backend.calls.length === 4);
    assert.equal(backend.calls[3]!.full, true);
    const text = await metrics.registry.metrics();
    assert.match(text, /kubeproxy_network_programming_duration_seconds_count\{ip_family="IPv4"\} [1-9]/);
    assert.match(text, /kubeproxy_sync_proxy_rules_endpoint_changes_total [1-9]/);

    // A lost canary asks for a full sync.
    backend.requestFull();
    await until('the canary resync', () => backend.calls.length === 5);
    assert.equal(backend.calls[4]!.full, true);
  } finally {
    await agent.stop();
  }
});
