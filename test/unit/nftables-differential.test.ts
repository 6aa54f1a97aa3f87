// nftables mode against iptables mode: random clusters rendered by both, and
// for every frontend of every service, packets from a local pod, the node,
// an allowed and a blocked external client — both must send each to the
// same endpoints (each with probability 1/N: iptables' statistic cascade and
// nft's `numgen random mod N` over the same list) or the same verdict, and
// agree on masquerading. Plus upstream's own packet-flow scenarios.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterState, Endpoint, Service } from '../../src/k8s/types.js';
import type { RenderOptions } from '../../src/dataplane/iptables/render.js';
import { renderNftablesText } from '../../src/dataplane/nftables/text.js';
import { ep, fakeProxierOptions, makeService, makeSlice, renderCanonical, state, testNodeIP, testNodeName } from './iptables-helpers.js';
import { tracePacket, tracerLocalIPs } from './iptables-flow.js';
import { traceNft } from './nftables-flow.js';
import { etpLocalState, loadBalancerState, noEndpointsState, testExternalClient, testExternalClientBlocked } from './upstream-scenarios.js';

/** A small deterministic PRNG (mulberry32): failures name their seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Local pods are 10.0.1.x (this node), remote ones 10.0.2.x. */
function randomCluster(seed: number): ClusterState {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const services: Service[] = [];
  const slices = [];
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const type = pick(['ClusterIP', 'NodePort', 'LoadBalancer'] as const);
    const proto = pick(['TCP', 'TCP', 'UDP', 'SCTP'] as const);
    const svc = makeService('ns', `svc${i}`, (s) => {
      s.type = type;
      s.clusterIPs = [`172.30.0.${10 + i}`];
      s.ports = [{ name: 'p', protocol: proto, port: 80 + i, targetPort: 8080, nodePort: type === 'ClusterIP' ? 0 : 30000 + i }];
      if (r() < 0.3) s.externalIPs = [`192.168.99.${100 + i}`];
      if (type !== 'ClusterIP' && r() < 0.5) s.externalTrafficPolicy = 'Local';
      if (r() < 0.2) s.internalTrafficPolicy = 'Local';
      if (type === 'LoadBalancer') {
        s.loadBalancerIngress = [{ ip: `1.2.3.${10 + i}` }];
        if (r() < 0.5) s.loadBalancerSourceRanges = [pick(['203.0.113.0/25', '192.168.0.0/16', '203.0.113.0/25,192.168.0.0/24'])].flatMap((x) => x.split(','));
        if (s.externalTrafficPolicy === 'Local') s.healthCheckNodePort = 31000 + i;
      }
      if (r() < 0.25) {
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = pick([10800, 60]);
      }
    });
    services.push(svc);
    const eps: Endpoint[] = [];
    const count = Math.floor(r() * 5);
    for (let j = 0; j < count; j++) {
      const local = r() < 0.5;
      const cond = pick([{}, {}, {}, { ready: false, serving: true, terminating: true }, { ready: false, serving: false }]);
      eps.push(ep(`10.0.${local ? 1 : 2}.${i * 10 + j + 1}`, { nodeName: local ? testNodeName : 'other-node', ...cond }));
    }
    if (count > 0 || r() < 0.5) slices.push(makeSlice('ns', `svc${i}`, 1, eps, [{ name: 'p', port: 8080, protocol: proto }]));
  }
  return state(services, slices);
}

function opts(): RenderOptions {
  // nftables mode has no localhost NodePorts (as upstream's): compare with them off.
  return fakeProxierOptions('IPv4', { localhostNodePorts: false, nfacct: {} });
}

/** The set of places a packet can end: iptables' test tracer runs every filter chain and may list DROP twice. */
function sortOut(o: string): string {
  return [...new Set(o.split(', ').filter(Boolean))].sort().join(', ');
}

/** Every frontend of the cluster, each from four kinds of client. */
function packets(st: ClusterState): { name: string; sourceIP: string; destIP: string; destPort: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[] {
  const out = [];
  const localPod = st.endpointSlices.flatMap((s) => s.endpoints).find((e) => e.addresses[0]!.startsWith('10.0.1.'))?.addresses[0] ?? '10.0.1.250';
  const sources = [localPod, '10.0.1.251', testNodeIP, testExternalClient, testExternalClientBlocked];
  for (const s of st.services) {
    const p = s.ports[0]!;
    const fronts: [string, number][] = [[s.clusterIPs[0]!, p.port]];
    for (const ip of s.externalIPs) fronts.push([ip, p.port]);
    for (const i of s.loadBalancerIngress) fronts.push([i.ip!, p.port]);
    if (p.nodePort) fronts.push([testNodeIP, p.nodePort], ['192.168.1.2', p.nodePort]);
    for (const [dst, port] of fronts) for (const src of sources) {
      out.push({ name: `${s.meta.name} ${src} → ${dst}:${port}/${p.protocol}`, sourceIP: src, destIP: dst, destPort: port, protocol: p.protocol });
    }
    if (s.healthCheckNodePort) out.push({ name: `${s.meta.name} health check`, sourceIP: testExternalClient, destIP: testNodeIP, destPort: s.healthCheckNodePort, protocol: 'TCP' as const });
  }
  return out;
}

function compare(st: ClusterState, label: string): number {
  const ipt = renderCanonical(st, opts());
  const nft = renderNftablesText(st, opts());
  let n = 0;
  for (const pkt of packets(st)) {
    const a = tracePacket(ipt, tracerLocalIPs, pkt);
    const b = traceNft(nft, tracerLocalIPs, pkt);
    assert.equal(sortOut(b.output), sortOut(a.output), `${label}: ${pkt.name}: destinations`);
    assert.equal(b.masq, a.masq, `${label}: ${pkt.name}: masquerade (${a.output})`);
    n++;
  }
  return n;
}

test('random clusters: nftables mode sends every packet where iptables mode does', () => {
  let packetsCompared = 0;
  for (let seed = 1; seed <= 300; seed++) packetsCompared += compare(randomCluster(seed), `seed ${seed}`);
  assert.ok(packetsCompared > 5000, `compared ${packetsCompared} packets`);
});

test("upstream's scenarios (no endpoints, load balancer source ranges, eTP Local) agree", () => {
  for (const [name, st] of [['noEndpoints', noEndpointsState()], ['loadBalancer', loadBalancerState()], ['etpLocal', etpLocalState()]] as const) {
    assert.ok(compare(st, name) > 0);
  }
});

test('the tracer can fail: a wrong element changes the answer', () => {
  const st = loadBalancerState();
  const nft = renderNftablesText(st, opts()).replace(/add element ip kproxy fw-allow \{[^}]*\}\n/, '');
  const ipt = renderCanonical(st, opts());
  const pkt = { sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80 };
  assert.notEqual(traceNft(nft, tracerLocalIPs, pkt).output, tracePacket(ipt, tracerLocalIPs, pkt).output);
});
