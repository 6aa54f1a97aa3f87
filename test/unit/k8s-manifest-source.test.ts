import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, renameSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestSource } from '../../src/k8s/manifest-source.js';
import type { Logger } from '../../src/util/log.js';
import type { ClusterState, InputWarning } from '../../src/k8s/types.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

const svc = (name: string, port: number, ip = '10.96.0.10') =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n  clusterIP: ${ip}\n  selector: {app: ${name}}\n  ports:\n  - port: ${port}\n`;
const pod = (name: string, app: string, ip: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, labels: {app: ${app}}}\nspec: {nodeName: n1}\nstatus: {podIP: ${ip}, conditions: [{type: Ready, status: "True"}]}\n`;

interface Run {
  dir: string;
  src: ManifestSource;
  changes: { at: number; state: ClusterState }[];
  warnings: InputWarning[];
  connected: boolean[];
}

async function setup(files: Record<string, string>, opts: { rescanMs?: number } = {}): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-ms-'));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  const src = new ManifestSource({ dir, logger: quiet, rescanMs: opts.rescanMs });
  const run: Run = { dir, src, changes: [], warnings: [], connected: [] };
  src.on('change', (state) => run.changes.push({ at: Date.now(), state }));
  src.on('warning', (w) => run.warnings.push(w));
  src.on('connected', (ok) => run.connected.push(ok));
  await src.start();
  return run;
}

async function teardown(r: Run): Promise<void> {
  await r.src.stop();
  rmSync(r.dir, { recursive: true, force: true });
}

/** Waits for a change whose state satisfies `pred`; returns how long it took from `since`. */
async function changeWhere(r: Run, since: number, pred: (s: ClusterState) => boolean, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = r.changes.find((c) => c.at >= since && pred(c.state));
    if (hit) return hit.at - since;
    if (Date.now() > deadline) throw new Error(`no matching change within ${timeoutMs} ms; last: ${JSON.stringify(r.changes.at(-1)?.state.services.map((s) => s.meta.name))}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

const ports = (s: ClusterState, name: string) => s.services.find((x) => x.meta.name === name)?.ports.map((p) => p.port)[0];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('start: reads the folder once, emits one change, synced', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80), 'sub/pods.yaml': pod('web-1', 'web', '10.244.1.5') });
  try {
    assert.ok(r.src.synced);
    assert.equal(r.changes.length, 1);
    assert.deepEqual(r.src.current().services.map((s) => s.meta.name), ['web']);
    assert.deepEqual(r.src.current().endpointSlices.map((s) => s.endpoints.map((e) => e.addresses[0])), [['10.244.1.5']], 'pods become slices');
    assert.deepEqual(r.connected, [true]);
  } finally {
    await teardown(r);
  }
});

test('a missing folder is an error at start', async () => {
  const src = new ManifestSource({ dir: join(tmpdir(), 'kproxy-no-such-dir-' + process.pid), logger: quiet });
  await assert.rejects(src.start(), /cannot read manifests folder .*no such file or directory/);
});

test('editing a file → change within a second (watch path), also in a subfolder and a new subfolder', async () => {
  // A long rescan period so that only the fs.watch path can be this fast.
  const r = await setup({ 'web.yaml': svc('web', 80), 'sub/api.yaml': svc('api', 8080, '10.96.0.11') }, { rescanMs: 60_000 });
  try {
    let t = Date.now();
    writeFileSync(join(r.dir, 'web.yaml'), svc('web', 81));
    const took = await changeWhere(r, t, (s) => ports(s, 'web') === 81);
    assert.ok(took < 1000, `took ${took} ms`);
    t = Date.now();
    writeFileSync(join(r.dir, 'sub/api.yaml'), svc('api', 8081, '10.96.0.11'));
    await changeWhere(r, t, (s) => ports(s, 'api') === 8081);
    // Scaling up: a pod file appears; its endpoint shows up in the derived slice.
    t = Date.now();
    writeFileSync(join(r.dir, 'sub/web-pod.yaml'), pod('web-1', 'web', '10.244.1.5'));
    await changeWhere(r, t, (s) => s.endpointSlices.some((x) => x.serviceName === 'web' && x.endpoints.length === 1));
    // A new subfolder, then a file in it.
    t = Date.now();
    mkdirSync(join(r.dir, 'new'));
    await sleep(150);
    writeFileSync(join(r.dir, 'new', 'db.yaml'), svc('db', 5432, '10.96.0.12'));
    await changeWhere(r, t, (s) => ports(s, 'db') === 5432);
    // Deleting a file removes its objects.
    t = Date.now();
    unlinkSync(join(r.dir, 'sub/api.yaml'));
    await changeWhere(r, t, (s) => !s.services.some((x) => x.meta.name === 'api'));
  } finally {
    await teardown(r);
  }
});

test('editors that write a temp file and rename it over the original are seen', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80) }, { rescanMs: 60_000 });
  try {
    const t = Date.now();
    writeFileSync(join(r.dir, '.web.yaml.swp'), svc('web', 90));
    renameSync(join(r.dir, '.web.yaml.swp'), join(r.dir, 'web.yaml'));
    await changeWhere(r, t, (s) => ports(s, 'web') === 90);
  } finally {
    await teardown(r);
  }
});

test('the periodic rescan catches changes the watch would miss', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80) }, { rescanMs: 200 });
  try {
    // Close the watchers to simulate a filesystem that does not deliver events.
    for (const w of (r.src as unknown as { watchers: Map<string, { close(): void }> }).watchers.values()) w.close();
    (r.src as unknown as { watchers: Map<string, unknown> }).watchers.clear();
    (r.src as unknown as { syncWatchers: () => void }).syncWatchers = () => {};
    const t = Date.now();
    writeFileSync(join(r.dir, 'web.yaml'), svc('web', 82));
    await changeWhere(r, t, (s) => ports(s, 'web') === 82);
  } finally {
    await teardown(r);
  }
});

test('the fallback rescan: rarer while every directory is watched (scaled by its cost), the base period when a watch is lost', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80), 'sub/api.yaml': svc('api', 8080, '10.96.0.11') }, { rescanMs: 100 });
  type Inner = { lastFullScanMs: number; armRescan(): void; watchers: Map<string, import('node:events').EventEmitter> };
  const inner = r.src as unknown as Inner;
  try {
    assert.equal(r.src.rescanPeriodMs, 100, 'a folder that costs nothing to rescan keeps the base period');
    // A folder whose rescan takes 200 ms (10,000 files or so): every 50 × 200 ms while watched.
    inner.lastFullScanMs = 200;
    inner.armRescan();
    assert.equal(r.src.rescanPeriodMs, 10_000);
    inner.lastFullScanMs = 5_000;
    inner.armRescan();
    assert.equal(r.src.rescanPeriodMs, 60_000, 'capped at maxRescanMs');
    // A watch fails (inotify limits, a filesystem without events): the base period at once.
    inner.watchers.get(join(r.dir, 'sub'))!.emit('error', new Error('ENOSPC'));
    assert.equal(r.src.rescanPeriodMs, 100);
    // And the rescan then picks up what that directory's watch would have said.
    const t = Date.now();
    writeFileSync(join(r.dir, 'sub/api.yaml'), svc('api', 8081, '10.96.0.11'));
    await changeWhere(r, t, (s) => ports(s, 'api') === 8081);
  } finally {
    await teardown(r);
  }
});

test('a half-written file keeps its last good objects (and warns) until it parses', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80), 'other.yaml': svc('other', 70, '10.96.0.9') }, { rescanMs: 60_000 });
  try {
    const full = svc('web', 81);
    // Truncated mid-document: a YAML syntax error.
    writeFileSync(join(r.dir, 'web.yaml'), full.slice(0, full.indexOf('selector') + 12));
    await sleep(300);
    // Truncated so that it still parses but is not a valid Service: also kept.
    writeFileSync(join(r.dir, 'web.yaml'), full.slice(0, full.indexOf('ports:')));
    await sleep(300);
    // Emptied (an editor truncating before writing).
    writeFileSync(join(r.dir, 'web.yaml'), '');
    await sleep(300);
    assert.equal(ports(r.src.current(), 'web'), 80, 'last good state kept');
    assert.ok(r.changes.every((c) => ports(c.state, 'web') === 80), 'no change ever dropped the service');
    assert.ok(r.warnings.some((w) => /keeping its last good objects/.test(w.message)));
    assert.ok(r.warnings.some((w) => w.source.endsWith('web.yaml') && /syntax error at line \d+/.test(w.message)));
    // Meanwhile another file's edit still goes through.
    let t = Date.now();
    writeFileSync(join(r.dir, 'other.yaml'), svc('other', 71, '10.96.0.9'));
    await changeWhere(r, t, (s) => ports(s, 'other') === 71 && ports(s, 'web') === 80);
    // Finished writing: the new content is used.
    t = Date.now();
    writeFileSync(join(r.dir, 'web.yaml'), full);
    await changeWhere(r, t, (s) => ports(s, 'web') === 81);
  } finally {
    await teardown(r);
  }
});

test('a file that is broken from the start contributes what parses, with warnings', async () => {
  const r = await setup({ 'mixed.yaml': `${svc('good', 80)}---\n${svc('bad', 80, '10.96.0.999')}` });
  try {
    assert.deepEqual(r.src.current().services.map((s) => s.meta.name), ['good']);
    assert.ok(r.warnings.some((w) => w.field === 'spec.clusterIP' && w.object === 'default/bad'));
  } finally {
    await teardown(r);
  }
});

test('touching a file without changing it emits nothing; stop() ends watching', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80) }, { rescanMs: 100 });
  try {
    writeFileSync(join(r.dir, 'web.yaml'), svc('web', 80));
    await sleep(400);
    assert.equal(r.changes.length, 1);
    await r.src.stop();
    writeFileSync(join(r.dir, 'web.yaml'), svc('web', 99));
    await sleep(400);
    assert.equal(r.changes.length, 1, 'no change after stop');
  } finally {
    await teardown(r);
  }
});

test('the folder disappearing: last state kept, connected false; coming back: connected true', async () => {
  const r = await setup({ 'web.yaml': svc('web', 80) }, { rescanMs: 100 });
  try {
    const moved = r.dir + '-moved';
    renameSync(r.dir, moved);
    const deadline = Date.now() + 3000;
    while (!r.connected.includes(false) && Date.now() < deadline) await sleep(20);
    assert.deepEqual(r.connected, [true, false]);
    assert.equal(ports(r.src.current(), 'web'), 80);
    renameSync(moved, r.dir);
    while (r.connected.length < 3 && Date.now() < deadline + 3000) await sleep(20);
    assert.deepEqual(r.connected, [true, false, true]);
  } finally {
    await teardown(r);
  }
});

test('a watch event during a full rescan is served between its batches, not after it', async () => {
  const files: Record<string, string> = { 'web.yaml': svc('web', 80) };
  // Enough files that the rescan's stats take many batches (tens of ms here).
  for (let i = 0; i < 5000; i++) files[`bulk/s${i}.json`] = JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}` }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } });
  const r = await setup(files, { rescanMs: 60_000 });
  type Inner = { fullScanDue: boolean; runScan(): Promise<void>; scanning?: Promise<void> };
  const inner = r.src as unknown as Inner;
  try {
    inner.fullScanDue = true;
    const rescan = inner.runScan();
    const t = Date.now();
    writeFileSync(join(r.dir, '.web.yaml.tmp'), svc('web', 90));
    renameSync(join(r.dir, '.web.yaml.tmp'), join(r.dir, 'web.yaml'));
    await changeWhere(r, t, (s) => ports(s, 'web') === 90);
    const servedDuringRescan = inner.scanning !== undefined;
    await rescan;
    assert.ok(servedDuringRescan, 'the change was published only after the whole rescan');
    assert.equal(ports(r.src.current(), 'web'), 90);
    assert.equal(r.src.current().services.length, 5001);
  } finally {
    await teardown(r);
  }
});
