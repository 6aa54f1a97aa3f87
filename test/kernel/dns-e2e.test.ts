// The pod-eye walk, both halves from one agent: `kproxy run --manifests DIR
// --dns 10.244.1.1:53` on a node namespace. The kube-dns Service
// (10.96.0.10) has the node as its endpoint, so a pod's query goes through
// kproxy's own iptables DNAT to kproxy's own DNS; the pod (glibc, via
// /etc/netns/<pod>/resolv.conf written as kubelet would) resolves `web`, connects to the
// answer (a ClusterIP) and reaches a backend pod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, runPrefix, waitFor, type Netns } from '../../src/lab/netns.js';
import { kproxyMain, probeScript } from '../../src/lab/cluster.js';
import { startPodServer } from './lab-clients.js';
import { formatResolvConf, podResolvConf } from '../../src/dns/resolver-sim.js';

const BACKENDS = [
  { name: 'pod-1', ip: '10.244.1.11' },
  { name: 'pod-2', ip: '10.244.1.12' },
];
const CLIENT = { name: 'client', ip: '10.244.1.20' };

const MANIFESTS = JSON.stringify({
  apiVersion: 'v1',
  kind: 'List',
  items: [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, spec: { podCIDR: '10.244.1.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.244.1.1' }] } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system' },
      spec: { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'kube-dns-x', namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.1.1'], conditions: { ready: true }, nodeName: 'node-a' }],
      ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }],
    },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-x', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: BACKENDS.map((b) => ({ addresses: [b.ip], conditions: { ready: true }, nodeName: 'node-a' })),
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    },
  ],
});

test('pod-eye walk: a pod resolves `web` through kproxy dns behind the kube-dns ClusterIP and reaches a backend', { timeout: 180_000 }, async () => {
  const topo = new Topology(runPrefix('kd'));
  const dir = mkdtempSync(join(tmpdir(), 'kp-dns-e2e-'));
  writeFileSync(join(dir, 'cluster.json'), MANIFESTS);
  const etcDirs: string[] = [];
  let logs = '';
  try {
    const node = await topo.netns('node');
    await topo.bridge(node, 'cbr0', '10.244.1.1/24');
    await node.sysctl('net.ipv4.ip_forward', '1');
    await node.sysctl('net.bridge.bridge-nf-call-iptables', '1');
    const pods: Record<string, Netns> = {};
    for (const [i, p] of [...BACKENDS, CLIENT].entries()) {
      const ns = await topo.netns(p.name);
      pods[p.name] = ns;
      await topo.veth(node, `vp${i}`, ns, 'eth0', undefined, `${p.ip}/24`);
      await node.ip('link', 'set', `vp${i}`, 'master', 'cbr0');
      await node.ip('link', 'set', `vp${i}`, 'type', 'bridge_slave', 'hairpin', 'on');
      await ns.ip('route', 'add', 'default', 'via', '10.244.1.1');
      if (p === CLIENT) continue;
      await startPodServer(topo, ns, ['--name', p.name, '--ip', p.ip, '--tcp', '8080']);
    }
    const agent = topo.track(
      node.spawn(process.execPath, [
        kproxyMain, 'run', '--manifests', dir, '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16',
        '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
        '--dns', '10.244.1.1:53',
      ]),
    );
    agent.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    agent.stdout!.resume();

    // The pod's resolv.conf, as kubelet writes it for ClusterFirst (kubelet's --cluster-dns 10.96.0.10).
    const rc = podResolvConf({
      namespace: 'default',
      dnsPolicy: 'ClusterFirst',
      hostNetwork: false,
      clusterDNS: ['10.96.0.10'],
      clusterDomain: 'cluster.local',
      host: { nameservers: ['192.0.2.53'], searches: [], options: [] },
    });
    const etc = join('/etc/netns', pods[CLIENT.name]!.name);
    mkdirSync(etc, { recursive: true });
    etcDirs.push(etc);
    writeFileSync(join(etc, 'resolv.conf'), formatResolvConf(rc.conf));

    const client = pods[CLIENT.name]!;
    // Name → ClusterIP: glibc in the pod, through the kube-dns ClusterIP DNAT.
    await waitFor(
      'web resolvable from the pod',
      async () => /^10\.96\.0\.20\s/m.test((await client.exec('getent', ['ahostsv4', 'web'], { allowFail: true, timeoutMs: 10_000 })).stdout),
      60_000,
      250,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
    });
    const dig = await client.exec('dig', ['+short', '+search', 'web'], { allowFail: true });
    assert.equal(dig.stdout.trim(), '10.96.0.20', 'dig in the pod uses the pod resolv.conf search list');
    const digTcp = await client.exec('dig', ['+short', '+tcp', 'web.default.svc.cluster.local'], { allowFail: true });
    assert.equal(digTcp.stdout.trim(), '10.96.0.20', 'DNS over TCP through the ClusterIP');

    // ClusterIP → pod: connect by name, as an application would.
    const r = await client.exec(process.execPath, [probeScript, 'http://web/', '--count', '4', '--timeout', '2000'], { allowFail: true, timeoutMs: 30_000 });
    const answers = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { ok: boolean; answer?: string });
    assert.equal(answers.length, 4, r.stdout + r.stderr);
    for (const a of answers) {
      assert.ok(a.ok, JSON.stringify(a));
      assert.match(a.answer ?? '', /pod=pod-[12] /);
    }
  } finally {
    await topo.destroy();
    for (const d of etcDirs) rmSync(d, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
