// The node, pods, client and manifests the `kproxy run` end-to-end tests
// share (iptables mode in run-e2e.test.ts, nftables mode in
// run-nftables.test.ts): a node with a bridge (cbr0 10.244.1.1/24,
// br_netfilter on, hairpin on the pod ports), three pods answering TCP and
// UDP with their name, and an external client on the node's network. Not a
// test file itself.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Netns, Topology } from '../../src/lab/netns.js';
import { startPodServer } from './lab-clients.js';

/**
 * KPROXY_IPTABLES_BACKEND=legacy|nft pins the iptables backend: kproxy gets
 * `--iptables-backend <b>` and the tests read and edit rules with
 * iptables-<b>(-save). Unset (auto), both follow the host's `iptables`. The UML
 * run (test/uml/iptables-e2e.test.ts) sets legacy: its 6.1 kernel has nf_tables
 * but not the nft NAT chain type.
 */
export const IPTABLES_BACKEND = (() => {
  const b = process.env.KPROXY_IPTABLES_BACKEND ?? 'auto';
  if (!['auto', 'nft', 'legacy'].includes(b)) throw new Error(`KPROXY_IPTABLES_BACKEND takes auto, nft or legacy, not ${JSON.stringify(b)}`);
  return b as 'auto' | 'nft' | 'legacy';
})();
/** kproxy's flags for that backend ([] for auto). */
export const BACKEND_FLAGS: string[] = IPTABLES_BACKEND === 'auto' ? [] : ['--iptables-backend', IPTABLES_BACKEND];
/** The iptables binaries for that backend. */
export const IPT = IPTABLES_BACKEND === 'auto' ? 'iptables' : `iptables-${IPTABLES_BACKEND}`;
export const IPT_SAVE = `${IPT}-save`;

/**
 * KPROXY_E2E_TIME_SCALE=N (default 1) stretches the suite's bounds N times (its
 * waits' timeouts and the "moved within 5 s" check), not its sync periods or
 * polls: headroom for a slow kernel (UML, where a process start costs ~20 times
 * the host's) on a loaded host, at no cost to a passing run.
 */
export const TIME_SCALE = (() => {
  const n = Number(process.env.KPROXY_E2E_TIME_SCALE ?? '1');
  if (!Number.isFinite(n) || n < 1) throw new Error(`KPROXY_E2E_TIME_SCALE takes a number >= 1, not ${JSON.stringify(process.env.KPROXY_E2E_TIME_SCALE)}`);
  return n;
})();

export const NODE_IP = '192.168.77.10';
export const CLIENT_IP = '192.168.77.2';
export const PODS = [
  { name: 'pod-1', ip: '10.244.1.11' },
  { name: 'pod-2', ip: '10.244.1.12' },
  { name: 'pod-3', ip: '10.244.1.13' },
];

// --- manifests ---------------------------------------------------------------

type SvcSpec = Record<string, unknown>;

export function service(name: string, spec: SvcSpec, status?: Record<string, unknown>) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec, ...(status ? { status } : {}) };
}

export function slice(svc: string, ips: { ip: string; node?: string }[], protocol = 'TCP', port = 8080) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc}-x`, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: ips.map((e) => ({ addresses: [e.ip], conditions: { ready: true }, nodeName: e.node ?? 'node-a' })),
    ports: [{ name: '', port, protocol }],
  };
}

const tcp80 = [{ port: 80, targetPort: 8080, protocol: 'TCP' }];

export function manifests(web: string[], udp: string[], extra: object[] = []) {
  const ip = (n: string) => PODS.find((p) => p.name === n)!.ip;
  return [
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-a' },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
      status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] },
    },
    service('web', { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ ...tcp80[0], nodePort: 30080 }] }),
    slice('web', web.map((n) => ({ ip: ip(n) }))),
    service('local', { type: 'NodePort', clusterIP: '10.96.0.11', externalTrafficPolicy: 'Local', ports: [{ ...tcp80[0], nodePort: 30081 }] }),
    slice('local', [{ ip: ip('pod-1') }, { ip: '10.244.2.9', node: 'node-b' }]),
    service('ext', { clusterIP: '10.96.0.12', externalIPs: ['192.168.77.100'], ports: tcp80 }),
    slice('ext', [{ ip: ip('pod-2') }]),
    service(
      'lb-allow',
      { type: 'LoadBalancer', clusterIP: '10.96.0.13', loadBalancerSourceRanges: [`${CLIENT_IP}/32`], ports: [{ ...tcp80[0], nodePort: 30083 }] },
      { loadBalancer: { ingress: [{ ip: '192.168.77.200' }] } },
    ),
    slice('lb-allow', [{ ip: ip('pod-3') }]),
    service(
      'lb-deny',
      { type: 'LoadBalancer', clusterIP: '10.96.0.18', loadBalancerSourceRanges: ['10.99.0.0/16'], ports: [{ ...tcp80[0], nodePort: 30084 }] },
      { loadBalancer: { ingress: [{ ip: '192.168.77.201' }] } },
    ),
    slice('lb-deny', [{ ip: ip('pod-3') }]),
    service('aff', { clusterIP: '10.96.0.14', sessionAffinity: 'ClientIP', ports: tcp80 }),
    slice('aff', PODS.map((p) => ({ ip: p.ip }))),
    service('empty', { clusterIP: '10.96.0.15', ports: tcp80 }),
    service('hair', { clusterIP: '10.96.0.16', ports: tcp80 }),
    slice('hair', [{ ip: ip('pod-1') }]),
    service('dns', { clusterIP: '10.96.0.17', ports: [{ port: 53, targetPort: 5353, protocol: 'UDP' }] }),
    slice('dns', udp.map((n) => ({ ip: ip(n) })), 'UDP', 5353),
    ...extra,
  ];
}

export function writeManifests(dir: string, web: string[], udp: string[], extra: object[] = []): void {
  const tmp = join(dir, '.all.json.tmp');
  writeFileSync(tmp, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests(web, udp, extra) }, null, 1));
  renameSync(tmp, join(dir, 'all.json'));
}

export interface Node {
  node: Netns;
  client: Netns;
  pods: Record<string, Netns>;
}

/** Builds the node, its pods (serving) and the client in `topo`'s namespaces. */
export async function buildNode(topo: Topology): Promise<Node> {
  // Topology.
  const node = await topo.netns('node');
  const client = await topo.netns('client');
  await topo.veth(node, 'eth0', client, 'eth0', `${NODE_IP}/24`, `${CLIENT_IP}/24`);
  await client.ip('route', 'add', '192.168.77.100/32', 'via', NODE_IP);
  await client.ip('route', 'add', '192.168.77.200/31', 'via', NODE_IP);
  await client.ip('route', 'add', 'default', 'via', NODE_IP);
  // A node has a default route (here: the client's side plays the router).
  await node.ip('route', 'add', 'default', 'via', CLIENT_IP);
  await topo.bridge(node, 'cbr0', '10.244.1.1/24');
  await node.sysctl('net.ipv4.ip_forward', '1');
  await node.sysctl('net.bridge.bridge-nf-call-iptables', '1');
  await node.sysctl('net.ipv4.conf.all.route_localnet', '1');
  const pods: Record<string, Netns> = {};
  for (const [i, p] of PODS.entries()) {
    const ns = await topo.netns(p.name);
    pods[p.name] = ns;
    await topo.veth(node, `vp${i}`, ns, 'eth0', undefined, `${p.ip}/24`);
    await node.ip('link', 'set', `vp${i}`, 'master', 'cbr0');
    await node.ip('link', 'set', `vp${i}`, 'type', 'bridge_slave', 'hairpin', 'on');
    await ns.ip('route', 'add', 'default', 'via', '10.244.1.1');
    await startPodServer(topo, ns, ['--name', p.name, '--ip', p.ip, '--tcp', '8080', '--udp', '5353']);
  }
  return { node, client, pods };
}
