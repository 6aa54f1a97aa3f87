import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endpointSlicesFromPods, sliceName, addressTypesForService, MAX_ENDPOINTS_PER_SLICE } from '../../src/k8s/endpoints-from-pods.js';
import { loadManifestText } from '../../src/k8s/load.js';
import { isDNS1123Subdomain } from '../../src/k8s/validate.js';
import type { ClusterState, EndpointSlice } from '../../src/k8s/types.js';

interface PodOpts {
  name: string;
  labels?: Record<string, string>;
  ns?: string;
  ips?: string[];
  ready?: boolean;
  deleting?: boolean;
  node?: string;
  phase?: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  hostname?: string;
  subdomain?: string;
  hostNetwork?: boolean;
}

function pod(o: PodOpts) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: o.ns ?? 'default', labels: o.labels ?? { app: 'web' }, ...(o.deleting ? { deletionTimestamp: '2024-01-01T00:00:00Z' } : {}) },
    spec: {
      nodeName: o.node ?? 'node-1',
      hostNetwork: o.hostNetwork ?? false,
      hostname: o.hostname,
      subdomain: o.subdomain,
      containers: [{ name: 'c', ports: o.ports ?? [] }],
    },
    status: {
      phase: o.phase ?? 'Running',
      podIPs: (o.ips ?? []).map((ip) => ({ ip })),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  };
}

function svc(name: string, spec: Record<string, unknown>, ns = 'default', meta: Record<string, unknown> = {}) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, ...meta }, spec: { selector: { app: 'web' }, ...spec } };
}

function state(objs: unknown[]): { state: ClusterState; slices: EndpointSlice[] } {
  const { state, warnings } = loadManifestText(objs.map((o) => JSON.stringify(o)).join('\n---\n'), 'test.yaml');
  assert.deepEqual(warnings, []);
  return { state, slices: state.endpointSlices };
}

const eps = (s: EndpointSlice) => s.endpoints.map((e) => ({ ip: e.addresses.join(','), ...e.conditions }));

test('selector match in the same namespace, Ready → ready, slice metadata like the controller', () => {
  const { slices } = state([
    svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, 'default', { labels: { tier: 'front' } }),
    pod({ name: 'web-2', ips: ['10.244.2.2'], node: 'node-2' }),
    pod({ name: 'web-1', ips: ['10.244.1.1'] }),
    pod({ name: 'other', labels: { app: 'db' }, ips: ['10.244.1.9'] }),
    pod({ name: 'elsewhere', ns: 'other-ns', ips: ['10.244.1.8'] }),
    pod({ name: 'partial', labels: { app: 'web', extra: 'x' }, ips: ['10.244.1.7'] }),
  ]);
  assert.equal(slices.length, 1);
  const s = slices[0]!;
  assert.equal(s.serviceName, 'web');
  assert.equal(s.addressType, 'IPv4');
  assert.match(s.meta.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  assert.deepEqual(s.meta.labels, {
    tier: 'front',
    'kubernetes.io/service-name': 'web',
    'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
  });
  assert.deepEqual(s.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  assert.deepEqual(s.endpoints.map((e) => e.targetRef?.name), ['partial', 'web-1', 'web-2'], 'a superset of the selector matches; sorted by pod name');
  assert.deepEqual(s.endpoints[1], {
    addresses: ['10.244.1.1'],
    conditions: { ready: true, serving: true, terminating: false },
    targetRef: { kind: 'Pod', namespace: 'default', name: 'web-1' },
    nodeName: 'node-1',
  });
});

test('not ready, terminating, publishNotReadyAddresses, terminal phases, no IP', () => {
  const pods = [
    pod({ name: 'a-ready', ips: ['10.0.0.1'] }),
    pod({ name: 'b-notready', ips: ['10.0.0.2'], ready: false }),
    pod({ name: 'c-terminating', ips: ['10.0.0.3'], deleting: true }),
    pod({ name: 'd-terminating-notready', ips: ['10.0.0.4'], deleting: true, ready: false }),
    pod({ name: 'e-succeeded', ips: ['10.0.0.5'], phase: 'Succeeded' }),
    pod({ name: 'f-failed', ips: ['10.0.0.6'], phase: 'Failed' }),
    pod({ name: 'g-pending', ips: [] }),
  ];
  const normal = state([svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), ...pods]).slices;
  assert.deepEqual(eps(normal[0]!), [
    { ip: '10.0.0.1', ready: true, serving: true, terminating: false },
    { ip: '10.0.0.2', ready: false, serving: false, terminating: false },
    { ip: '10.0.0.3', ready: false, serving: true, terminating: true },
    { ip: '10.0.0.4', ready: false, serving: false, terminating: true },
  ]);
  const pna = state([svc('web', { clusterIP: '10.96.0.10', publishNotReadyAddresses: true, ports: [{ port: 80 }] }), ...pods]).slices;
  assert.deepEqual(eps(pna[0]!), [
    { ip: '10.0.0.1', ready: true, serving: true, terminating: false },
    { ip: '10.0.0.2', ready: true, serving: false, terminating: false },
    { ip: '10.0.0.3', ready: true, serving: true, terminating: true },
    { ip: '10.0.0.4', ready: true, serving: false, terminating: true },
  ]);
});

test('named targetPorts resolve per pod (with the protocol); pods are grouped into slices by resolved port set', () => {
  const { slices } = state([
    svc('web', {
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'http', port: 80, targetPort: 'http' },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' },
      ],
    }),
    pod({ name: 'v1-a', ips: ['10.0.0.1'], ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 5353, protocol: 'UDP' }] }),
    pod({ name: 'v1-b', ips: ['10.0.0.2'], ports: [{ name: 'dns', containerPort: 5353, protocol: 'UDP' }, { name: 'http', containerPort: 8080 }] }),
    pod({ name: 'v2', ips: ['10.0.0.3'], ports: [{ name: 'http', containerPort: 9090 }, { name: 'dns', containerPort: 5353, protocol: 'UDP' }] }),
    // "dns" exists only as TCP here: no UDP match, so this pod's slice has only the http port.
    pod({ name: 'tcp-dns', ips: ['10.0.0.4'], ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 5353, protocol: 'TCP' }] }),
    pod({ name: 'no-ports', ips: ['10.0.0.5'] }),
  ]);
  const byIPs = new Map(slices.map((s) => [s.endpoints.map((e) => e.addresses[0]).join(','), s.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(' ')]));
  assert.deepEqual(
    Object.fromEntries(byIPs),
    {
      '10.0.0.1,10.0.0.2': 'http:8080/TCP dns:5353/UDP',
      '10.0.0.3': 'http:9090/TCP dns:5353/UDP',
      '10.0.0.4': 'http:8080/TCP',
      '10.0.0.5': '',
    },
  );
  assert.equal(new Set(slices.map((s) => s.meta.name)).size, 4, 'distinct names');
});

test('zones from the Node label; hostnames when subdomain == service; hostNetwork pods use their (node) IP', () => {
  const { slices } = state([
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'zone-a' } } },
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-2' } },
    svc('web', { clusterIP: 'None', ipFamilies: ['IPv4'], ports: [{ port: 80 }] }),
    pod({ name: 'p1', ips: ['10.0.0.1'], node: 'node-1', hostname: 'p1', subdomain: 'web' }),
    pod({ name: 'p2', ips: ['10.0.0.2'], node: 'node-2', hostname: 'p2', subdomain: 'other' }),
    pod({ name: 'p3', ips: ['192.168.0.3'], node: 'node-3', hostNetwork: true }),
  ]);
  const e = slices[0]!.endpoints;
  assert.equal(e[0]!.zone, 'zone-a');
  assert.equal(e[0]!.hostname, 'p1');
  assert.equal(e[1]!.zone, undefined);
  assert.equal(e[1]!.hostname, undefined);
  assert.deepEqual(e[2]!.addresses, ['192.168.0.3']);
  assert.equal(e[2]!.nodeName, 'node-3', 'a pod on a node absent from the input is kept (see docs/manifests.md)');
  assert.equal(slices[0]!.meta.labels['service.kubernetes.io/headless'], '');
});

test('one slice per address family the service uses', () => {
  const pods = [pod({ name: 'p1', ips: ['10.0.0.1', 'fd00::1'] }), pod({ name: 'p2', ips: ['10.0.0.2'] })];
  const dual = state([svc('web', { clusterIPs: ['10.96.0.10', 'fd00:96::10'], clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), ...pods]).slices;
  assert.deepEqual(
    dual.map((s) => [s.addressType, s.endpoints.map((e) => e.addresses[0])]),
    [
      ['IPv4', ['10.0.0.1', '10.0.0.2']],
      ['IPv6', ['fd00::1']],
    ],
  );
  assert.notEqual(dual[0]!.meta.name, dual[1]!.meta.name);
  const v6 = state([svc('web', { clusterIP: 'fd00:96::10', ports: [{ port: 80 }] }), ...pods]).slices;
  assert.deepEqual(v6.map((s) => s.addressType), ['IPv6']);
  // Headless without ipFamilies: the controller assumes both families.
  const headless = state([svc('web', { clusterIP: 'None', ports: [{ port: 80 }] }), ...pods]).slices;
  assert.deepEqual(headless.map((s) => s.addressType), ['IPv4', 'IPv6']);
});

test('placeholder slice when nothing matches; ExternalName and selector-less services get none', () => {
  const { slices } = state([
    svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }),
    svc('ext', { type: 'ExternalName', externalName: 'x.example.com' }),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'manual' }, spec: { clusterIP: '10.96.0.11', ports: [{ port: 80 }] } },
    pod({ name: 'db', labels: { app: 'db' }, ips: ['10.0.0.9'] }),
  ]);
  assert.deepEqual(slices.map((s) => [s.serviceName, s.endpoints.length, s.ports.length]), [['web', 0, 0]]);
});

test('trafficDistribution PreferClose gives ready endpoints a hint for their zone; PreferSameNode adds the node', () => {
  const nodes = [{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'z1' } } }];
  const pods = [pod({ name: 'p1', ips: ['10.0.0.1'] }), pod({ name: 'p2', ips: ['10.0.0.2'], ready: false })];
  const close = state([...nodes, svc('web', { clusterIP: '10.96.0.10', trafficDistribution: 'PreferClose', ports: [{ port: 80 }] }), ...pods]).slices[0]!;
  assert.deepEqual(close.endpoints.map((e) => e.hints), [{ forZones: ['z1'], forNodes: [] }, undefined]);
  const node = state([...nodes, svc('web', { clusterIP: '10.96.0.10', trafficDistribution: 'PreferSameNode', ports: [{ port: 80 }] }), ...pods]).slices[0]!;
  assert.deepEqual(node.endpoints[0]!.hints, { forZones: ['z1'], forNodes: ['node-1'] });
  const none = state([...nodes, svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), ...pods]).slices[0]!;
  assert.equal(none.endpoints[0]!.hints, undefined);
});

test('at most 100 endpoints per slice', () => {
  const pods = Array.from({ length: 250 }, (_, i) => pod({ name: `p${String(i).padStart(3, '0')}`, ips: [`10.1.${i >> 8}.${i & 255}`] }));
  const { slices } = state([svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), ...pods]);
  assert.deepEqual(slices.map((s) => s.endpoints.length), [MAX_ENDPOINTS_PER_SLICE, MAX_ENDPOINTS_PER_SLICE, 50]);
  assert.equal(new Set(slices.map((s) => s.meta.name)).size, 3);
});

test('deterministic, valid names; endpointSlicesFromPods leaves services with slices alone', () => {
  assert.equal(sliceName('web', 'x'), sliceName('web', 'x'));
  assert.notEqual(sliceName('web', 'x'), sliceName('web', 'y'));
  assert.ok(isDNS1123Subdomain(sliceName('a'.repeat(63), 'x')));
  const { state: st } = state([svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), pod({ name: 'p', ips: ['10.0.0.1'] })]);
  assert.equal(endpointSlicesFromPods(st).length, 0, 'web already has its derived slice in the state');
  assert.deepEqual(addressTypesForService({ ...st.services[0]!, ipFamilies: [], clusterIPs: [] }), ['IPv4', 'IPv6']);
});
