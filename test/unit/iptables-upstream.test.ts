// Upstream pkg/proxy/iptables/proxier_test.go scenarios, re-expressed: same
// services and slices, same fake-proxier settings, expected payloads kept as
// fixtures and compared after the canonical sort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ep,
  expected,
  fakeProxierOptions,
  makeService,
  makeSlice,
  renderCanonical,
  state,
  tcpPort,
  testNodeName,
} from './iptables-helpers.js';

const p80 = [{ name: 'p80', port: 80 }];

test('TestOverallIPTablesRules', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('p80', 80)];
      }),
      makeService('ns2', 'svc2', (s) => {
        s.type = 'LoadBalancer';
        s.externalTrafficPolicy = 'Local';
        s.clusterIPs = ['172.30.0.42'];
        s.ports = [tcpPort('p80', 80, 3001)];
        s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
        s.externalIPs = ['192.168.99.22'];
        s.healthCheckNodePort = 30000;
      }),
      makeService('ns3', 'svc3', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['172.30.0.43'];
        s.ports = [tcpPort('p80', 80, 3003)];
      }),
      makeService('ns4', 'svc4', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['172.30.0.44'];
        s.externalIPs = ['192.168.99.33'];
        s.ports = [tcpPort('p80', 80)];
      }),
      makeService('ns5', 'svc5', (s) => {
        s.type = 'LoadBalancer';
        s.clusterIPs = ['172.30.0.45'];
        s.ports = [tcpPort('p80', 80, 3002)];
        s.loadBalancerIngress = [{ ip: '5.6.7.8' }];
        s.healthCheckNodePort = 30000;
        s.loadBalancerSourceRanges = [' 203.0.113.0/25'];
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = 10800;
      }),
      makeService('ns6', 'svc6', (s) => {
        s.clusterIPs = ['172.30.0.46'];
        s.ports = [tcpPort('p80', 80)];
      }),
    ],
    [
      makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], p80),
      makeSlice('ns2', 'svc2', 1, [ep('10.180.0.2')], p80),
      makeSlice('ns3', 'svc3', 1, [ep('10.180.0.3')], p80),
      makeSlice('ns4', 'svc4', 1, [ep('10.180.0.4'), ep('10.180.0.5', { nodeName: testNodeName })], p80),
      makeSlice('ns5', 'svc5', 1, [ep('10.180.0.3')], p80),
    ],
  );
  assert.equal(renderCanonical(st, fakeProxierOptions()), expected('overall.txt'));
});
