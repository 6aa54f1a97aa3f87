// `kproxy demo` (npm start) end to end: every request gets a pod's answer and nothing is left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exec } from '../../src/util/exec.js';
import { kproxyMain } from '../../src/lab/cluster.js';

async function netnsList(): Promise<Set<string>> {
  const r = await exec('ip', ['netns', 'list']);
  return new Set(r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean));
}

test('kproxy demo: pod→ClusterIP, node→ClusterIP and client→NodePort all answered by hello-world pods, then cleaned up', async () => {
  const before = await netnsList();
  const r = await exec(process.execPath, [kproxyMain, 'demo', '--requests', '6'], { allowFail: true, timeoutMs: 240_000 });
  const out = r.stdout;
  assert.equal(r.code, 0, `demo failed:\n${out}\n${r.stderr}`);
  const rows = out.split('\n').filter((l) => /^\s+\d+\s+(pod|node|client) /.test(l));
  assert.equal(rows.length, 18, out);
  for (const row of rows) assert.match(row, /hello-world-deployment-cbdf4db7b-(j6fpq|5xk2m|q8w7r)/, `a request got no pod answer: ${row}`);
  assert.ok(!out.includes('FAILED'));
  assert.equal(rows.filter((l) => l.includes('NodePort 192.168.56.11:30001')).length, 6);
  // NodePort traffic from outside is masqueraded: the pod never sees the client's address.
  for (const row of rows.filter((l) => l.includes('NodePort'))) assert.ok(!row.trimEnd().endsWith('192.168.56.100'), row);
  assert.match(out, /spread over 18 answered requests:/);
  assert.match(out, /cleaned up/);
  const after = await netnsList();
  const leaked = [...after].filter((n) => !before.has(n) && n.startsWith('demo'));
  assert.deepEqual(leaked, []);
});

test('kproxy demo without root says why and prints the rendered rules of the scenario instead', async () => {
  const r = await exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, kproxyMain, 'demo'], {
    allowFail: true,
    timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^kproxy demo runs the hello-world Service in network namespaces, but creating network namespaces needs root/);
  assert.match(r.stdout, /on node k8s-n-1 instead/);
  assert.match(r.stdout, /^-A KUBE-NODEPORTS .*--dport 30001 -j KUBE-EXT-I6CTHWSTJGL5RHWT$/m);
  assert.match(r.stdout, /^-A KUBE-SVC-I6CTHWSTJGL5RHWT .*-j KUBE-SEP-QUHE43Q3DGU3LTCX$/m);
});
