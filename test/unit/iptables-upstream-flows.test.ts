// Upstream proxier_test.go scenarios that check behaviour with the packet
// tracer (runPacketFlowTests) or with single chains, re-expressed on our payloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint, IPFamily, Service } from '../../src/k8s/types.js';
import type { RenderOptions } from '../../src/dataplane/iptables/render.js';
import { computeProbability, renderIptables } from '../../src/dataplane/iptables/render.js';
import { restorePayload } from '../../src/dataplane/iptables/payload.js';
import { endpointChainName, serviceChainName } from '../../src/dataplane/iptables/chain-names.js';
import {
  ep,
  expected,
  fakeProxierOptions,
  makeService,
  makeSlice,
  renderCanonical,
  state,
  tcpPort,
  testNodeIP,
  testNodeName,
} from './iptables-helpers.js';
import { runPacketFlowTests, type PacketFlowTest } from './iptables-flow.js';
import { etpLocalState, etpService, loadBalancerState, noEndpointsState, p80, testExternalClient, testExternalClientBlocked } from './upstream-scenarios.js';

const testNodeIPAlt = '192.168.1.2';
const unnamed80 = [{ name: '', port: 80 }];

function chainRules(text: string, table: string, chain: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) cur = line.slice(1);
    else if (cur === table && line.startsWith(`-A ${chain} `)) out.push(line);
  }
  return out;
}

test('TestNoEndpointsReject', () => {
  const st = noEndpointsState();
  const text = renderCanonical(st, fakeProxierOptions());
  runPacketFlowTests(text, [
    { name: 'pod to cluster IP with no endpoints', sourceIP: '10.0.0.2', destIP: '172.30.0.41', destPort: 80, output: 'REJECT' },
    { name: 'external to external IP with no endpoints', sourceIP: testExternalClient, destIP: '192.168.99.11', destPort: 80, output: 'REJECT' },
    { name: 'pod to NodePort with no endpoints', sourceIP: '10.0.0.2', destIP: testNodeIP, destPort: 3001, output: 'REJECT' },
    { name: 'external to NodePort with no endpoints', sourceIP: testExternalClient, destIP: testNodeIP, destPort: 3001, output: 'REJECT' },
    { name: 'pod to LoadBalancer IP with no endpoints', sourceIP: '10.0.0.2', destIP: '1.2.3.4', destPort: 80, output: 'REJECT' },
    { name: 'external to LoadBalancer IP with no endpoints', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: 'REJECT' },
  ]);
});

test('TestClusterIPGeneral', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('http', 80)];
      }),
      makeService('ns2', 'svc2', (s) => {
        s.clusterIPs = ['172.30.0.42'];
        s.ports = [
          tcpPort('http', 80),
          { name: 'https', protocol: 'TCP', port: 443, targetPort: 8443, nodePort: 0 },
          { name: 'dns-udp', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 },
          { name: 'dns-tcp', protocol: 'TCP', port: 53, targetPort: 5353, nodePort: 0 },
          { name: 'dns-sctp', protocol: 'SCTP', port: 53, targetPort: 53, nodePort: 0 },
        ];
      }),
    ],
    [
      makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1', { nodeName: testNodeName })], [{ name: 'http', port: 80 }]),
      makeSlice('ns2', 'svc2', 1, [ep('10.180.0.1', { nodeName: testNodeName }), ep('10.180.2.1', { nodeName: 'node2' })], [
        { name: 'http', port: 80 },
        { name: 'https', port: 8443 },
        { name: 'dns-udp', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 5353 },
        { name: 'dns-sctp', port: 53, protocol: 'SCTP' },
      ]),
    ],
  );
  const text = renderCanonical(st, fakeProxierOptions());
  runPacketFlowTests(text, [
    { name: 'simple clusterIP', sourceIP: '10.180.0.2', destIP: '172.30.0.41', destPort: 80, output: '10.180.0.1:80' },
    { name: 'hairpin to cluster IP', sourceIP: '10.180.0.1', destIP: '172.30.0.41', destPort: 80, output: '10.180.0.1:80', masq: true },
    { name: 'clusterIP with multiple endpoints', sourceIP: '10.180.0.2', destIP: '172.30.0.42', destPort: 80, output: '10.180.0.1:80, 10.180.2.1:80' },
    { name: 'clusterIP with TargetPort', sourceIP: '10.180.0.2', destIP: '172.30.0.42', destPort: 443, output: '10.180.0.1:8443, 10.180.2.1:8443' },
    { name: 'TCP on same port', sourceIP: '10.180.0.2', protocol: 'TCP', destIP: '172.30.0.42', destPort: 53, output: '10.180.0.1:5353, 10.180.2.1:5353' },
    { name: 'UDP on same port', sourceIP: '10.180.0.2', protocol: 'UDP', destIP: '172.30.0.42', destPort: 53, output: '10.180.0.1:53, 10.180.2.1:53' },
    { name: 'SCTP on same port', sourceIP: '10.180.0.2', protocol: 'SCTP', destIP: '172.30.0.42', destPort: 53, output: '10.180.0.1:53, 10.180.2.1:53' },
    { name: 'TCP-only port does not match UDP traffic', sourceIP: '10.180.0.2', protocol: 'UDP', destIP: '172.30.0.42', destPort: 80, output: '' },
    { name: "svc1 does not accept svc2's ports", sourceIP: '10.180.0.2', destIP: '172.30.0.41', destPort: 443, output: '' },
  ]);
});

test('TestLoadBalancer (source ranges, node IP allowed, LB IP hairpin)', () => {
  const st = loadBalancerState();
  const text = renderCanonical(st, fakeProxierOptions());
  const out = '10.180.0.1:80';
  runPacketFlowTests(text, [
    { name: 'pod to cluster IP', sourceIP: '10.0.0.2', destIP: '172.30.0.41', destPort: 80, output: out },
    { name: 'external to nodePort', sourceIP: testExternalClient, destIP: testNodeIP, destPort: 3001, output: out, masq: true },
    { name: 'nodePort bypasses LoadBalancerSourceRanges', sourceIP: testExternalClientBlocked, destIP: testNodeIP, destPort: 3001, output: out, masq: true },
    { name: 'accepted external to LB1', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: out, masq: true },
    { name: 'accepted external to LB2', sourceIP: testExternalClient, destIP: '5.6.7.8', destPort: 80, output: out, masq: true },
    { name: 'blocked external to LB1', sourceIP: testExternalClientBlocked, destIP: '1.2.3.4', destPort: 80, output: 'DROP' },
    { name: 'blocked external to LB2', sourceIP: testExternalClientBlocked, destIP: '5.6.7.8', destPort: 80, output: 'DROP' },
    { name: 'pod to LB1 (blocked)', sourceIP: '10.0.0.2', destIP: '1.2.3.4', destPort: 80, output: 'DROP' },
    { name: 'pod to LB2 (blocked)', sourceIP: '10.0.0.2', destIP: '5.6.7.8', destPort: 80, output: 'DROP' },
    { name: 'node to LB1 (allowed)', sourceIP: testNodeIP, destIP: '1.2.3.4', destPort: 80, output: out, masq: true },
    { name: 'node to LB2 (allowed)', sourceIP: testNodeIP, destIP: '5.6.7.8', destPort: 80, output: out, masq: true },
    { name: 'same node to LB1, SNATted to LB1', sourceIP: '1.2.3.4', destIP: '1.2.3.4', destPort: 80, output: out, masq: true },
    { name: 'same node to LB2, SNATted to LB2', sourceIP: '5.6.7.8', destIP: '5.6.7.8', destPort: 80, output: out, masq: true },
  ]);
});

const nodePortCases: {
  name: string;
  family: IPFamily;
  localhostNodePorts: boolean;
  nodePortAddresses?: string[];
  allowAltNodeIP: boolean;
  expectFirewall: boolean;
}[] = [
  { name: 'ipv4, localhost-nodeports enabled', family: 'IPv4', localhostNodePorts: true, allowAltNodeIP: true, expectFirewall: true },
  { name: 'ipv4, localhost-nodeports disabled', family: 'IPv4', localhostNodePorts: false, allowAltNodeIP: true, expectFirewall: false },
  {
    name: 'ipv4, localhost-nodeports disabled, localhost in nodeport-addresses',
    family: 'IPv4',
    localhostNodePorts: false,
    nodePortAddresses: ['192.168.0.0/24', '127.0.0.1/32'],
    allowAltNodeIP: false,
    expectFirewall: false,
  },
  {
    name: 'ipv4, localhost-nodeports enabled, multiple nodeport-addresses',
    family: 'IPv4',
    localhostNodePorts: false,
    nodePortAddresses: ['192.168.0.0/24', '192.168.1.0/24', '2001:db8::/64'],
    allowAltNodeIP: true,
    expectFirewall: false,
  },
  { name: 'ipv6, localhost-nodeports enabled', family: 'IPv6', localhostNodePorts: true, allowAltNodeIP: true, expectFirewall: false },
  { name: 'ipv6, localhost-nodeports disabled', family: 'IPv6', localhostNodePorts: false, allowAltNodeIP: true, expectFirewall: false },
  {
    name: 'ipv6, localhost-nodeports disabled, multiple nodeport-addresses',
    family: 'IPv6',
    localhostNodePorts: false,
    nodePortAddresses: ['192.168.0.0/24', '192.168.1.0/24', '2001:db8::/64'],
    allowAltNodeIP: false,
    expectFirewall: false,
  },
];

for (const tc of nodePortCases) {
  test(`TestNodePorts: ${tc.name}`, () => {
    const v4 = tc.family === 'IPv4';
    const svcIP = v4 ? '172.30.0.41' : 'fd00:172:30::41';
    const ep1 = v4 ? '10.180.0.1' : 'fd00:10:180::1';
    const ep2 = v4 ? '10.180.2.1' : 'fd00:10:180::2:1';
    const st = state(
      [
        makeService('ns1', 'svc1', (s) => {
          s.type = 'NodePort';
          s.clusterIPs = [svcIP];
          s.ports = [tcpPort('p80', 80, 3001)];
        }),
      ],
      [makeSlice('ns1', 'svc1', 1, [ep(ep1), ep(ep2, { nodeName: testNodeName })], p80, tc.family)],
    );
    const over: Partial<RenderOptions> = {
      localhostNodePorts: tc.localhostNodePorts,
      // The fake network: lo (127.0.0.1, ::1) and eth0 (the five node IPs).
      localAddresses: ['127.0.0.1', '::1', '192.168.0.2', '192.168.1.2', '192.168.99.11', '2001:db8::1', '2001:db8:1::2'],
    };
    if (tc.nodePortAddresses) over.nodePortAddresses = tc.nodePortAddresses;
    const text = renderCanonical(st, fakeProxierOptions(tc.family, over));
    const podIP = v4 ? '10.0.0.2' : 'fd00:10::2';
    const ext = v4 ? testExternalClient : '2600:5200::1';
    const nodeIP = v4 ? testNodeIP : '2001:db8::1';
    const alt = v4 ? testNodeIPAlt : '2001:db8:1::2';
    const lo = v4 ? '127.0.0.1' : '::1';
    const join = (ip: string) => (ip.includes(':') ? `[${ip}]:80` : `${ip}:80`);
    const output = `${join(ep1)}, ${join(ep2)}`;
    const flows: PacketFlowTest[] = [
      { name: 'pod to cluster IP', sourceIP: podIP, destIP: svcIP, destPort: 80, output },
      { name: 'external to nodePort', sourceIP: ext, destIP: nodeIP, destPort: 3001, output, masq: true },
      { name: 'node to nodePort', sourceIP: nodeIP, destIP: nodeIP, destPort: 3001, output, masq: true },
    ];
    if (v4 && tc.localhostNodePorts) flows.push({ name: 'localhost to nodePort gets masqueraded', sourceIP: lo, destIP: lo, destPort: 3001, output, masq: true });
    else flows.push({ name: 'localhost to nodePort is ignored', sourceIP: lo, destIP: lo, destPort: 3001, output: '' });
    if (tc.allowAltNodeIP) flows.push({ name: 'external to nodePort on secondary IP', sourceIP: ext, destIP: alt, destPort: 3001, output, masq: true });
    else flows.push({ name: 'secondary nodeIP ignores NodePorts', sourceIP: ext, destIP: alt, destPort: 3001, output: '' });
    runPacketFlowTests(text, flows);
    const fw = chainRules(text, 'filter', 'KUBE-FIREWALL');
    assert.deepEqual(
      fw,
      tc.expectFirewall
        ? ['-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP']
        : [],
    );
  });
}

test('TestHealthCheckNodePort', () => {
  const svc = makeService('ns1', 'svc1', (s) => {
    s.type = 'LoadBalancer';
    s.clusterIPs = ['172.30.0.42'];
    s.ports = [tcpPort('p80', 80, 3001)];
    s.healthCheckNodePort = 30000;
    s.externalTrafficPolicy = 'Local';
  });
  const opts = fakeProxierOptions('IPv4', { nodePortAddresses: ['127.0.0.0/8'] });
  const text = renderCanonical(state([svc]), opts);
  runPacketFlowTests(text, [{ name: 'firewall accepts HealthCheckNodePort', sourceIP: '1.2.3.4', destIP: testNodeIP, destPort: 30000, output: 'ACCEPT' }]);
  const after = renderCanonical(state([]), opts);
  runPacketFlowTests(after, [{ name: 'HealthCheckNodePort no longer has any rule', sourceIP: '1.2.3.4', destIP: testNodeIP, destPort: 30000, output: '' }]);
});

test('TestDropInvalidRule', () => {
  const tail = [
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  ];
  const cases = [
    { nfacct: false, liberal: false, drop: ['-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP'] },
    { nfacct: true, liberal: false, drop: ['-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP'] },
    { nfacct: false, liberal: true, drop: [] },
  ];
  for (const c of cases) {
    const text = renderCanonical(state([]), fakeProxierOptions('IPv4', { nfacct: { ctStateInvalid: c.nfacct }, conntrackTCPBeLiberal: c.liberal }));
    assert.deepEqual(chainRules(text, 'filter', 'KUBE-FORWARD'), [...c.drop, ...tail]);
  }
});

test('TestMasqueradeRule', () => {
  for (const randomFully of [false, true]) {
    const text = renderCanonical(state([]), fakeProxierOptions('IPv4', { randomFully }));
    assert.deepEqual(chainRules(text, 'nat', 'KUBE-POSTROUTING'), [
      '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
      `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${randomFully ? ' --random-fully' : ''}`,
    ]);
  }
});

test('TestExternalTrafficPolicyLocal', () => {
  const st = etpLocalState();
  const text = renderCanonical(st, fakeProxierOptions());
  const both = '10.180.0.1:80, 10.180.2.1:80';
  const local = '10.180.2.1:80';
  runPacketFlowTests(text, [
    { name: 'pod to cluster IP hits both endpoints', sourceIP: '10.0.0.2', destIP: '172.30.0.41', destPort: 80, output: both },
    { name: 'pod to external IP hits both endpoints', sourceIP: '10.0.0.2', destIP: '192.168.99.11', destPort: 80, output: both },
    { name: 'external to external IP hits only local endpoint', sourceIP: testExternalClient, destIP: '192.168.99.11', destPort: 80, output: local },
    { name: 'pod to LB IP hits both endpoints', sourceIP: '10.0.0.2', destIP: '1.2.3.4', destPort: 80, output: both },
    { name: 'external to LB IP hits only local endpoint', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: local },
    { name: 'pod to NodePort hits both endpoints', sourceIP: '10.0.0.2', destIP: testNodeIP, destPort: 3001, output: both },
    { name: 'external to NodePort hits only local endpoint', sourceIP: testExternalClient, destIP: testNodeIP, destPort: 3001, output: local },
  ]);
});

test('TestExternalTrafficPolicyCluster', () => {
  const st = state([etpService('Cluster')], [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1'), ep('10.180.2.1', { nodeName: testNodeName })], p80)]);
  const text = renderCanonical(st, fakeProxierOptions());
  const both = '10.180.0.1:80, 10.180.2.1:80';
  runPacketFlowTests(text, [
    { name: 'pod to cluster IP', sourceIP: '10.0.0.2', destIP: '172.30.0.41', destPort: 80, output: both },
    { name: 'pod to external IP', sourceIP: '10.0.0.2', destIP: '192.168.99.11', destPort: 80, output: both, masq: true },
    { name: 'external to external IP', sourceIP: testExternalClient, destIP: '192.168.99.11', destPort: 80, output: both, masq: true },
    { name: 'pod to LB IP', sourceIP: '10.0.0.2', destIP: '1.2.3.4', destPort: 80, output: both, masq: true },
    { name: 'external to LB IP', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: both, masq: true },
    { name: 'pod to NodePort', sourceIP: '10.0.0.2', destIP: testNodeIP, destPort: 3001, output: both, masq: true },
    { name: 'external to NodePort', sourceIP: testExternalClient, destIP: testNodeIP, destPort: 3001, output: both, masq: true },
  ]);
});

test('TestComputeProbability', () => {
  const want: Record<number, string> = {
    1: '1.0000000000',
    2: '0.5000000000',
    10: '0.1000000000',
    100: '0.0100000000',
    1000: '0.0010000000',
    10000: '0.0001000000',
    100000: '0.0000100000',
    100001: '0.0000099999',
    3: '0.3333333333',
    // An exact binary tie at the 11th decimal: Go rounds half to even, Number.toFixed would round up.
    2048: '0.0004882812',
  };
  for (const [n, s] of Object.entries(want)) assert.equal(computeProbability(Number(n)), s, `n=${n}`);
  let prev = 0;
  for (let i = 100000; i > 1; i--) {
    const p = Number.parseFloat(computeProbability(i));
    assert.ok(p > prev, `probability for ${i} not increasing`);
    prev = p;
  }
});

test('TestInternalTrafficPolicy', () => {
  const cases: { name: string; itp: 'Cluster' | 'Local'; eps: [string, string][]; output: string }[] = [
    { name: 'cluster', itp: 'Cluster', eps: [['10.0.1.1', testNodeName], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: '10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80' },
    { name: 'local, one local endpoint', itp: 'Local', eps: [['10.0.1.1', testNodeName], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: '10.0.1.1:80' },
    { name: 'local, two local endpoints', itp: 'Local', eps: [['10.0.1.1', testNodeName], ['10.0.1.2', testNodeName], ['10.0.1.3', 'node2']], output: '10.0.1.1:80, 10.0.1.2:80' },
    { name: 'local, no local endpoints', itp: 'Local', eps: [['10.0.1.1', 'node0'], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: 'DROP' },
  ];
  for (const c of cases) {
    const svc = makeService('ns1', 'svc1', (s) => {
      s.clusterIPs = ['172.30.1.1'];
      s.ports = [tcpPort('', 80)];
      s.internalTrafficPolicy = c.itp;
    });
    const slice = makeSlice('ns1', 'svc1', 1, c.eps.map(([ip, node]) => ep(ip, { nodeName: node })), unnamed80);
    runPacketFlowTests(renderCanonical(state([svc], [slice]), fakeProxierOptions()), [
      { name: c.name, sourceIP: '10.0.0.2', destIP: '172.30.1.1', destPort: 80, output: c.output },
    ]);
    runPacketFlowTests(renderCanonical(state([svc]), fakeProxierOptions()), [
      { name: `${c.name}: endpoints deleted`, sourceIP: '10.0.0.2', destIP: '172.30.1.1', destPort: 80, output: 'REJECT' },
    ]);
  }
});

function terminatingService(etp: 'Local' | 'Cluster'): Service {
  return makeService('ns1', 'svc1', (s) => {
    s.type = 'LoadBalancer';
    s.externalTrafficPolicy = etp;
    s.clusterIPs = ['172.30.1.1'];
    s.ports = [tcpPort('', 80)];
    s.healthCheckNodePort = 30000;
    s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
  });
}

type Cond = [ip: string, ready: boolean, serving: boolean, terminating: boolean, node: string];
const c = (x: Cond): Endpoint => ep(x[0], { ready: x[1], serving: x[2], terminating: x[3], nodeName: x[4] });

function runTerminating(etp: 'Local' | 'Cluster', eps: Cond[], clusterOut: string, lbOut: string, lbMasq: boolean): void {
  const svc = terminatingService(etp);
  const text = renderCanonical(state([svc], [makeSlice('ns1', 'svc1', 1, eps.map(c), unnamed80)]), fakeProxierOptions());
  runPacketFlowTests(text, [
    { name: 'pod to clusterIP', sourceIP: '10.0.0.2', destIP: '172.30.1.1', destPort: 80, output: clusterOut },
    { name: 'external to LB', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: lbOut, masq: lbMasq },
  ]);
  runPacketFlowTests(renderCanonical(state([svc]), fakeProxierOptions()), [
    { name: 'pod to clusterIP after endpoints deleted', sourceIP: '10.0.0.2', destIP: '172.30.1.1', destPort: 80, output: 'REJECT' },
    { name: 'external to LB after endpoints deleted', sourceIP: testExternalClient, destIP: '1.2.3.4', destPort: 80, output: 'REJECT' },
  ]);
}

test('TestTerminatingEndpointsTrafficPolicyLocal', () => {
  const N = testNodeName;
  runTerminating(
    'Local',
    [['10.0.1.1', true, true, false, N], ['10.0.1.2', true, true, false, N], ['10.0.1.3', false, true, true, N], ['10.0.1.4', false, false, true, N], ['10.0.1.5', true, true, false, 'node-1']],
    '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
    '10.0.1.1:80, 10.0.1.2:80',
    false,
  );
  runTerminating(
    'Local',
    [['10.0.1.2', false, true, true, N], ['10.0.1.3', false, true, true, N], ['10.0.1.4', false, false, true, N], ['10.0.1.5', true, true, false, 'node-1']],
    '10.0.1.5:80',
    '10.0.1.2:80, 10.0.1.3:80',
    false,
  );
  runTerminating('Local', [['10.0.1.5', false, true, true, 'node-1']], '10.0.1.5:80', 'DROP', false);
  runTerminating('Local', [['10.0.1.5', false, false, true, N], ['10.0.1.5', false, false, true, 'node-1']], 'REJECT', 'REJECT', false);
});

test('TestTerminatingEndpointsTrafficPolicyCluster', () => {
  const N = testNodeName;
  const A = 'another-node';
  runTerminating(
    'Cluster',
    [['10.0.1.1', true, true, false, N], ['10.0.1.2', true, true, false, N], ['10.0.1.3', false, true, true, A], ['10.0.1.4', false, false, true, A], ['10.0.1.5', true, true, false, A]],
    '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
    '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
    true,
  );
  runTerminating(
    'Cluster',
    [['10.0.1.2', false, true, true, N], ['10.0.1.3', false, true, true, N], ['10.0.1.4', false, false, true, A], ['10.0.1.5', false, true, true, A]],
    '10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80',
    '10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80',
    true,
  );
  runTerminating('Cluster', [['10.0.1.5', false, true, true, 'node-1']], '10.0.1.5:80', '10.0.1.5:80', true);
  runTerminating('Cluster', [['10.0.1.5', false, false, true, N], ['10.0.1.5', false, false, true, 'node-1']], 'REJECT', 'REJECT', false);
});

test('TestInternalExternalMasquerade (4 configurations × 31 flows)', () => {
  const services = [
    makeService('ns1', 'svc1', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.41'];
      s.ports = [tcpPort('p80', 80, 3001)];
      s.healthCheckNodePort = 30001;
      s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
    }),
    makeService('ns2', 'svc2', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.42'];
      s.ports = [tcpPort('p80', 80, 3002)];
      s.healthCheckNodePort = 30002;
      s.externalTrafficPolicy = 'Local';
      s.loadBalancerIngress = [{ ip: '5.6.7.8' }];
    }),
    makeService('ns3', 'svc3', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.43'];
      s.ports = [tcpPort('p80', 80, 3003)];
      s.healthCheckNodePort = 30003;
      s.internalTrafficPolicy = 'Local';
      s.loadBalancerIngress = [{ ip: '9.10.11.12' }];
    }),
  ];
  const slices = [1, 2, 3].map((n) =>
    makeSlice(`ns${n}`, `svc${n}`, 1, [ep(`10.180.0.${n}`, { nodeName: testNodeName }), ep(`10.180.1.${n}`, { nodeName: 'remote' })], p80),
  );
  const s1 = '10.180.0.1:80, 10.180.1.1:80';
  const s2 = '10.180.0.2:80, 10.180.1.2:80';
  const s3 = '10.180.0.3:80, 10.180.1.3:80';
  const ext = testExternalClient;
  const N = testNodeIP;
  const L = '127.0.0.1';
  const flows: PacketFlowTest[] = [
    { name: 'pod to ClusterIP', sourceIP: '10.0.0.2', destIP: '172.30.0.41', destPort: 80, output: s1, masq: false },
    { name: 'pod to NodePort', sourceIP: '10.0.0.2', destIP: N, destPort: 3001, output: s1, masq: true },
    { name: 'pod to LB', sourceIP: '10.0.0.2', destIP: '1.2.3.4', destPort: 80, output: s1, masq: true },
    { name: 'node to ClusterIP', sourceIP: N, destIP: '172.30.0.41', destPort: 80, output: s1, masq: true },
    { name: 'node to NodePort', sourceIP: N, destIP: N, destPort: 3001, output: s1, masq: true },
    { name: 'localhost to NodePort', sourceIP: L, destIP: L, destPort: 3001, output: s1, masq: true },
    { name: 'node to LB', sourceIP: N, destIP: '1.2.3.4', destPort: 80, output: s1, masq: true },
    { name: 'external to ClusterIP', sourceIP: ext, destIP: '172.30.0.41', destPort: 80, output: s1, masq: true },
    { name: 'external to NodePort', sourceIP: ext, destIP: N, destPort: 3001, output: s1, masq: true },
    { name: 'external to LB', sourceIP: ext, destIP: '1.2.3.4', destPort: 80, output: s1, masq: true },
    { name: 'pod to ClusterIP with eTP:Local', sourceIP: '10.0.0.2', destIP: '172.30.0.42', destPort: 80, output: s2, masq: false },
    { name: 'pod to NodePort with eTP:Local', sourceIP: '10.0.0.2', destIP: N, destPort: 3002, output: s2, masq: false },
    { name: 'pod to LB with eTP:Local', sourceIP: '10.0.0.2', destIP: '5.6.7.8', destPort: 80, output: s2, masq: false },
    { name: 'node to ClusterIP with eTP:Local', sourceIP: N, destIP: '172.30.0.42', destPort: 80, output: s2, masq: true },
    { name: 'node to NodePort with eTP:Local', sourceIP: N, destIP: N, destPort: 3001, output: s1, masq: true },
    { name: 'localhost to NodePort with eTP:Local', sourceIP: L, destIP: L, destPort: 3002, output: s2, masq: true },
    { name: 'node to LB with eTP:Local', sourceIP: N, destIP: '5.6.7.8', destPort: 80, output: s2, masq: true },
    { name: 'external to ClusterIP with eTP:Local', sourceIP: ext, destIP: '172.30.0.42', destPort: 80, output: s2, masq: true },
    { name: 'external to NodePort with eTP:Local', sourceIP: ext, destIP: N, destPort: 3002, output: '10.180.0.2:80', masq: false },
    { name: 'external to LB with eTP:Local', sourceIP: ext, destIP: '5.6.7.8', destPort: 80, output: '10.180.0.2:80', masq: false },
    { name: 'pod to ClusterIP with iTP:Local', sourceIP: '10.0.0.2', destIP: '172.30.0.43', destPort: 80, output: '10.180.0.3:80', masq: false },
    { name: 'pod to NodePort with iTP:Local', sourceIP: '10.0.0.2', destIP: N, destPort: 3003, output: s3, masq: true },
    { name: 'pod to LB with iTP:Local', sourceIP: '10.0.0.2', destIP: '9.10.11.12', destPort: 80, output: s3, masq: true },
    { name: 'node to ClusterIP with iTP:Local', sourceIP: N, destIP: '172.30.0.43', destPort: 80, output: '10.180.0.3:80', masq: true },
    { name: 'node to NodePort with iTP:Local', sourceIP: N, destIP: N, destPort: 3003, output: s3, masq: true },
    { name: 'localhost to NodePort with iTP:Local', sourceIP: L, destIP: L, destPort: 3003, output: s3, masq: true },
    { name: 'node to LB with iTP:Local', sourceIP: N, destIP: '9.10.11.12', destPort: 80, output: s3, masq: true },
    { name: 'external to ClusterIP with iTP:Local', sourceIP: ext, destIP: '172.30.0.43', destPort: 80, output: '10.180.0.3:80', masq: true },
    { name: 'external to NodePort with iTP:Local', sourceIP: ext, destIP: N, destPort: 3003, output: s3, masq: true },
    { name: 'external to LB with iTP:Local', sourceIP: ext, destIP: '9.10.11.12', destPort: 80, output: s3, masq: true },
  ];
  const cases: { name: string; masqueradeAll: boolean; localDetector: boolean; overrides: Record<string, { output?: string; masq?: boolean }> }[] = [
    { name: 'base', masqueradeAll: false, localDetector: true, overrides: {} },
    {
      name: 'no LocalTrafficDetector',
      masqueradeAll: false,
      localDetector: false,
      overrides: {
        'node to ClusterIP': { masq: false },
        'node to ClusterIP with eTP:Local': { masq: false },
        'node to ClusterIP with iTP:Local': { masq: false },
        'external to ClusterIP': { masq: false },
        'external to ClusterIP with eTP:Local': { masq: false },
        'external to ClusterIP with iTP:Local': { masq: false },
        'pod to NodePort with eTP:Local': { output: '10.180.0.2:80' },
        'pod to LB with eTP:Local': { output: '10.180.0.2:80' },
      },
    },
    {
      name: 'masqueradeAll',
      masqueradeAll: true,
      localDetector: true,
      overrides: {
        'pod to ClusterIP': { masq: true },
        'pod to ClusterIP with eTP:Local': { masq: true },
        'pod to ClusterIP with iTP:Local': { masq: true },
      },
    },
    {
      name: 'masqueradeAll, no LocalTrafficDetector',
      masqueradeAll: true,
      localDetector: false,
      overrides: {
        'pod to ClusterIP': { masq: true },
        'pod to ClusterIP with eTP:Local': { masq: true },
        'pod to ClusterIP with iTP:Local': { masq: true },
        'pod to NodePort with eTP:Local': { output: '10.180.0.2:80' },
        'pod to LB with eTP:Local': { output: '10.180.0.2:80' },
      },
    },
  ];
  for (const tc of cases) {
    const opts = fakeProxierOptions('IPv4', { masqueradeAll: tc.masqueradeAll, clusterCIDRs: tc.localDetector ? ['10.0.0.0/8'] : [] });
    const text = renderCanonical(state(services, slices), opts);
    let applied = 0;
    const merged = flows.map((f) => {
      const o = tc.overrides[f.name];
      if (!o) return f;
      applied++;
      return { ...f, ...o, name: `${tc.name}: ${f.name}` };
    });
    assert.equal(applied, Object.keys(tc.overrides).length, `${tc.name}: every override names a flow`);
    runPacketFlowTests(text, merged.map((f) => ({ ...f, name: f.name.startsWith(tc.name) ? f.name : `${tc.name}: ${f.name}` })));
  }
});

function countEndpointsAndComments(text: string, match: string): [string, number, number] {
  let n = 0;
  let comments = 0;
  let matched = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('-A KUBE-SEP-') && line.includes('-j DNAT')) {
      n++;
      if (line.includes('--comment')) comments++;
      if (line.includes(match)) matched = line;
    }
  }
  return [matched, n, comments];
}

test('TestSyncProxyRulesLargeClusterMode (full renders)', () => {
  const half = 1000 / 2 - 1;
  const mk = (ns: string, name: string, ip: string, port: number, pname: string) =>
    makeService(ns, name, (s) => {
      s.clusterIPs = [ip];
      s.ports = [tcpPort(pname, port)];
    });
  const services = [mk('ns1', 'svc1', '172.30.0.41', 80, 'p80'), mk('ns2', 'svc2', '172.30.0.42', 8080, 'p8080'), mk('ns3', 'svc3', '172.30.0.43', 8081, 'p8081')];
  const eps = (prefix: string) => Array.from({ length: half }, (_, i) => ep(`${prefix}.${i % 256}.${Math.floor(i / 256)}`));
  const slices = [
    makeSlice('ns1', 'svc1', 1, eps('10.0'), p80),
    makeSlice('ns2', 'svc2', 1, eps('10.1'), [{ name: 'p8080', port: 8080 }]),
  ];
  const opts = fakeProxierOptions('IPv4', { masqueradeAll: true });
  let text = restorePayload(renderIptables(state(services, slices), opts)[0]!);
  let [first, n, comments] = countEndpointsAndComments(text, '10.0.0.0');
  assert.equal(first, '-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80');
  assert.equal(n, 2 * half);
  assert.equal(comments, n);

  slices.push(makeSlice('ns3', 'svc3', 1, [ep('203.0.113.4'), ep('203.0.113.8'), ep('203.0.113.12')], [{ name: 'p8081', port: 8081 }]));
  const rs = renderIptables(state(services, slices), opts)[0]!;
  assert.equal(rs.largeClusterMode, true);
  text = restorePayload(rs);
  [first, n, comments] = countEndpointsAndComments(text, '203.0.113.4');
  assert.equal(first, '-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081');
  [first, n, comments] = countEndpointsAndComments(text, '10.0.0.0');
  assert.equal(first, '-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80');
  assert.equal(n, 2 * half + 3);
  assert.equal(comments, 0);
  // The SVC → SEP jumps lose their comments too; the KUBE-SERVICES rules keep theirs.
  // Endpoints sort as "ip:port" strings: 203.0.113.12 < 203.0.113.4 < 203.0.113.8.
  const svc3 = serviceChainName('ns3/svc3:p8081', 'tcp');
  assert.ok(text.includes(`-A ${svc3} -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-RUVVH7YV3PHQBDOS\n`));
  assert.ok(text.includes(`-A ${svc3} -m statistic --mode random --probability 0.3333333333 -j ${endpointChainName('ns3/svc3:p8081', 'tcp', '203.0.113.12:8081')}\n`));
  assert.ok(text.includes('-A KUBE-SERVICES -m comment --comment "ns3/svc3:p8081 cluster IP"'));

  services.push(
    makeService('ns4', 'svc4', (s) => {
      s.clusterIPs = ['172.30.0.44'];
      s.ports = [tcpPort('p8082', 8082)];
    }),
  );
  slices.push(makeSlice('ns4', 'svc4', 1, [ep('10.4.0.1')], [{ name: 'p8082', port: 8082 }]));
  text = restorePayload(renderIptables(state(services, slices), opts)[0]!);
  [first] = countEndpointsAndComments(text, '10.4.0.1');
  assert.equal(first, '-A KUBE-SEP-SU5STNODRYEWJAUF -m tcp -p tcp -j DNAT --to-destination 10.4.0.1:8082');
  // Stale chains are flushed and deleted when the caller passes them (the sync loop decides when).
  const withDeletes = restorePayload(renderIptables(state(services.slice(0, 3), slices), opts)[0]!, {
    deleteNatChains: ['KUBE-SVC-EBDQOQU5SJFXRIL3', 'KUBE-SEP-SU5STNODRYEWJAUF'],
  });
  assert.ok(withDeletes.includes('-X KUBE-SVC-EBDQOQU5SJFXRIL3\n'));
  assert.ok(withDeletes.includes('-X KUBE-SEP-SU5STNODRYEWJAUF\n'));
  assert.ok(withDeletes.indexOf('-X KUBE-SEP-SU5STNODRYEWJAUF') < withDeletes.indexOf('this must be the last rule'));
});

test('TestSyncProxyRulesRepeated (initial full sync)', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('p80', 80)];
      }),
      makeService('ns2', 'svc2', (s) => {
        s.clusterIPs = ['172.30.0.42'];
        s.ports = [tcpPort('p8080', 8080)];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('10.0.1.1')], p80), makeSlice('ns2', 'svc2', 1, [ep('10.0.2.1')], [{ name: 'p8080', port: 8080 }])],
  );
  assert.equal(renderCanonical(st, fakeProxierOptions()), expected('repeated-initial.txt'));
});

test('TestLoadBalancerIngressRouteTypeProxy', () => {
  const cases: { ip: string; lb: string; mode?: 'VIP' | 'Proxy'; rule: boolean }[] = [
    { ip: '10.20.30.41', lb: '1.2.3.4', mode: 'Proxy', rule: false },
    { ip: '10.20.30.42', lb: '1.2.3.5', mode: 'VIP', rule: true },
    { ip: '10.20.30.43', lb: '1.2.3.6', rule: true },
  ];
  for (const c of cases) {
    const svc = makeService('ns1', 'svc1', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = [c.ip];
      s.ports = [tcpPort('p80', 80, 3001)];
      s.loadBalancerIngress = [c.mode ? { ip: c.lb, ipMode: c.mode } : { ip: c.lb }];
    });
    const text = renderCanonical(state([svc], [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], p80)]), fakeProxierOptions());
    const has = chainRules(text, 'nat', 'KUBE-SERVICES').some((r) => r.includes(` -d ${c.lb} `));
    assert.equal(has, c.rule, `ipMode ${c.mode ?? 'nil'}`);
  }
});

test('TestBadIPs: bad IPs and CIDRs are rewritten', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.type = 'LoadBalancer';
        s.clusterIPs = ['172.30.0.041'];
        s.ports = [tcpPort('p80', 80, 3001)];
        s.loadBalancerIngress = [{ ip: '1.2.3.004' }];
        s.externalIPs = ['192.168.099.022'];
        s.loadBalancerSourceRanges = ['203.0.113.000/025'];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('10.180.00.001')], p80)],
  );
  assert.equal(renderCanonical(st, fakeProxierOptions()), expected('bad-ips.txt'));
});
