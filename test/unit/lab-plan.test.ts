import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseYaml } from '../../src/util/yaml.js';
import { loadLabManifests, planLab, rewriteManifests } from '../../src/lab/plan.js';
import { formatSpread, tally } from '../../src/lab/demo-report.js';
import { answerLine, parseAnswer } from '../../src/lab/pod-server.js';

const svc = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
`;
const pod = (name: string, extra = '') => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: web}}
spec: {containers: [{name: c, image: x}]${extra ? ', ' + extra : ''}}
`;

function withDir(files: Record<string, string>, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'kplab-'));
  try {
    for (const [f, t] of Object.entries(files)) writeFileSync(join(dir, f), t);
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('pods without IPs are spread over the nodes and numbered from .2 of each pod CIDR', () => {
  withDir({ 'a.yaml': svc + pod('p1') + pod('p2') + pod('p3') }, (dir) => {
    const m = loadLabManifests(dir);
    const plan = planLab(m, { nodeCount: 2 });
    assert.deepEqual(
      plan.nodes.map((n) => [n.name, n.ip, n.podCIDR, n.gateway]),
      [
        ['node1', '172.30.0.11', '10.244.1.0/24', '10.244.1.1'],
        ['node2', '172.30.0.12', '10.244.2.0/24', '10.244.2.1'],
      ],
    );
    assert.deepEqual(
      plan.pods.map((p) => [p.name, p.node, p.ip, p.tcp, p.udp]),
      [
        ['p1', 'node1', '10.244.1.2', [8080], [5353]],
        ['p2', 'node2', '10.244.2.2', [8080], [5353]],
        ['p3', 'node1', '10.244.1.3', [8080], [5353]],
      ],
    );
    assert.equal(plan.clientIP, '172.30.0.100');
    assert.equal(plan.routerIP, '172.30.0.1');
  });
});

test('Node objects, nodeName and pod IPs are honoured; orphan pod IPs imply nodes', () => {
  const node = `---
apiVersion: v1
kind: Node
metadata: {name: k8s-n-1}
spec: {podCIDR: 10.244.7.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.56.11}]}
`;
  withDir({ 'a.yaml': svc + node + pod('a', 'nodeName: k8s-n-1') + pod('b') + '\nstatus: {podIP: 10.244.9.4}\n' }, (dir) => {
    const plan = planLab(loadLabManifests(dir));
    assert.deepEqual(
      plan.nodes.map((n) => [n.name, n.ip, n.podCIDR]),
      [
        ['k8s-n-1', '192.168.56.11', '10.244.7.0/24'],
        ['node1', '172.30.0.12', '10.244.9.0/24'],
      ],
    );
    assert.deepEqual(plan.pods.map((p) => [p.name, p.node, p.ip]), [
      ['a', 'k8s-n-1', '10.244.7.2'],
      ['b', 'node1', '10.244.9.4'],
    ]);
    assert.equal(plan.clientIP, '192.168.56.100');
  });
});

test('rewritten manifests carry podIP, nodeName and Ready, and leave other objects alone', () => {
  withDir({ 'a.yaml': svc + pod('p1'), 'b.json': JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'j', namespace: 'default', labels: { app: 'web' } }, spec: { containers: [] } }) }, (dir) => {
    const m = loadLabManifests(dir);
    const out = rewriteManifests(m, planLab(m));
    const docs = out.get('a.yaml')!.split(/^---$/m).map((d) => parseYaml(d) as any);
    assert.equal(docs[0].kind, 'Service');
    assert.equal(docs[0].spec.clusterIP, '10.96.0.50');
    assert.equal(docs[1].spec.nodeName, 'node1');
    assert.equal(docs[1].status.podIP, '10.244.1.2');
    assert.deepEqual(docs[1].status.conditions, [{ type: 'Ready', status: 'True' }]);
    const j = JSON.parse(out.get('b.json')!);
    assert.equal(j.status.podIP, '10.244.1.3');
  });
});

test('a missing folder is a clear error', () => {
  assert.throws(() => loadLabManifests('/nonexistent/kproxy'), /cannot read manifests \/nonexistent\/kproxy: ENOENT/);
});

test('answer lines round-trip and the spread counts them', () => {
  const line = answerLine('p1', '::ffff:10.244.1.2', 8080, '::ffff:10.244.1.1', 4000);
  assert.equal(line, 'pod=p1 ip=10.244.1.2 port=8080 client=10.244.1.1:4000\n');
  assert.deepEqual(parseAnswer(line), { pod: 'p1', ip: '10.244.1.2', port: 8080, client: '10.244.1.1:4000' });
  const t = tally([
    { from: 'a', to: 'b', ok: true, answer: line },
    { from: 'a', to: 'b', ok: true, answer: line },
    { from: 'a', to: 'b', ok: false, answer: 'timeout' },
  ]);
  assert.equal(t.failed, 1);
  assert.equal(t.byPod.get('p1'), 2);
  assert.match(formatSpread(t, ['p1', 'p2']), /p1 +█{30} +2 +100%\n +p2 +·{30} +0 +0%/);
});
