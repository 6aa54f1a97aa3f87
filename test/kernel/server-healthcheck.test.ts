// The servers of `kproxy run` seen from the network, in a two-node lab:
// healthCheckNodePort of an externalTrafficPolicy=Local service (200 on the node
// with the endpoint, 503 on the other, following endpoint changes), /healthz on
// 10256 from outside, /metrics and /proxyMode on 127.0.0.1:10249 inside the node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec } from '../../src/util/exec.js';
import { runPrefix, waitFor } from '../../src/lab/netns.js';
import { labDown, labUp, type LabState } from '../../src/lab/cluster.js';
import { serviceHealthBody } from '../../src/server/service-health.js';

const manifests = `apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.60.60
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  selector: {app: lb}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30090}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: lb-a, namespace: default, labels: {app: lb}}
spec: {nodeName: node1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
spec: {podCIDR: 10.244.2.0/24}
`;

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const getter = `const [u]=process.argv.slice(1);fetch(u,{signal:AbortSignal.timeout(2000)}).then(async r=>{console.log(JSON.stringify({status:r.status,headers:Object.fromEntries(r.headers),body:await r.text()}))}).catch(e=>{console.log(JSON.stringify({status:0,headers:{},body:String(e)}))})`;

async function get(ns: string, url: string): Promise<Reply> {
  const r = await exec('ip', ['netns', 'exec', ns, process.execPath, '-e', getter, url], { timeoutMs: 15_000 });
  return JSON.parse(r.stdout) as Reply;
}

test('health check node ports, /healthz and /metrics of kproxy run, over real sockets', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kplabstate-'));
  const src = mkdtempSync(join(tmpdir(), 'kplab-'));
  writeFileSync(join(src, 'lb.yaml'), manifests);
  const name = runPrefix('sh');
  let state: LabState | undefined;
  try {
    state = await labUp({ name, manifests: src, stateDir, dataplane: 'run' });
    const n1 = state.nodes.find((n) => n.name === 'node1');
    const n2 = state.nodes.find((n) => n.name === 'node2');
    assert.ok(n1 && n2);
    const client = state.client.netns;

    let r: Reply = { status: 0, headers: {}, body: '' };
    await waitFor('node1 health check port', async () => (r = await get(client, `http://${n1.ip}:32100/`)).status === 200, 90_000, 250);
    assert.equal(r.headers['x-load-balancing-endpoint-weight'], '1');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.body, serviceHealthBody('default', 'lb', 1, true));

    r = await get(client, `http://${n2.ip}:32100/`);
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-load-balancing-endpoint-weight'], '0');
    assert.equal(r.body, serviceHealthBody('default', 'lb', 0, true));

    r = await get(client, `http://${n1.ip}:10256/healthz`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    const h = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(h), ['lastUpdated', 'currentTime', 'nodeEligible', 'healthy', 'status']);
    assert.equal(h.healthy, true);
    assert.equal(h.nodeEligible, true);
    assert.equal((h.status as Record<string, { healthy: boolean }>).IPv4!.healthy, true);
    r = await get(client, `http://${n1.ip}:10256/livez`);
    assert.equal(r.status, 200);
    assert.ok(!('nodeEligible' in (JSON.parse(r.body) as object)));

    // The metrics server listens on loopback only (upstream default): unreachable from outside, served inside.
    r = await get(client, `http://${n1.ip}:10249/metrics`);
    assert.equal(r.status, 0);
    r = await get(n1.netns, 'http://127.0.0.1:10249/metrics');
    assert.equal(r.status, 200);
    assert.match(r.body, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds\{ip_family="IPv4"\} \d/m);
    assert.match(r.body, /^kubeproxy_sync_proxy_rules_iptables_total\{table="nat",ip_family="IPv4"\} [1-9]/m);
    assert.match(r.body, /^kubeproxy_proxy_healthz_total\{code="200"\} [1-9]/m);
    r = await get(n1.netns, 'http://127.0.0.1:10249/proxyMode');
    assert.equal(r.body, 'iptables');

    // node2 is marked for deletion by the cluster autoscaler: its /healthz turns 503 (not eligible), /livez stays 200.
    const nodeFile = join(state.generated, 'lb.yaml');
    writeFileSync(
      nodeFile,
      readFileSync(nodeFile, 'utf8').replace(/(name: node2\n(?:.*\n)*?spec:\n)/, '$1  taints:\n    - key: ToBeDeletedByClusterAutoscaler\n      value: "1700000000"\n      effect: NoSchedule\n'),
    );
    await waitFor('node2 /healthz to turn 503', async () => (r = await get(client, `http://${n2.ip}:10256/healthz`)).status === 503, 30_000, 200);
    assert.match(r.body, /"nodeEligible":false,"healthy":true/);
    r = await get(client, `http://${n2.ip}:10256/livez`);
    assert.equal(r.status, 200);

    // The endpoint on node1 stops being ready: its health check turns 503 within seconds.
    const file = join(state.generated, 'lb.yaml');
    // The lab's YAML writer picks the quoting; match either, and fail here if the rewrite found nothing.
    const before = readFileSync(file, 'utf8');
    const after = before.replace(/status: (["'])True\1/, "status: 'False'");
    assert.notEqual(after, before, 'the pod\'s Ready condition was not found in the generated manifests');
    writeFileSync(file, after);
    await waitFor('node1 health check to fail', async () => (r = await get(client, `http://${n1.ip}:32100/`)).status === 503, 30_000, 200);
    assert.equal(r.body, serviceHealthBody('default', 'lb', 0, true));
  } finally {
    if (state) await labDown(name, stateDir);
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(src, { recursive: true, force: true });
  }
});
