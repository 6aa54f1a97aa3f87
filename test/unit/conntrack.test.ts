// Which UDP flows the stale-conntrack cleanup deletes, from the cluster state alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadManifestText } from '../../src/k8s/load.js';
import { staleFilters, udpServing } from '../../src/dataplane/conntrack.js';

const yaml = (name: string, ip: string, proto: string, nodePort: number, eps: string[]): string => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: default}
spec:
  type: NodePort
  clusterIP: ${ip}
  ports: [{port: 53, protocol: ${proto}, targetPort: 5353, nodePort: ${nodePort}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-a, namespace: default, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{port: 5353, protocol: ${proto}}]
endpoints: [${eps.map((e) => `{addresses: [${e}], conditions: {ready: true}}`).join(', ')}]
---
`;

test('udpServing maps only UDP services, to their serving endpoints', () => {
  const { state, warnings } = loadManifestText(
    yaml('dns', '10.96.0.10', 'UDP', 30053, ['10.244.1.2', '10.244.2.2']) + yaml('web', '10.96.0.20', 'TCP', 30080, ['10.244.1.9']) + yaml('other', '10.96.0.30', 'UDP', 30054, []),
    'test.yaml',
  );
  assert.deepEqual(warnings, []);
  const s = udpServing(state, 'IPv4', 'n1');
  assert.deepEqual([...s.byAddr.keys()].sort(), ['10.96.0.10|53', '10.96.0.30|53']);
  assert.deepEqual([...s.byAddr.get('10.96.0.10|53')!].sort(), ['10.244.1.2', '10.244.2.2']);
  assert.equal(s.byAddr.get('10.96.0.30|53')!.size, 0);
  assert.deepEqual([...s.byNodePort.keys()].sort(), [30053, 30054]);
  // A flow to the DNS service answered by a pod that is gone is stale; one to the TCP service's address is not ours to judge.
  const flows = [
    { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.9.9' },
    { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.2' },
    { origDst: '10.96.0.20', origDport: 53, replySrc: '10.244.9.9' },
    { origDst: '192.168.1.1', origDport: 30053, replySrc: '10.244.9.9' },
  ].map((f) => ({ ...f, origSrc: '10.244.1.5', origSport: 40000 }));
  assert.deepEqual(staleFilters(flows, s), [
    { dst: '10.96.0.10', dport: 53, replySrc: '10.244.9.9' },
    { dport: 30053, replySrc: '10.244.9.9' },
  ]);
});

test('a cluster without UDP services needs no conntrack work', () => {
  const { state } = loadManifestText(yaml('web', '10.96.0.20', 'TCP', 30080, ['10.244.1.9']), 'test.yaml');
  const s = udpServing(state, 'IPv4', 'n1');
  assert.equal(s.byAddr.size + s.byNodePort.size, 0);
});
