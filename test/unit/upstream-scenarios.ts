// Cluster states from upstream's proxier_test.go that more than one test file
// checks: iptables-upstream-flows.test.ts with upstream's own packet-flow
// checker, netfilter-render-roundtrip.test.ts through kproxy's tracer. Not a
// test file itself.
import type { ClusterState, Service } from '../../src/k8s/types.js';
import { ep, makeService, makeSlice, state, tcpPort, testNodeName } from './iptables-helpers.js';

export const testExternalClient = '203.0.113.2';
export const testExternalClientBlocked = '203.0.113.130';
export const p80 = [{ name: 'p80', port: 80 }];

/** TestNoEndpointsReject: a LoadBalancer with an external IP and no endpoints. */
export function noEndpointsState(): ClusterState {
  return state([
    makeService('ns1', 'svc1', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.41'];
      s.externalIPs = ['192.168.99.11'];
      s.ports = [tcpPort('p80', 80, 3001)];
      s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
    }),
  ]);
}

/** TestLoadBalancer: two ingress IPs, source ranges (one with a stray space), one endpoint. */
export function loadBalancerState(): ClusterState {
  return state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.type = 'LoadBalancer';
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('p80', 80, 3001)];
        s.loadBalancerIngress = [{ ip: '1.2.3.4' }, { ip: '5.6.7.8' }];
        s.loadBalancerSourceRanges = ['192.168.0.0/24', ' 203.0.113.0/25'];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], p80)],
  );
}

/** The LoadBalancer of TestExternalTrafficPolicyLocal / …Cluster. */
export function etpService(policy: 'Local' | 'Cluster'): Service {
  return makeService('ns1', 'svc1', (s) => {
    s.type = 'LoadBalancer';
    s.externalTrafficPolicy = policy;
    s.clusterIPs = ['172.30.0.41'];
    s.externalIPs = ['192.168.99.11'];
    s.ports = [tcpPort('p80', 80, 3001)];
    if (policy === 'Local') s.healthCheckNodePort = 30000;
    s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
  });
}

/** TestExternalTrafficPolicyLocal: one remote and one local endpoint. */
export function etpLocalState(): ClusterState {
  return state([etpService('Local')], [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1'), ep('10.180.2.1', { nodeName: testNodeName })], p80)]);
}
