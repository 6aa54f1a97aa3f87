// The userspace portals (upstream's KUBE-PORTALS-*/KUBE-NODEPORT-* rules) and
// the cluster-state → service-port adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderPortals, jumpRules } from '../../src/dataplane/userspace/portals.js';
import { servicePortsFromState, type UsServicePort } from '../../src/dataplane/userspace/model.js';
import { parsePortRange } from '../../src/dataplane/userspace/index.js';
import type { ClusterState, EndpointSlice, Service } from '../../src/k8s/types.js';

const web: UsServicePort = {
  key: 'default/web:http',
  protocol: 'TCP',
  clusterIP: '10.96.0.10',
  port: 80,
  nodePort: 30080,
  externalIPs: ['203.0.113.7'],
  loadBalancerIPs: [],
  sessionAffinity: 'None',
  stickyMaxAgeSeconds: 10800,
  endpoints: [],
};
const dns: UsServicePort = { ...web, key: 'kube-system/kube-dns:dns', protocol: 'UDP', port: 53, nodePort: 0, externalIPs: [] };

test('portals: REDIRECT from pods, DNAT to the node IP from the node, NodePorts last', () => {
  const text = renderPortals([{ sp: web, proxyPort: 40001 }, { sp: dns, proxyPort: 40002 }], { listenIP: '0.0.0.0', hostIP: '192.168.1.10' });
  assert.equal(
    text,
    [
      '*nat',
      ':KUBE-PORTALS-CONTAINER - [0:0]',
      ':KUBE-PORTALS-HOST - [0:0]',
      ':KUBE-NODEPORT-CONTAINER - [0:0]',
      ':KUBE-NODEPORT-HOST - [0:0]',
      '-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment --comment default/web:http -m tcp --dport 80 -j REDIRECT --to-ports 40001',
      '-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment --comment default/web:http -m tcp --dport 80 -j DNAT --to-destination 192.168.1.10:40001',
      '-A KUBE-PORTALS-CONTAINER -d 203.0.113.7/32 -p tcp -m comment --comment default/web:http -m tcp --dport 80 -j REDIRECT --to-ports 40001',
      '-A KUBE-PORTALS-CONTAINER -d 203.0.113.7/32 -p tcp -m addrtype --dst-type LOCAL -m comment --comment default/web:http -m tcp --dport 80 -j REDIRECT --to-ports 40001',
      '-A KUBE-PORTALS-HOST -d 203.0.113.7/32 -p tcp -m addrtype --dst-type LOCAL -m comment --comment default/web:http -m tcp --dport 80 -j DNAT --to-destination 192.168.1.10:40001',
      '-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment default/web:http -m tcp --dport 30080 -j REDIRECT --to-ports 40001',
      '-A KUBE-NODEPORT-HOST -p tcp -m comment --comment default/web:http -m tcp --dport 30080 -j DNAT --to-destination 192.168.1.10:40001',
      '-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment --comment kube-system/kube-dns:dns -m udp --dport 53 -j REDIRECT --to-ports 40002',
      '-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p udp -m comment --comment kube-system/kube-dns:dns -m udp --dport 53 -j DNAT --to-destination 192.168.1.10:40002',
      'COMMIT',
      '*filter',
      ':KUBE-NODEPORT-NON-LOCAL - [0:0]',
      '-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment default/web:http -m tcp --dport 40001 -m state --state NEW -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n'),
  );
  // Bound to one address: DNAT to it from pods too.
  const bound = renderPortals([{ sp: dns, proxyPort: 40002 }], { listenIP: '192.168.1.10', hostIP: '192.168.1.10' });
  assert.match(bound, /-A KUBE-PORTALS-CONTAINER .* --dport 53 -j DNAT --to-destination 192\.168\.1\.10:40002/);
});

test('portals: jump rules as upstream iptablesInit (portals first, NodePorts appended)', () => {
  assert.deepEqual(
    jumpRules.map((j) => `${j.table} ${j.chain} ${j.position} ${j.args.at(-1)}`),
    [
      'nat PREROUTING prepend KUBE-PORTALS-CONTAINER',
      'nat OUTPUT prepend KUBE-PORTALS-HOST',
      'nat PREROUTING append KUBE-NODEPORT-CONTAINER',
      'nat OUTPUT append KUBE-NODEPORT-HOST',
      'filter INPUT prepend KUBE-NODEPORT-NON-LOCAL',
    ],
  );
});

test('--proxy-port-range parsing', () => {
  assert.deepEqual(parsePortRange('30000-30009'), { from: 30000, to: 30009 });
  assert.deepEqual(parsePortRange('30000+10'), { from: 30000, to: 30009 });
  assert.equal(parsePortRange(''), undefined);
  assert.throws(() => parsePortRange('abc'), /--proxy-port-range: "abc" is not "from-to" or "from\+count"/);
  assert.throws(() => parsePortRange('90000-90001'), /not a valid port range/);
});

function meta(ns: string, name: string, labels: Record<string, string> = {}) {
  return { namespace: ns, name, labels, annotations: {}, deleting: false };
}

test('service ports from cluster state: ready endpoints, serving-terminating fallback, SCTP skipped', () => {
  const svc = (name: string, protocol: 'TCP' | 'UDP' | 'SCTP', extra: Partial<Service> = {}): Service => ({
    meta: meta('default', name),
    type: 'NodePort',
    clusterIPs: ['10.96.0.' + (name.length + 10)],
    headless: false,
    ipFamilies: ['IPv4'],
    ports: [{ name: 'p', protocol, port: 80, targetPort: 8080, nodePort: 30001 }],
    externalIPs: [],
    loadBalancerSourceRanges: [],
    loadBalancerIngress: [],
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    healthCheckNodePort: 0,
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 0,
    publishNotReadyAddresses: false,
    ...extra,
  });
  const slice = (svcName: string, eps: [string, boolean, boolean, boolean][], protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP'): EndpointSlice => ({
    meta: meta('default', `${svcName}-abc`, { 'kubernetes.io/service-name': svcName }),
    serviceName: svcName,
    addressType: 'IPv4',
    ports: [{ name: 'p', port: 8080, protocol }],
    endpoints: eps.map(([ip, ready, serving, terminating]) => ({ addresses: [ip], conditions: { ready, serving, terminating } })),
  });
  const state: ClusterState = {
    services: [
      svc('web', 'TCP', { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 }),
      svc('old', 'TCP'),
      svc('sctp', 'SCTP'),
    ],
    endpointSlices: [
      slice('web', [['10.244.1.5', true, true, false], ['10.244.1.4', true, true, false], ['10.244.1.6', false, false, false]]),
      slice('old', [['10.244.2.1', false, true, true], ['10.244.2.2', false, false, true]]),
      slice('sctp', [['10.244.3.1', true, true, false]], 'SCTP'),
    ],
    nodes: [],
    pods: [],
  };
  const ports = servicePortsFromState(state, 'node-a');
  assert.deepEqual(
    ports.map((p) => [p.key, p.protocol, p.nodePort, p.sessionAffinity, p.stickyMaxAgeSeconds, p.endpoints.map((e) => `${e.ip}:${e.port}`)]),
    [
      ['default/old:p', 'TCP', 30001, 'None', 10800, ['10.244.2.1:8080']],
      ['default/web:p', 'TCP', 30001, 'ClientIP', 60, ['10.244.1.4:8080', '10.244.1.5:8080']],
    ],
  );
});
