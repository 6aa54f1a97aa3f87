// ipvs mode rendering checked against the expectations of upstream's
// pkg/proxy/ipvs/proxier_test.go, scenario by scenario (re-expressed here:
// the virtual servers as ipvsadm lines, the ipset entries, and the order of
// the rules in each chain, which is what upstream's checkIptables compares).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIpvs, masqueradeMark, type IpvsRenderOptions } from '../../src/dataplane/ipvs/render.js';
import { familySetName } from '../../src/dataplane/ipvs/names.js';
import type { IpvsRender } from '../../src/dataplane/ipvs/model.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { ep, port, slice, state, svc, TEST_NODE } from '../fixtures/ipvs/build.js';

function render(st: ClusterState, o: Partial<IpvsRenderOptions> = {}): IpvsRender {
  return renderIpvs(st, { family: 'IPv4', nodeName: TEST_NODE, nodeIPs: ['100.101.102.103'], ...o });
}

function ipvsLines(r: IpvsRender): string[] {
  return r.ipvsadmRestore.trimEnd().split('\n').filter(Boolean);
}

function setEntries(r: IpvsRender, name: string): string[] {
  const s = r.ipsets.find((x) => x.name === name);
  assert.ok(s, `set ${name} exists`);
  return s.entries;
}

/** The (target, match-set) pairs of a chain in order, like upstream's ExpectedIptablesChain. */
function chain(r: IpvsRender, table: 'nat' | 'filter', name: string): string[] {
  const rules = table === 'nat' ? r.natRules : r.filterRules;
  return rules
    .filter((l) => l.startsWith(`-A ${name} `))
    .map((l) => {
      const j = /-j (\S+)/.exec(l)![1]!;
      const set = /--match-set (\S+)/.exec(l)?.[1];
      const src = /-s (\S+)/.exec(l)?.[1];
      return set ? `${j} ${set}` : src && j === 'RETURN' ? `${j} -s ${src}` : j;
    });
}

const nodePortSvc = (proto: 'TCP' | 'UDP' | 'SCTP', etpLocal = false) =>
  svc('ns1', 'svc1', (s) => {
    s.type = 'NodePort';
    s.clusterIPs = ['10.20.30.41'];
    s.ports = [port('p80', proto, 80, 3001)];
    if (etpLocal) s.externalTrafficPolicy = 'Local';
  });

test('NodePort TCP, IPv4 and IPv6 endpoints: a ClusterIP and a NodePort virtual server, IPv4 endpoint only (TestNodePortIPv4 case 1)', () => {
  const r = render(
    state(
      [nodePortSvc('TCP')],
      [
        slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }]),
        slice('ns1', 'svc1', 2, 'IPv6', [ep('1002:ab8::2:10')], [{ name: 'p80', port: 80, protocol: 'TCP' }]),
      ],
    ),
    { nodeIPs: ['100.101.102.103', '2001:db8::1:1'] },
  );
  assert.deepEqual(ipvsLines(r), [
    '-A -t 10.20.30.41:80 -s rr',
    '-a -t 10.20.30.41:80 -r 10.180.0.1:80 -m -w 1',
    '-A -t 100.101.102.103:3001 -s rr',
    '-a -t 100.101.102.103:3001 -r 10.180.0.1:80 -m -w 1',
  ]);
  assert.deepEqual(r.interfaceAddresses, ['10.20.30.41']);
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-TCP'), ['3001']);
  assert.deepEqual(setEntries(r, 'KUBE-CLUSTER-IP'), ['10.20.30.41,tcp:80']);
  assert.deepEqual(setEntries(r, 'KUBE-IPVS-IPS'), ['10.20.30.41']);
});

test('NodePort UDP: KUBE-NODE-PORT-UDP entry and the chains upstream expects (TestNodePortIPv4 case 2)', () => {
  const r = render(state([nodePortSvc('UDP')], [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'UDP' }])]), {
    nodePortAddresses: ['0.0.0.0/0'],
  });
  assert.deepEqual(ipvsLines(r), [
    '-A -u 10.20.30.41:80 -s rr',
    '-a -u 10.20.30.41:80 -r 10.180.0.1:80 -m -w 1',
    '-A -u 100.101.102.103:3001 -s rr',
    '-a -u 100.101.102.103:3001 -r 10.180.0.1:80 -m -w 1',
  ]);
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-UDP'), ['3001']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-NODE-PORT'), ['KUBE-MARK-MASQ KUBE-NODE-PORT-UDP']);
  assert.deepEqual(chain(r, 'filter', 'KUBE-NODE-PORT'), ['ACCEPT KUBE-HEALTH-CHECK-NODE-PORT']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-SERVICES'), [
    'RETURN -s 127.0.0.0/8',
    'KUBE-MARK-MASQ KUBE-CLUSTER-IP',
    'KUBE-NODE-PORT',
    'ACCEPT KUBE-CLUSTER-IP',
  ]);
  assert.ok(r.natRules.includes('-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ'));
});

test('NodePort without endpoints: both virtual servers, no real servers (TestNodePortIPv4 case 3)', () => {
  const r = render(state([nodePortSvc('TCP')]));
  assert.deepEqual(ipvsLines(r), ['-A -t 10.20.30.41:80 -s rr', '-A -t 100.101.102.103:3001 -s rr']);
});

test('SCTP NodePort on three node IPs: hash:ip,port entries per node IP (TestNodePortIPv4 case 4)', () => {
  const r = render(state([nodePortSvc('SCTP')], [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'SCTP' }])]), {
    nodeIPs: ['100.101.102.103', '100.101.102.104', '100.101.102.105', '2001:db8::1:1'],
  });
  assert.deepEqual(
    ipvsLines(r).filter((l) => l.startsWith('-A')),
    [
      '-A --sctp-service 10.20.30.41:80 -s rr',
      '-A --sctp-service 100.101.102.103:3001 -s rr',
      '-A --sctp-service 100.101.102.104:3001 -s rr',
      '-A --sctp-service 100.101.102.105:3001 -s rr',
    ],
  );
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-SCTP-HASH'), ['100.101.102.103,sctp:3001', '100.101.102.104,sctp:3001', '100.101.102.105,sctp:3001']);
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-TCP'), []);
});

test('SCTP NodePort with externalTrafficPolicy Local: ClusterIP keeps every endpoint, NodePort only the local one (TestNodePortIPv4 case 5)', () => {
  const r = render(
    state(
      [nodePortSvc('SCTP', true)],
      [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1', TEST_NODE), ep('10.180.1.1', 'other-node')], [{ name: 'p80', port: 80, protocol: 'SCTP' }])],
    ),
  );
  assert.deepEqual(ipvsLines(r), [
    '-A --sctp-service 10.20.30.41:80 -s rr',
    '-a --sctp-service 10.20.30.41:80 -r 10.180.0.1:80 -m -w 1',
    '-a --sctp-service 10.20.30.41:80 -r 10.180.1.1:80 -m -w 1',
    '-A --sctp-service 100.101.102.103:3001 -s rr',
    '-a --sctp-service 100.101.102.103:3001 -r 10.180.0.1:80 -m -w 1',
  ]);
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-SCTP-HASH'), ['100.101.102.103,sctp:3001']);
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-LOCAL-SCTP-HASH'), ['100.101.102.103,sctp:3001']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-NODE-PORT'), [
    'RETURN KUBE-NODE-PORT-LOCAL-SCTP-HASH',
    'KUBE-MARK-MASQ KUBE-NODE-PORT-SCTP-HASH',
  ]);
  // The local endpoint is on this node: hairpin traffic to itself is masqueraded.
  assert.deepEqual(setEntries(r, 'KUBE-LOOP-BACK'), ['10.180.0.1,sctp:80,10.180.0.1']);
  assert.equal(chain(r, 'nat', 'KUBE-POSTROUTING')[0], 'MASQUERADE KUBE-LOOP-BACK');
});

test('IPv6: KUBE-6- set names, bracketed virtual servers, IPv4 objects ignored (TestNodePortIPv6)', () => {
  const r = renderIpvs(
    state(
      [
        svc('ns1', 'svc1', (s) => {
          s.type = 'NodePort';
          s.clusterIPs = ['2020::1'];
          s.ports = [port('p80', 'TCP', 80, 3001)];
        }),
      ],
      [
        slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }]),
        slice('ns1', 'svc1', 2, 'IPv6', [ep('1002:ab8::2:10')], [{ name: 'p80', port: 80, protocol: 'TCP' }]),
      ],
    ),
    { family: 'IPv6', nodeName: TEST_NODE, nodeIPs: ['100.101.102.103', '2001:db8::1:1'] },
  );
  assert.deepEqual(ipvsLines(r), [
    '-A -t [2020::1]:80 -s rr',
    '-a -t [2020::1]:80 -r [1002:ab8::2:10]:80 -m -w 1',
    '-A -t [2001:db8::1:1]:3001 -s rr',
    '-a -t [2001:db8::1:1]:3001 -r [1002:ab8::2:10]:80 -m -w 1',
  ]);
  assert.deepEqual(setEntries(r, 'KUBE-6-CLUSTER-IP'), ['2020::1,tcp:80']);
  assert.deepEqual(setEntries(r, 'KUBE-6-NODE-PORT-TCP'), ['3001']);
  assert.equal(familySetName('KUBE-NODE-PORT-LOCAL-SCTP-HASH', 'IPv6'), 'KUBE-6-NODE-PORT-LOCAL-SCTP-HAS');
  assert.ok(r.ipsetRestore.includes('create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536 -exist'));
  assert.equal(chain(r, 'nat', 'KUBE-SERVICES')[0], 'RETURN -s ::1/128');
  // An IPv4-only service renders nothing in the IPv6 proxier.
  const v4only = renderIpvs(state([nodePortSvc('UDP')]), { family: 'IPv6', nodeName: TEST_NODE, nodeIPs: ['2001:db8::1:1'] });
  assert.equal(v4only.ipvsadmRestore, '');
});

test('LoadBalancer: LB virtual server and set, KUBE-SERVICES and KUBE-LOAD-BALANCER rules in upstream order (TestLoadBalancer)', () => {
  const r = render(
    state(
      [
        svc('ns1', 'svc1', (s) => {
          s.type = 'LoadBalancer';
          s.clusterIPs = ['10.20.30.41'];
          s.ports = [port('p80', 'TCP', 80, 3001)];
          s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
        }),
      ],
      [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
    ),
  );
  assert.ok(ipvsLines(r).includes('-A -t 1.2.3.4:80 -s rr'));
  assert.ok(ipvsLines(r).includes('-a -t 1.2.3.4:80 -r 10.180.0.1:80 -m -w 1'));
  assert.deepEqual(setEntries(r, 'KUBE-LOAD-BALANCER'), ['1.2.3.4,tcp:80']);
  assert.deepEqual(r.interfaceAddresses, ['1.2.3.4', '10.20.30.41']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-SERVICES'), [
    'RETURN -s 127.0.0.0/8',
    'KUBE-LOAD-BALANCER KUBE-LOAD-BALANCER',
    'KUBE-MARK-MASQ KUBE-CLUSTER-IP',
    'KUBE-NODE-PORT',
    'ACCEPT KUBE-CLUSTER-IP',
    'ACCEPT KUBE-LOAD-BALANCER',
  ]);
  assert.deepEqual(chain(r, 'nat', 'KUBE-LOAD-BALANCER'), ['KUBE-MARK-MASQ']);
});

test('LoadBalancer with externalTrafficPolicy Local: KUBE-LOAD-BALANCER-LOCAL returns before the masquerade (TestOnlyLocalLoadBalancing)', () => {
  const r = render(
    state(
      [
        svc('ns1', 'svc1', (s) => {
          s.type = 'LoadBalancer';
          s.clusterIPs = ['10.20.30.41'];
          s.ports = [port('p80', 'TCP', 80, 3001)];
          s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
          s.externalTrafficPolicy = 'Local';
          s.healthCheckNodePort = 30000;
        }),
      ],
      [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1', TEST_NODE), ep('10.180.1.1', 'other-node')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
    ),
  );
  const lines = ipvsLines(r);
  const lbAt = lines.indexOf('-A -t 1.2.3.4:80 -s rr');
  assert.deepEqual(lines.slice(lbAt, lbAt + 3), ['-A -t 1.2.3.4:80 -s rr', '-a -t 1.2.3.4:80 -r 10.180.0.1:80 -m -w 1', '-A -t 100.101.102.103:3001 -s rr']);
  assert.deepEqual(setEntries(r, 'KUBE-LOAD-BALANCER-LOCAL'), ['1.2.3.4,tcp:80']);
  assert.deepEqual(setEntries(r, 'KUBE-HEALTH-CHECK-NODE-PORT'), ['30000']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-LOAD-BALANCER'), ['RETURN KUBE-LOAD-BALANCER-LOCAL', 'KUBE-MARK-MASQ']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-NODE-PORT'), ['RETURN KUBE-NODE-PORT-LOCAL-TCP', 'KUBE-MARK-MASQ KUBE-NODE-PORT-TCP']);
});

const lbWithRanges = (ranges: string[]) =>
  state(
    [
      svc('ns1', 'svc1', (s) => {
        s.type = 'LoadBalancer';
        s.clusterIPs = ['10.20.30.41'];
        s.ports = [port('p80', 'TCP', 80)];
        s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
        s.loadBalancerSourceRanges = ranges;
      }),
    ],
    [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
  );

test('LoadBalancer source ranges: FW and SOURCE-CIDR sets, the firewall chains, and the node blocked from the LB IP (TestLoadBalancerSourceRanges)', () => {
  const r = render(lbWithRanges(['10.0.0.0/8']));
  assert.deepEqual(setEntries(r, 'KUBE-LOAD-BALANCER-FW'), ['1.2.3.4,tcp:80']);
  assert.deepEqual(setEntries(r, 'KUBE-LOAD-BALANCER-SOURCE-CIDR'), ['1.2.3.4,tcp:80,10.0.0.0/8']);
  assert.deepEqual(setEntries(r, 'KUBE-LOAD-BALANCER-SOURCE-IP'), []);
  assert.deepEqual(chain(r, 'filter', 'KUBE-PROXY-FIREWALL'), ['KUBE-SOURCE-RANGES-FIREWALL KUBE-LOAD-BALANCER-FW']);
  assert.deepEqual(chain(r, 'filter', 'KUBE-SOURCE-RANGES-FIREWALL'), ['RETURN KUBE-LOAD-BALANCER-SOURCE-CIDR', 'DROP']);
  // The node (100.101.102.103) is outside 10.0.0.0/8: its own connections to the LB VIP are dropped (#119656).
  assert.deepEqual(r.filterRules.filter((l) => l.startsWith('-A KUBE-IPVS-OUT-FILTER')), [
    '-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP',
  ]);
  // A range that covers the node IP allows the node instead (KUBE-LOAD-BALANCER-SOURCE-IP).
  const allowed = render(lbWithRanges(['100.101.0.0/16']));
  assert.deepEqual(setEntries(allowed, 'KUBE-LOAD-BALANCER-SOURCE-IP'), ['1.2.3.4,tcp:80,1.2.3.4']);
  assert.deepEqual(chain(allowed, 'filter', 'KUBE-SOURCE-RANGES-FIREWALL'), [
    'RETURN KUBE-LOAD-BALANCER-SOURCE-CIDR',
    'RETURN KUBE-LOAD-BALANCER-SOURCE-IP',
    'DROP',
  ]);
  assert.equal(allowed.filterRules.some((l) => l.startsWith('-A KUBE-IPVS-OUT-FILTER')), false);
});

test('externalIPs: one virtual server per IP of the family, masquerade and accept rules in upstream order (TestExternalIPs, TestAcceptIPVSTraffic)', () => {
  const r = render(
    state(
      [
        svc('ns1', 'svc1', (s) => {
          s.clusterIPs = ['10.20.30.41'];
          s.externalIPs = ['50.60.70.81', '2012::51', '127.0.0.1'];
          s.ports = [port('p80', 'TCP', 80)];
        }),
      ],
      [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
    ),
  );
  assert.deepEqual(
    ipvsLines(r).filter((l) => l.startsWith('-A')),
    ['-A -t 10.20.30.41:80 -s rr', '-A -t 50.60.70.81:80 -s rr', '-A -t 127.0.0.1:80 -s rr'],
  );
  assert.deepEqual(setEntries(r, 'KUBE-EXTERNAL-IP'), ['127.0.0.1,tcp:80', '50.60.70.81,tcp:80']);
  assert.deepEqual(chain(r, 'nat', 'KUBE-SERVICES'), [
    'RETURN -s 127.0.0.0/8',
    'KUBE-MARK-MASQ KUBE-CLUSTER-IP',
    'KUBE-MARK-MASQ KUBE-EXTERNAL-IP',
    'ACCEPT KUBE-EXTERNAL-IP',
    'ACCEPT KUBE-EXTERNAL-IP',
    'KUBE-NODE-PORT',
    'ACCEPT KUBE-CLUSTER-IP',
  ]);
  assert.ok(
    r.natRules.includes(
      '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT',
    ),
  );
  // An external IP that is already a node address is not bound to kube-ipvs0.
  const onNode = render(state([svc('ns1', 's', (s) => { s.clusterIPs = ['10.20.30.41']; s.externalIPs = ['100.101.102.103']; s.ports = [port('p', 'TCP', 80)]; })]));
  assert.deepEqual(onNode.interfaceAddresses, ['10.20.30.41']);
  assert.equal(onNode.virtualServers.find((v) => v.kind === 'ExternalIP')?.bound, false);
});

test('externalIPs with externalTrafficPolicy Local: only the local endpoint, KUBE-EXTERNAL-IP-LOCAL accept rules (TestOnlyLocalExternalIPs)', () => {
  const r = render(
    state(
      [
        svc('ns1', 'svc1', (s) => {
          s.type = 'NodePort';
          s.clusterIPs = ['10.20.30.41'];
          s.externalIPs = ['50.60.70.81'];
          s.ports = [port('p80', 'TCP', 80)];
          s.externalTrafficPolicy = 'Local';
        }),
      ],
      [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1', TEST_NODE), ep('10.180.1.1', 'other-node')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
    ),
  );
  const ext = r.virtualServers.find((v) => v.kind === 'ExternalIP')!;
  assert.deepEqual(ext.realServers.map((x) => x.address), ['10.180.0.1']);
  assert.deepEqual(setEntries(r, 'KUBE-EXTERNAL-IP-LOCAL'), ['50.60.70.81,tcp:80']);
  assert.deepEqual(setEntries(r, 'KUBE-EXTERNAL-IP'), []);
  assert.deepEqual(chain(r, 'nat', 'KUBE-SERVICES').slice(2, 4), ['ACCEPT KUBE-EXTERNAL-IP-LOCAL', 'ACCEPT KUBE-EXTERNAL-IP-LOCAL']);
});

test('session affinity ClientIP: persistent virtual servers with the timeout; mh adds mh-port', () => {
  const st = state(
    [
      svc('ns1', 'svc1', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['10.20.30.41'];
        s.ports = [port('p80', 'TCP', 80, 3001)];
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = 10800;
      }),
    ],
    [slice('ns1', 'svc1', 1, 'IPv4', [ep('10.180.0.1')], [{ name: 'p80', port: 80, protocol: 'TCP' }])],
  );
  const r = render(st);
  assert.deepEqual(
    ipvsLines(r).filter((l) => l.startsWith('-A')),
    ['-A -t 10.20.30.41:80 -s rr -p 10800', '-A -t 100.101.102.103:3001 -s rr -p 10800'],
  );
  const mh = render(st, { scheduler: 'mh' });
  assert.equal(ipvsLines(mh)[0], '-A -t 10.20.30.41:80 -s mh -p 10800 -b mh-port');
});

test('health check node ports only for LoadBalancer services with externalTrafficPolicy Local (TestHealthCheckNodePort)', () => {
  const mk = (name: string, hc: number, local: boolean) =>
    svc('ns1', name, (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['10.20.30.41'];
      s.ports = [port('p80', 'TCP', 80, 3000)];
      s.externalTrafficPolicy = local ? 'Local' : 'Cluster';
      s.healthCheckNodePort = hc;
    });
  const r = render(state([mk('valid-svc1', 30000, true), mk('valid-svc2', 30001, true), mk('invalid-svc3', 30002, false)]), {
    nodePortAddresses: ['100.101.102.0/24'],
  });
  assert.deepEqual(setEntries(r, 'KUBE-HEALTH-CHECK-NODE-PORT'), ['30000', '30001']);
  assert.deepEqual(chain(r, 'filter', 'KUBE-NODE-PORT'), ['ACCEPT KUBE-HEALTH-CHECK-NODE-PORT']);
});

test('nodePortAddresses selects the node IPs NodePort virtual servers are made on, never loopback', () => {
  const r = render(state([nodePortSvc('TCP')]), { nodeIPs: ['100.101.102.103', '192.168.1.5', '127.0.0.1'], nodePortAddresses: ['100.101.102.0/24'] });
  assert.deepEqual(r.nodePortAddresses, ['100.101.102.103']);
  const all = render(state([nodePortSvc('TCP')]), { nodeIPs: ['100.101.102.103', '192.168.1.5', '127.0.0.1'] });
  assert.deepEqual(all.nodePortAddresses, ['100.101.102.103', '192.168.1.5']);
});

test('the ClusterIP masquerade rule follows masquerade-all / cluster CIDR / neither, as upstream', () => {
  const st = state([svc('ns1', 's', (s) => { s.clusterIPs = ['10.20.30.41']; s.ports = [port('p', 'TCP', 80)]; })]);
  const prefix = '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP';
  assert.ok(render(st).natRules.includes(`${prefix} src,dst -j KUBE-MARK-MASQ`));
  assert.ok(render(st, { clusterCIDR: '10.244.0.0/16' }).natRules.includes(`${prefix} dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`));
  assert.ok(render(st, { masqueradeAll: true }).natRules.includes(`${prefix} dst,dst -j KUBE-MARK-MASQ`));
});

test('fixed rules: masquerade mark, KUBE-POSTROUTING, KUBE-FORWARD, KUBE-IPVS-FILTER, chain declarations', () => {
  assert.equal(masqueradeMark(14), '0x004000');
  assert.equal(masqueradeMark(0), '0x000001');
  const r = render(state([]));
  assert.deepEqual(r.natRules, [
    '-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN',
    '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT',
    '-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x004000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000',
  ]);
  assert.deepEqual(r.filterRules, [
    '-A KUBE-SOURCE-RANGES-FIREWALL -j DROP',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x004000/0x004000 -j ACCEPT',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT',
    '-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN',
    '-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN',
    '-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN',
    '-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN',
    '-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN',
    '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT',
  ]);
  assert.ok(r.iptablesRestore.startsWith('*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n'));
  assert.ok(r.iptablesRestore.includes('COMMIT\n*filter\n:KUBE-FORWARD - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SOURCE-RANGES-FIREWALL - [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n:KUBE-IPVS-OUT-FILTER - [0:0]\n'));
  assert.ok(r.iptablesRestore.endsWith('COMMIT\n'));
  assert.equal(r.ipsets.length, 17);
  assert.equal(r.ipsetRestore.split('\n')[0], 'create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536 -exist');
  assert.ok(r.ipsetRestore.includes('create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 -exist'));
  assert.deepEqual(r.jumps[0], { table: 'nat', chain: 'OUTPUT', args: ['-m', 'comment', '--comment', '"kubernetes service portals"', '-j', 'KUBE-SERVICES'] });
});

test('rendering is deterministic: service order in the input does not change the output', () => {
  const a = svc('a', 'one', (s) => { s.clusterIPs = ['10.0.0.1']; s.ports = [port('p', 'TCP', 80)]; });
  const b = svc('b', 'two', (s) => { s.clusterIPs = ['10.0.0.2']; s.ports = [port('p', 'UDP', 53)]; });
  const r1 = render(state([a, b]));
  const r2 = render(state([b, a]));
  assert.equal(r1.ipvsadmRestore, r2.ipvsadmRestore);
  assert.equal(r1.ipsetRestore, r2.ipsetRestore);
  assert.equal(r1.iptablesRestore, r2.iptablesRestore);
});

test('no node IP for a NodePort: upstream skips the NodePort and the health check entry; IPv6 link-local node addresses are not NodePort addresses', () => {
  const lb = svc('ns1', 'lb', (s) => {
    s.type = 'LoadBalancer';
    s.clusterIPs = ['10.20.30.41'];
    s.ports = [port('p80', 'TCP', 80, 3001)];
    s.externalTrafficPolicy = 'Local';
    s.healthCheckNodePort = 30000;
  });
  const r = render(state([lb]), { nodeIPs: [] });
  assert.deepEqual(setEntries(r, 'KUBE-NODE-PORT-TCP'), []);
  assert.deepEqual(setEntries(r, 'KUBE-HEALTH-CHECK-NODE-PORT'), []);
  assert.deepEqual(ipvsLines(r), ['-A -t 10.20.30.41:80 -s rr']);
  const v6 = renderIpvs(
    state([svc('ns1', 'np', (s) => { s.type = 'NodePort'; s.clusterIPs = ['fd00::1']; s.ports = [port('p', 'TCP', 80, 3001)]; })]),
    { family: 'IPv6', nodeName: TEST_NODE, nodeIPs: ['fe80::1', '2001:db8::5'] },
  );
  assert.deepEqual(v6.nodePortAddresses, ['2001:db8::5']);
});
