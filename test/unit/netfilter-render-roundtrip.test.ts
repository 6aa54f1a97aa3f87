// Round trips: render upstream's proxier test scenarios with our renderer,
// load the restore payload (plus the base-chain jumps kube-proxy prepends)
// into the tracer, and trace upstream's packet-flow cases through the full
// hook order. The answers are upstream's (proxier_test.go runPacketFlowTests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIptables } from '../../src/dataplane/iptables/render.js';
import { parseSave } from '../../src/netfilter/parse-save.js';
import { nodeDump } from './netfilter-helpers.js';
import { trace, type TraceRequest } from '../../src/netfilter/simulate.js';
import type { Ruleset } from '../../src/netfilter/ruleset.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { ep, fakeProxierOptions, makeService, makeSlice, state, tcpPort, testNodeIP, testNodeIPs, testNodeName } from './iptables-helpers.js';
import { etpLocalState, loadBalancerState, noEndpointsState, p80, testExternalClient, testExternalClientBlocked } from './upstream-scenarios.js';


function load(st: ClusterState): Ruleset {
  const [rs] = renderIptables(st, fakeProxierOptions());
  return parseSave(nodeDump(rs!), { source: 'rendered' });
}

interface Flow {
  name: string;
  src: string;
  dst: string;
  port: number;
  /** Upstream's output: "ip:port, ip:port" | "DROP" | "REJECT" | "" (no DNAT, delivered as is). */
  output: string;
  masq?: boolean;
}

/**
 * Pods arrive on a veth, outsiders on eth0, node addresses are local (the tracer uses the
 * fake network's node IPs and 127.0.0.1 as local, as upstream's does).
 */
function runFlows(rs: Ruleset, flows: Flow[]): void {
  for (const f of flows) {
    const fromNode = testNodeIPs.includes(f.src) || f.src === '127.0.0.1';
    const req: TraceRequest = {
      dst: f.dst,
      dport: f.port,
      src: f.src,
      from: fromNode ? 'local' : f.src.startsWith('10.') ? 'veth0' : 'eth0',
      localIps: testNodeIPs.filter((ip) => !ip.includes(':')),
      routes: ['10.0.0.0/8=cni0', '0.0.0.0/0=eth0'],
    };
    const r = trace(rs, req);
    const where = `${f.name}: ${r.outcomes.map((o) => `${o.verdict} ${o.destination}${o.masquerade ? ' masq' : ''} p=${o.probability}`).join('; ')}`;
    assert.ok(r.outcomes.every((o) => !o.uncertain), `${where}: nothing should be uncertain`);
    if (f.output === 'DROP' || f.output === 'REJECT') {
      assert.deepEqual(r.outcomes.map((o) => o.verdict), [f.output], where);
      continue;
    }
    assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT'), where);
    const dests = r.outcomes.map((o) => o.destination);
    if (f.output === '') assert.deepEqual(dests, [`${f.dst}:${f.port}`], where);
    else assert.deepEqual(dests, f.output.split(', '), where);
    // Every endpoint equally likely.
    for (const o of r.outcomes) assert.ok(Math.abs(o.probability - 1 / r.outcomes.length) < 1e-9, where);
    assert.deepEqual(r.outcomes.map((o) => o.masquerade), r.outcomes.map(() => !!f.masq), where);
  }
}

test('round trip: ClusterIP, NodePort, hairpin (TestClusterIPGeneral / TestNodePorts)', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('p80', 80, 3001)];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1'), ep('10.180.2.1', { nodeName: testNodeName })], p80)],
  );
  const both = '10.180.0.1:80, 10.180.2.1:80';
  runFlows(load(st), [
    { name: 'pod to cluster IP', src: '10.0.0.2', dst: '172.30.0.41', port: 80, output: both },
    { name: 'external to nodePort', src: testExternalClient, dst: testNodeIP, port: 3001, output: both, masq: true },
    { name: 'node to nodePort', src: testNodeIP, dst: testNodeIP, port: 3001, output: both, masq: true },
    { name: 'localhost to nodePort gets masqueraded', src: '127.0.0.1', dst: '127.0.0.1', port: 3001, output: both, masq: true },
    { name: 'external to nodePort on secondary IP', src: testExternalClient, dst: '192.168.1.2', port: 3001, output: both, masq: true },
    { name: 'node to cluster IP (not from the pod CIDR)', src: testNodeIP, dst: '172.30.0.41', port: 80, output: both, masq: true },
  ]);
  // Hairpin: an endpoint reaching itself through the service is masqueraded; the other endpoint is not.
  const r = trace(load(st), { dst: '172.30.0.41', dport: 80, src: '10.180.0.1', from: 'veth0', localIps: ['192.168.0.2'], routes: ['10.0.0.0/8=cni0'] });
  assert.deepEqual(r.outcomes.map((o) => `${o.destination} ${o.masquerade}`), ['10.180.0.1:80 true', '10.180.2.1:80 false']);
});

test('round trip: LoadBalancer source ranges allowed and dropped (TestLoadBalancer)', () => {
  const st = loadBalancerState();
  const out = '10.180.0.1:80';
  runFlows(load(st), [
    { name: 'pod to cluster IP', src: '10.0.0.2', dst: '172.30.0.41', port: 80, output: out },
    { name: 'external to nodePort', src: testExternalClient, dst: testNodeIP, port: 3001, output: out, masq: true },
    { name: 'nodePort bypasses LoadBalancerSourceRanges', src: testExternalClientBlocked, dst: testNodeIP, port: 3001, output: out, masq: true },
    { name: 'accepted external to LB1', src: testExternalClient, dst: '1.2.3.4', port: 80, output: out, masq: true },
    { name: 'accepted external to LB2', src: testExternalClient, dst: '5.6.7.8', port: 80, output: out, masq: true },
    { name: 'blocked external to LB1', src: testExternalClientBlocked, dst: '1.2.3.4', port: 80, output: 'DROP' },
    { name: 'blocked external to LB2', src: testExternalClientBlocked, dst: '5.6.7.8', port: 80, output: 'DROP' },
    { name: 'pod to LB1 (blocked)', src: '10.0.0.2', dst: '1.2.3.4', port: 80, output: 'DROP' },
    { name: 'node to LB1 (allowed)', src: testNodeIP, dst: '1.2.3.4', port: 80, output: out, masq: true },
  ]);
});

test('round trip: externalTrafficPolicy=Local (TestExternalTrafficPolicyLocal)', () => {
  const st = etpLocalState();
  const both = '10.180.0.1:80, 10.180.2.1:80';
  const local = '10.180.2.1:80';
  runFlows(load(st), [
    { name: 'pod to cluster IP hits both endpoints', src: '10.0.0.2', dst: '172.30.0.41', port: 80, output: both },
    { name: 'external to LB IP hits only local endpoint', src: testExternalClient, dst: '1.2.3.4', port: 80, output: local },
    { name: 'pod to LB IP hits both endpoints', src: '10.0.0.2', dst: '1.2.3.4', port: 80, output: both },
    { name: 'external to NodePort hits only local endpoint', src: testExternalClient, dst: testNodeIP, port: 3001, output: local },
    { name: 'pod to NodePort hits both endpoints', src: '10.0.0.2', dst: testNodeIP, port: 3001, output: both },
  ]);
});

test('round trip: no endpoints → REJECT, in filter (TestNoEndpointsReject)', () => {
  const st = noEndpointsState();
  runFlows(load(st), [
    { name: 'pod to cluster IP with no endpoints', src: '10.0.0.2', dst: '172.30.0.41', port: 80, output: 'REJECT' },
    { name: 'external to external IP with no endpoints', src: testExternalClient, dst: '192.168.99.11', port: 80, output: 'REJECT' },
    { name: 'pod to NodePort with no endpoints', src: '10.0.0.2', dst: testNodeIP, port: 3001, output: 'REJECT' },
    { name: 'external to NodePort with no endpoints', src: testExternalClient, dst: testNodeIP, port: 3001, output: 'REJECT' },
    { name: 'external to LoadBalancer IP with no endpoints', src: testExternalClient, dst: '1.2.3.4', port: 80, output: 'REJECT' },
  ]);
});
