// The service-port map, endpoints map and endpoint categorization (upstream
// pkg/proxy service.go, endpointslicecache.go, topology.go semantics).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service } from '../../src/k8s/types.js';
import { buildServicePortMap } from '../../src/proxy/service-port.js';
import { buildEndpointsMap, localReadyEndpointCount, type EndpointInfo } from '../../src/proxy/endpoints.js';
import { categorizeEndpoints } from '../../src/proxy/topology.js';
import { ep, makeService, makeSlice, tcpPort } from './iptables-helpers.js';

test('service port map: keys, skipped services, per-family addresses', () => {
  const services = [
    makeService('ns', 'named', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.1', 'fd00::1'];
      s.ipFamilies = ['IPv4', 'IPv6'];
      s.externalIPs = ['192.168.99.1', '2001:db8::99'];
      s.loadBalancerIngress = [{ ip: '1.2.3.4' }, { ip: '5.6.7.8', ipMode: 'Proxy' }, { hostname: 'lb.example.com' }, { ip: '2001:db8::4' }];
      s.loadBalancerSourceRanges = [' 203.0.113.0/25', '2001:db8:f::/48'];
      s.externalTrafficPolicy = 'Local';
      s.healthCheckNodePort = 31000;
      s.sessionAffinity = 'ClientIP';
      s.sessionAffinityTimeoutSeconds = 600;
      s.ports = [tcpPort('http', 80, 30080), { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 30053 }];
    }),
    makeService('ns', 'unnamed', (s) => {
      s.clusterIPs = ['172.30.0.2'];
      s.ports = [tcpPort('', 80)];
    }),
    makeService('ns', 'headless', (s) => {
      s.headless = true;
      s.ports = [tcpPort('', 80)];
    }),
    makeService('ns', 'ext', (s) => {
      s.type = 'ExternalName';
    }),
    makeService('ns', 'noip', (s) => {
      s.ports = [tcpPort('', 80)];
    }),
    makeService('ns', 'labelled', (s) => {
      s.meta.labels['service.kubernetes.io/service-proxy-name'] = 'other';
      s.clusterIPs = ['172.30.0.3'];
      s.ports = [tcpPort('', 80)];
    }),
  ];
  const v4 = buildServicePortMap(services, 'IPv4');
  assert.deepEqual([...v4.keys()], ['ns/named:dns', 'ns/named:http', 'ns/unnamed']);
  const http = v4.get('ns/named:http')!;
  assert.equal(http.clusterIP, '172.30.0.1');
  assert.deepEqual(http.externalIPs, ['192.168.99.1']);
  assert.deepEqual(http.loadBalancerVIPs, ['1.2.3.4'], 'ipMode Proxy and hostname-only ingress are skipped');
  assert.deepEqual(http.loadBalancerSourceRanges, ['203.0.113.0/25']);
  assert.equal(http.healthCheckNodePort, 31000);
  assert.equal(http.stickyMaxAgeSeconds, 600);
  assert.equal(http.externalPolicyLocal, true);
  assert.equal(http.externallyAccessible(), true);
  assert.equal(http.usesClusterEndpoints(), true);
  assert.equal(http.usesLocalEndpoints(), true);
  const v6 = buildServicePortMap(services, 'IPv6');
  assert.deepEqual([...v6.keys()], ['ns/named:dns', 'ns/named:http']);
  assert.equal(v6.get('ns/named:http')!.clusterIP, 'fd00::1');
  assert.deepEqual(v6.get('ns/named:http')!.loadBalancerVIPs, ['2001:db8::4']);
  const un = v4.get('ns/unnamed')!;
  assert.equal(un.externallyAccessible(), false);
  assert.equal(un.usesLocalEndpoints(), false);
  assert.equal(un.healthCheckNodePort, 0);
});

test('service port map: eTP Local counts only for externally-accessible types; iTP Local', () => {
  const [cip] = buildServicePortMap(
    [
      makeService('ns', 'a', (s) => {
        s.clusterIPs = ['172.30.0.1'];
        s.externalTrafficPolicy = 'Local';
        s.internalTrafficPolicy = 'Local';
        s.healthCheckNodePort = 30000;
        s.ports = [tcpPort('', 80)];
      }),
    ],
    'IPv4',
  ).values();
  assert.equal(cip!.externalPolicyLocal, false);
  assert.equal(cip!.healthCheckNodePort, 0, 'only LoadBalancer + eTP Local needs a health check');
  assert.equal(cip!.internalPolicyLocal, true);
  assert.equal(cip!.usesClusterEndpoints(), false);
  assert.equal(cip!.usesLocalEndpoints(), true);
});

const svcs = () =>
  buildServicePortMap(
    [
      makeService('ns', 'svc', (s) => {
        s.clusterIPs = ['172.30.0.1'];
        s.ports = [tcpPort('http', 80), { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }];
      }),
    ],
    'IPv4',
  );

test('endpoints map: merge slices, match name+protocol, dedupe preferring local, sort by "ip:port"', () => {
  const slices = [
    makeSlice('ns', 'svc', 2, [ep('10.1.1.1'), ep('10.1.1.11', { nodeName: 'other' })], [{ name: 'http', port: 8080 }]),
    makeSlice('ns', 'svc', 1, [ep('10.1.1.1', { nodeName: 'me' }), ep('10.1.1.2')], [
      { name: 'http', port: 8080 },
      { name: 'dns', port: 53, protocol: 'TCP' },
      { name: 'nullport', port: null },
    ]),
    makeSlice('ns', 'svc', 3, [ep('fd00::1')], [{ name: 'http', port: 8080 }], 'IPv6'),
    makeSlice('other', 'svc', 1, [ep('10.9.9.9')], [{ name: 'http', port: 8080 }]),
  ];
  const m = buildEndpointsMap(slices, svcs(), 'IPv4', 'me');
  assert.deepEqual([...m.keys()], ['ns/svc:http'], 'dns has a TCP slice port but a UDP service port; other/svc has no service');
  const eps = m.get('ns/svc:http')!;
  assert.deepEqual(eps.map((e) => e.endpoint), ['10.1.1.11:8080', '10.1.1.1:8080', '10.1.1.2:8080']);
  assert.equal(eps.find((e) => e.ip === '10.1.1.1')!.isLocal, true, 'a local duplicate wins');
  assert.equal(localReadyEndpointCount(eps), 1);
  // Copies within and across slices: the last local copy wins, else the first copy.
  const copies = [
    makeSlice('ns', 'svc', 1, [ep('10.2.0.1', { nodeName: 'a' }), ep('10.2.0.2', { nodeName: 'me', zone: 'z1' }), ep('10.2.0.1', { nodeName: 'b' })], [{ name: 'http', port: 8080 }]),
    makeSlice('ns', 'svc', 2, [ep('10.2.0.2', { nodeName: 'x' }), ep('10.2.0.1', { nodeName: 'me' }), ep('10.2.0.2', { nodeName: 'me', zone: 'z2' })], [{ name: 'http', port: 8080 }]),
    makeSlice('ns', 'svc', 3, [ep('10.2.0.3', { nodeName: 'c' }), ep('10.2.0.3', { nodeName: 'd' })], [{ name: 'http', port: 8080 }]),
  ];
  const merged = buildEndpointsMap(copies, svcs(), 'IPv4', 'me').get('ns/svc:http')!;
  assert.deepEqual(merged.map((e) => `${e.endpoint} ${e.nodeName} ${e.zone ?? ''}`), ['10.2.0.1:8080 me ', '10.2.0.2:8080 me z2', '10.2.0.3:8080 c ']);
  const m6 = buildEndpointsMap(slices, buildServicePortMap([makeService('ns', 'svc', (s) => { s.clusterIPs = ['fd00::a']; s.ports = [tcpPort('http', 80)]; })], 'IPv6'), 'IPv6', 'me');
  assert.deepEqual(m6.get('ns/svc:http')!.map((e) => e.endpoint), ['[fd00::1]:8080']);
});

function E(endpoint: string, o: Partial<EndpointInfo> = {}): EndpointInfo {
  const [ip, port] = endpoint.split(':');
  return {
    ip: ip!,
    port: Number(port),
    endpoint,
    ready: true,
    serving: true,
    terminating: false,
    isLocal: false,
    zoneHints: new Set(),
    nodeHints: new Set(),
    ...o,
  };
}

const port = (f: (s: Service) => void) =>
  [...buildServicePortMap([makeService('ns', 'svc', (s) => { s.clusterIPs = ['172.30.0.1']; s.ports = [tcpPort('', 80, 0)]; f(s); })], 'IPv4').values()][0]!;

test('categorize: cluster ready, falling back to serving+terminating', () => {
  const svc = port(() => {});
  let r = categorizeEndpoints([E('10.0.0.1:80'), E('10.0.0.2:80', { ready: false, serving: true, terminating: true })], svc, 'me', {});
  assert.deepEqual(r.clusterEndpoints.map((e) => e.ip), ['10.0.0.1']);
  assert.equal(r.hasAnyEndpoints, true);
  assert.equal(r.allReachableEndpoints, r.clusterEndpoints);
  r = categorizeEndpoints([E('10.0.0.2:80', { ready: false, serving: true, terminating: true }), E('10.0.0.3:80', { ready: false, serving: false, terminating: true })], svc, 'me', {});
  assert.deepEqual(r.clusterEndpoints.map((e) => e.ip), ['10.0.0.2']);
  r = categorizeEndpoints([E('10.0.0.3:80', { ready: false, serving: false, terminating: true })], svc, 'me', {});
  assert.equal(r.hasAnyEndpoints, false);
  assert.deepEqual(categorizeEndpoints([], svc, 'me', {}).allReachableEndpoints, []);
});

test('categorize: local sets for iTP Local and eTP Local, merged reachable set', () => {
  const itp = port((s) => (s.internalTrafficPolicy = 'Local'));
  const eps = [E('10.0.0.1:80', { isLocal: true }), E('10.0.0.2:80')];
  let r = categorizeEndpoints(eps, itp, 'me', {});
  assert.deepEqual(r.clusterEndpoints, []);
  assert.deepEqual(r.localEndpoints.map((e) => e.ip), ['10.0.0.1']);
  assert.deepEqual(r.allReachableEndpoints.map((e) => e.ip), ['10.0.0.1']);
  const etp = port((s) => {
    s.type = 'NodePort';
    s.ports = [tcpPort('', 80, 30000)];
    s.externalTrafficPolicy = 'Local';
  });
  // Only a terminating local endpoint: local uses it, cluster uses the ready remote one; reachable = both.
  r = categorizeEndpoints([E('10.0.0.1:80', { isLocal: true, ready: false, serving: true, terminating: true }), E('10.0.0.2:80')], etp, 'me', {});
  assert.deepEqual(r.localEndpoints.map((e) => e.ip), ['10.0.0.1']);
  assert.deepEqual(r.clusterEndpoints.map((e) => e.ip), ['10.0.0.2']);
  assert.deepEqual(r.allReachableEndpoints.map((e) => e.ip), ['10.0.0.1', '10.0.0.2']);
});

test('categorize: topology hints (zone, node) and when they are ignored', () => {
  const svc = port((s) => (s.trafficDistribution = 'PreferClose'));
  const zone = { 'topology.kubernetes.io/zone': 'a' };
  const eps = [E('10.0.0.1:80', { zoneHints: new Set(['a']) }), E('10.0.0.2:80', { zoneHints: new Set(['b']) })];
  assert.deepEqual(categorizeEndpoints(eps, svc, 'me', zone).clusterEndpoints.map((e) => e.ip), ['10.0.0.1']);
  assert.deepEqual(categorizeEndpoints(eps, svc, 'me', { 'topology.kubernetes.io/zone': 'c' }).clusterEndpoints.length, 2, 'no hint for our zone');
  const partial = [E('10.0.0.1:80', { zoneHints: new Set(['a']) }), E('10.0.0.2:80')];
  assert.equal(categorizeEndpoints(partial, svc, 'me', zone).clusterEndpoints.length, 2, 'a ready endpoint without hints disables hints');
  const nodeHinted = [
    E('10.0.0.1:80', { zoneHints: new Set(['a']), nodeHints: new Set(['n1']) }),
    E('10.0.0.2:80', { zoneHints: new Set(['a']), nodeHints: new Set(['me']) }),
  ];
  assert.deepEqual(categorizeEndpoints(nodeHinted, svc, 'me', zone).clusterEndpoints.map((e) => e.ip), ['10.0.0.2']);
  assert.equal(categorizeEndpoints(nodeHinted, svc, 'me', zone, { preferSameNode: false }).clusterEndpoints.length, 2);
  // With topology in effect and eTP Local, the reachable set is the union (sorted).
  const etp = port((s) => {
    s.type = 'NodePort';
    s.ports = [tcpPort('', 80, 30000)];
    s.externalTrafficPolicy = 'Local';
  });
  const mixed = [E('10.0.0.1:80', { zoneHints: new Set(['b']), isLocal: true }), E('10.0.0.2:80', { zoneHints: new Set(['a']) })];
  const r = categorizeEndpoints(mixed, etp, 'me', zone);
  assert.deepEqual(r.clusterEndpoints.map((e) => e.ip), ['10.0.0.2']);
  assert.deepEqual(r.allReachableEndpoints.map((e) => e.ip), ['10.0.0.1', '10.0.0.2']);
});
