// The bounded-frequency runner and the change tracker, on a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BoundedFrequencyRunner, type Clock } from '../../src/proxy/runner.js';
import { ChangeTracker } from '../../src/proxy/change-tracker.js';
import { syntheticService, syntheticSlice } from '../../bench/sync.js';
import type { ClusterState } from '../../src/k8s/types.js';

class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  /** Advances time, firing due timers in order, letting promises settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const due = this.timers[0];
      if (!due || due.at > end) break;
      this.timers.shift();
      this.t = due.at;
      due.fn();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.t = end;
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
}

function runnerWith(clock: FakeClock, fail: () => boolean = () => false) {
  const runs: number[] = [];
  const r = new BoundedFrequencyRunner(
    'test',
    async () => {
      runs.push(clock.now());
      if (fail()) throw new Error('boom');
    },
    { minIntervalMs: 1000, retryIntervalMs: 5000, maxIntervalMs: 30_000 },
    clock,
  );
  return { r, runs };
}

test('runner: the first request runs at once, later ones wait for minInterval and fold together', async () => {
  const clock = new FakeClock();
  const { r, runs } = runnerWith(clock);
  r.start();
  r.run();
  await clock.advance(0);
  assert.deepEqual(runs, [0]);
  await clock.advance(200);
  r.run();
  r.run();
  r.run();
  await clock.advance(500);
  assert.deepEqual(runs, [0], 'not before minInterval');
  await clock.advance(300);
  assert.deepEqual(runs, [0, 1000], 'three requests, one run at lastRun+minInterval');
  await clock.advance(5000);
  assert.equal(runs.length, 2, 'nothing more without requests');
  await r.stop();
});

test('runner: a run happens at least every maxInterval', async () => {
  const clock = new FakeClock();
  const { r, runs } = runnerWith(clock);
  r.start();
  await clock.advance(95_000);
  assert.deepEqual(runs, [30_000, 60_000, 90_000]);
  await r.stop();
  await clock.advance(60_000);
  assert.equal(runs.length, 3, 'stopped');
});

test('runner: a failed run is retried after retryInterval', async () => {
  const clock = new FakeClock();
  let failures = 2;
  const { r, runs } = runnerWith(clock, () => failures-- > 0);
  r.start();
  r.run();
  await clock.advance(0);
  await clock.advance(12_000);
  assert.deepEqual(runs, [0, 5000, 10_000]);
  assert.equal(r.failures, 2);
  await clock.advance(30_000);
  assert.deepEqual(runs, [0, 5000, 10_000, 40_000], 'back to the periodic schedule after success');
  await r.stop();
});

test('runner: requests during a run cause exactly one more run after it', async () => {
  const clock = new FakeClock();
  let release!: () => void;
  const runs: number[] = [];
  const r = new BoundedFrequencyRunner(
    'slow',
    () => {
      runs.push(clock.now());
      return runs.length === 1 ? new Promise<void>((res) => (release = res)) : Promise.resolve();
    },
    { minIntervalMs: 1000, retryIntervalMs: 5000, maxIntervalMs: 30_000 },
    clock,
  );
  r.start();
  r.run();
  await clock.advance(0);
  r.run();
  r.run();
  await clock.advance(3000);
  assert.equal(runs.length, 1, 'never overlapping');
  release();
  await clock.advance(0);
  await clock.advance(1000);
  assert.deepEqual(runs, [0, 3000]);
  await r.stop();
});

function state(n: number): ClusterState {
  const s: ClusterState = { services: [], endpointSlices: [], nodes: [], pods: [] };
  for (let i = 0; i < n; i++) {
    s.services.push(syntheticService(i));
    s.endpointSlices.push(syntheticSlice(i, 2));
  }
  return s;
}

test('change tracker: first state is full; later only the touched service ports, with counts and times', () => {
  let now = 1000;
  const t = new ChangeTracker('node-a', () => now);
  const s = state(5);
  t.update(s);
  let p = t.take();
  assert.equal(p.full, true);
  assert.equal(p.changed.size, 5);

  // Same objects again: nothing.
  now = 2000;
  assert.equal(t.update({ ...s }), 0);
  assert.equal(t.hasPending, false);

  // Equal content in new objects (a folder re-read): nothing.
  assert.equal(t.update(state(5)), 0);

  // One endpoint change and one service change.
  const s2 = state(5);
  s2.endpointSlices[1] = syntheticSlice(1, 3);
  s2.services[3] = { ...s2.services[3]!, sessionAffinity: 'ClientIP' };
  now = 3000;
  t.update(s2);
  assert.deepEqual(t.pendingCounts, { services: 1, endpoints: 1 });
  // A second update before the sync keeps the first arrival time.
  now = 3500;
  const s3 = state(5);
  s3.endpointSlices[1] = syntheticSlice(1, 4);
  s3.services[3] = s2.services[3]!;
  t.update(s3);
  p = t.take();
  assert.equal(p.full, false);
  assert.deepEqual([...p.changed].sort(), ['ns1/svc1:http', 'ns3/svc3:http']);
  assert.equal(p.since.get('ns1/svc1'), 3000);
  assert.equal(p.serviceChanges + p.endpointChanges, 3);
  assert.equal(p.udp, false);

  // A service removed: its ports are changed.
  const s4 = state(5);
  s4.endpointSlices[1] = syntheticSlice(1, 4);
  s4.services[3] = s2.services[3]!;
  s4.services.splice(0, 1);
  t.update(s4);
  p = t.take();
  assert.deepEqual([...p.changed], ['ns0/svc0:http']);

  // A service's slices deleted, then back in new but equal objects: changed both times.
  const s4b = { ...s4, endpointSlices: s4.endpointSlices.filter((x) => x.serviceName !== 'svc2') };
  t.update(s4b);
  assert.deepEqual([...t.take().changed], ['ns2/svc2:http']);
  t.update({ ...s4, endpointSlices: s4.endpointSlices.map((x) => structuredClone(x)) });
  assert.deepEqual([...t.take().changed], ['ns2/svc2:http']);

  // This node's labels change: full.
  const s5 = { ...s4, nodes: [{ meta: { namespace: '', name: 'node-a', labels: { 'topology.kubernetes.io/zone': 'b' }, annotations: {}, deleting: false }, addresses: [], podCIDRs: [], taints: [] }] };
  t.update(s5);
  assert.equal(t.take().full, true);
});

test('change tracker: UDP services flag conntrack cleanup; restore() puts changes back', () => {
  const t = new ChangeTracker('node-a');
  const s = state(2);
  t.update(s);
  t.take();
  const s2 = state(2);
  s2.services[0] = { ...s2.services[0]!, ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }] };
  t.update(s2);
  const p = t.take();
  assert.equal(p.udp, true);
  assert.deepEqual([...p.changed].sort(), ['ns0/svc0:dns', 'ns0/svc0:http']);
  t.restore(p);
  assert.equal(t.take().changed.size, 2);
});
