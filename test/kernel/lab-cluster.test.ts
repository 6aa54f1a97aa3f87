// `kproxy lab up/status/exec/curl/down` through the CLI, on two nodes with kproxy run in each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec } from '../../src/util/exec.js';
import { runPrefix } from '../../src/lab/netns.js';
import { kproxyMain, statePath } from '../../src/lab/cluster.js';

const manifests = `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.50.50
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: udp, port: 53, targetPort: 5353, nodePort: 30053, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-a, namespace: default, labels: {app: echo}}
spec: {nodeName: node1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, namespace: default, labels: {app: echo}}
spec: {nodeName: node2, containers: [{name: c, image: x}]}
`;

function cli(...args: string[]) {
  return exec(process.execPath, [kproxyMain, ...args], { allowFail: true, timeoutMs: 90_000 });
}

test('lab: two nodes, pods on each, traffic across nodes, exec, status, down removes everything', async () => {
  const name = runPrefix('lt');
  const dir = mkdtempSync(join(tmpdir(), 'kplab-'));
  writeFileSync(join(dir, 'echo.yaml'), manifests);
  try {
    const up = await cli('lab', 'up', '--manifests', dir, '--name', name);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, new RegExp(`lab "${name}" is up`));
    assert.match(up.stdout, /node node1 +172\.30\.0\.11 +netns \S+-node1 +cni0 10\.244\.1\.1\/24 +kproxy run/);
    assert.match(up.stdout, /pod echo-b +10\.244\.2\.2 +5353\/udp|pod echo-b +10\.244\.2\.2 +8080\/tcp 5353\/udp/);
    assert.ok(existsSync(statePath(name)));

    // Pod to pod across nodes, without any Service.
    let r = await cli('lab', 'curl', 'echo-a', 'http://10.244.2.2:8080/', '--name', name);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^pod=echo-b ip=10\.244\.2\.2 port=8080 client=10\.244\.1\.2:\d+/);

    // Through the Service once kproxy has programmed node1: TCP ClusterIP, UDP NodePort from outside.
    let ok = false;
    for (let i = 0; i < 60 && !ok; i++) {
      r = await cli('lab', 'curl', 'node1', 'http://10.96.50.50:80/', '--name', name, '--timeout', '500');
      ok = r.code === 0;
      if (!ok) await new Promise((res) => setTimeout(res, 250));
    }
    assert.ok(ok, `ClusterIP never answered: ${r.stdout}${r.stderr}`);
    r = await cli('lab', 'curl', 'client', 'udp://172.30.0.11:30053', '--name', name, '-n', '4');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout.trim().split('\n').filter((l) => /^pod=echo-[ab] /.test(l)).length, 4);

    r = await cli('lab', 'exec', 'node2', '--name', name, '--', 'iptables-save', '-t', 'nat');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /-A KUBE-NODEPORTS -p udp -m comment --comment "default\/echo:udp" -m udp --dport 30053/);

    r = await cli('lab', 'status', '--name', name);
    assert.match(r.stdout, /kproxy on node1: pid \d+ running/);
    assert.match(r.stdout, /pod echo-a: pid \d+ running/);

    r = await cli('lab', 'curl', 'nosuch', 'http://1.2.3.4/', '--name', name);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /has no node or pod "nosuch"/);
  } finally {
    const down = await cli('lab', 'down', '--name', name);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(down.code, 0, down.stderr);
  }
  const left = (await exec('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(name + '-'));
  assert.deepEqual(left, []);
  assert.ok(!existsSync(statePath(name)));
  const again = await cli('lab', 'down', '--name', name);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /no lab named/);
});

test('lab up fails fast when kproxy exits, with its log, and leaves nothing behind', async () => {
  const { labUp } = await import('../../src/lab/cluster.js');
  const name = runPrefix('lf');
  const dir = mkdtempSync(join(tmpdir(), 'kplab-'));
  const stateDir = mkdtempSync(join(tmpdir(), 'kplabstate-'));
  writeFileSync(join(dir, 'echo.yaml'), manifests);
  try {
    await assert.rejects(
      labUp({ name, manifests: dir, stateDir, dataplane: 'run', runArgs: ['--no-such-flag'] }),
      /kproxy on node1 exited[\s\S]*no-such-flag/,
    );
    const left = (await exec('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(name + '-'));
    assert.deepEqual(left, []);
    assert.ok(!existsSync(statePath(name, stateDir)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  }
});
