import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidPortName, isDNS1123Label, isDNS1123Subdomain, isQualifiedName, parseObject } from '../../src/k8s/validate.js';
import { formatWarning, type EndpointSlice, type InputWarning, type Node, type Pod, type Service } from '../../src/k8s/types.js';

const origin = { source: 'svc.yaml', document: 2 };

function service(spec: Record<string, unknown>, meta: Record<string, unknown> = { name: 'svc1', namespace: 'ns1' }, extra: Record<string, unknown> = {}) {
  return { apiVersion: 'v1', kind: 'Service', metadata: meta, spec, ...extra };
}

function ok<T>(raw: unknown): { obj: T; warnings: InputWarning[] } {
  const r = parseObject(raw, origin);
  assert.ok(r.object, `expected an object, got warnings: ${r.warnings.map(formatWarning).join('; ')}`);
  return { obj: r.object as T, warnings: r.warnings };
}

function rejected(raw: unknown, field: string, re: RegExp): InputWarning {
  const r = parseObject(raw, origin);
  assert.equal(r.object, undefined, 'object must be skipped');
  const w = r.warnings.find((x) => x.field === field);
  assert.ok(w, `no warning for ${field}: ${JSON.stringify(r.warnings)}`);
  assert.match(w.message, re);
  assert.match(w.message, /skipped$/);
  assert.equal(w.source, 'svc.yaml');
  assert.equal(w.document, 2);
  return w;
}

test('name rules: DNS-1123 label/subdomain, IANA_SVC_NAME, qualified names', () => {
  assert.ok(isDNS1123Label('a-1'));
  assert.ok(!isDNS1123Label('A'));
  assert.ok(!isDNS1123Label('a.b'));
  assert.ok(!isDNS1123Label('-a'));
  assert.ok(!isDNS1123Label('a'.repeat(64)));
  assert.ok(isDNS1123Subdomain('node-1.example.com'));
  assert.ok(!isDNS1123Subdomain('node_1'));
  assert.ok(isValidPortName('http'));
  assert.ok(isValidPortName('h2c-8080'));
  for (const bad of ['8080', 'HTTP', 'a--b', '-a', 'a-', 'abcdefghijklmnop', 'a_b', ''])
    assert.ok(!isValidPortName(bad), bad);
  assert.ok(isQualifiedName('kubernetes.io/service-name'));
  assert.ok(isQualifiedName('app'));
  assert.ok(!isQualifiedName('a/b/c'));
  assert.ok(!isQualifiedName('Bad_Prefix/x'));
});

test('Service defaults: type, traffic policies, affinity, protocol, targetPort, ipFamilies from clusterIPs', () => {
  const { obj, warnings } = ok<Service>(service({ clusterIP: '172.30.0.41', ports: [{ port: 80 }], selector: { app: 'web' } }));
  assert.deepEqual(warnings, []);
  assert.equal(obj.type, 'ClusterIP');
  assert.deepEqual(obj.clusterIPs, ['172.30.0.41']);
  assert.deepEqual(obj.ipFamilies, ['IPv4']);
  assert.equal(obj.headless, false);
  assert.deepEqual(obj.ports, [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }]);
  assert.equal(obj.externalTrafficPolicy, 'Cluster');
  assert.equal(obj.internalTrafficPolicy, 'Cluster');
  assert.equal(obj.sessionAffinity, 'None');
  assert.equal(obj.sessionAffinityTimeoutSeconds, 10800);
  assert.deepEqual(obj.selector, { app: 'web' });
  assert.equal(obj.publishNotReadyAddresses, false);
  assert.deepEqual(obj.meta, { namespace: 'ns1', name: 'svc1', labels: {}, annotations: {}, deleting: false });
});

test('Service without namespace lands in "default"; empty selector means no selector', () => {
  const { obj } = ok<Service>(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }], selector: {} }, { name: 'x' }));
  assert.equal(obj.meta.namespace, 'default');
  assert.equal(obj.selector, undefined);
});

test('TestBadIPs normalization: leading zeros, masked CIDRs, trimmed source ranges', () => {
  const { obj, warnings } = ok<Service>(
    service(
      {
        type: 'LoadBalancer',
        clusterIP: '172.30.0.041',
        externalIPs: ['192.168.099.11'],
        loadBalancerSourceRanges: [' 203.0.113.000/025', '203.0.113.0/25 '],
        ports: [{ name: 'p80', port: 80, nodePort: 3001 }],
      },
      undefined,
      { status: { loadBalancer: { ingress: [{ ip: '1.2.3.004' }] } } },
    ),
  );
  assert.deepEqual(obj.clusterIPs, ['172.30.0.41']);
  assert.deepEqual(obj.externalIPs, ['192.168.99.11']);
  assert.deepEqual(obj.loadBalancerSourceRanges, ['203.0.113.0/25'], 'normalized and de-duplicated');
  assert.deepEqual(obj.loadBalancerIngress, [{ ip: '1.2.3.4' }]);
  // 3001 is outside the default node-port range: kept, with a warning.
  assert.equal(obj.ports[0]!.nodePort, 3001);
  assert.deepEqual(warnings.map((w) => w.field), ['spec.ports[0].nodePort']);
});

test('IPv6 and dual-stack: RFC 5952 forms, families from clusterIPs', () => {
  const { obj } = ok<Service>(service({ clusterIPs: ['fd00:10:96:0:0:0:0:1', '10.96.0.001'], clusterIP: 'fd00:10:96:0:0:0:0:1', ipFamilies: ['IPv6', 'IPv4'], ports: [{ port: 53, protocol: 'UDP', name: 'dns' }] }));
  assert.deepEqual(obj.clusterIPs, ['fd00:10:96::1', '10.96.0.1']);
  assert.deepEqual(obj.ipFamilies, ['IPv6', 'IPv4']);
  rejected(service({ clusterIPs: ['10.0.0.1', '10.0.0.2'], ports: [{ port: 1 }] }), 'spec.clusterIPs', /different IP families/);
  rejected(service({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.2'], ports: [{ port: 1 }] }), 'spec.clusterIPs[0]', /must equal spec.clusterIP/);
});

test('an invalid clusterIP makes the Service unusable: skipped, warning names file, document, kind, object, field', () => {
  for (const bad of ['172.30.0.256', '1.2.3', 'abc', '10.0.0.1/24', 'fe80::1%eth0']) {
    const w = rejected(service({ clusterIP: bad, ports: [{ port: 80 }] }), 'spec.clusterIP', /is not a valid IP address/);
    assert.equal(w.kind, 'Service');
    assert.equal(w.object, 'ns1/svc1');
    assert.match(formatWarning(w), /^svc\.yaml#2: Service ns1\/svc1: spec\.clusterIP: /);
  }
  rejected(service({ clusterIPs: ['10.0.0.1', 'nope'], ports: [{ port: 80 }] }), 'spec.clusterIPs[1]', /not a valid IP/);
});

test('invalid externalIPs, LB ingress IPs and source ranges are dropped one by one; the Service is kept', () => {
  const { obj, warnings } = ok<Service>(
    service(
      {
        type: 'LoadBalancer',
        clusterIP: '172.30.0.42',
        externalIPs: ['192.168.99.11', 'not-an-ip', '192.168.99.300'],
        loadBalancerSourceRanges: ['203.0.113.0/25', '203.0.113.0/33', 'garbage', '10.0.0.1'],
        ports: [{ name: 'p80', port: 80, nodePort: 30080 }],
      },
      undefined,
      { status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }, { ip: '5.6.7' }, { hostname: 'lb.example.com' }, { ip: '9.10.11.12', ipMode: 'Proxy' }] } } },
    ),
  );
  assert.deepEqual(obj.externalIPs, ['192.168.99.11']);
  assert.deepEqual(obj.loadBalancerSourceRanges, ['203.0.113.0/25']);
  assert.deepEqual(obj.loadBalancerIngress, [{ ip: '1.2.3.4' }, { hostname: 'lb.example.com' }, { ip: '9.10.11.12', ipMode: 'Proxy' }]);
  assert.deepEqual(
    warnings.map((w) => w.field),
    [
      'spec.externalIPs[1]',
      'spec.externalIPs[2]',
      'spec.loadBalancerSourceRanges[1]',
      'spec.loadBalancerSourceRanges[2]',
      'spec.loadBalancerSourceRanges[3]',
      'status.loadBalancer.ingress[1].ip',
    ],
  );
  assert.ok(warnings.every((w) => /entry dropped$/.test(w.message)));
});

test('entries of a family the Service does not have are dropped (upstream keeps them per family only)', () => {
  const { obj, warnings } = ok<Service>(
    service(
      { type: 'LoadBalancer', clusterIP: '10.0.0.1', externalIPs: ['192.168.99.11', '2001:db8::11'], loadBalancerSourceRanges: ['fd00::/64', '203.0.113.0/25'], ports: [{ port: 80, nodePort: 30001 }] },
      undefined,
      { status: { loadBalancer: { ingress: [{ ip: '2001:db8::5' }, { ip: '2001:db8::6', ipMode: 'Proxy' }] } } },
    ),
  );
  assert.deepEqual(obj.externalIPs, ['192.168.99.11']);
  assert.deepEqual(obj.loadBalancerSourceRanges, ['203.0.113.0/25']);
  assert.deepEqual(obj.loadBalancerIngress, [{ ip: '2001:db8::6', ipMode: 'Proxy' }], 'Proxy-mode ingress is exempt');
  assert.equal(warnings.filter((w) => /IP families/.test(w.message)).length, 3);
});

test('ports: range, protocol, names, duplicates, targetPort forms', () => {
  rejected(service({ clusterIP: '10.0.0.1' }), 'spec.ports', /is required/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [] }), 'spec.ports', /is required/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 0 }] }), 'spec.ports[0].port', /between 1 and 65535/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 70000 }] }), 'spec.ports[0].port', /between 1 and 65535/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: '80' }] }), 'spec.ports[0].port', /must be an integer/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{}] }), 'spec.ports[0].port', /is required/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, protocol: 'HTTP' }] }), 'spec.ports[0].protocol', /TCP, UDP or SCTP/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }, { port: 81, name: 'b' }] }), 'spec.ports[0].name', /more than one port/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, name: 'a' }, { port: 81, name: 'a' }] }), 'spec.ports[1].name', /duplicate/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, name: 'Http_1' }] }), 'spec.ports[0].name', /IANA_SVC_NAME/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, targetPort: '8080' }] }), 'spec.ports[0].targetPort', /neither a port number nor a valid port name/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, targetPort: 65536 }] }), 'spec.ports[0].targetPort', /between 1 and 65535/);
  rejected(service({ type: 'NodePort', clusterIP: '10.0.0.1', ports: [{ port: 80, nodePort: 70000 }] }), 'spec.ports[0].nodePort', /between 1 and 65535/);
  const { obj } = ok<Service>(
    service({ clusterIP: '10.0.0.1', ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns-udp' }, { name: 'sctp', port: 9, protocol: 'SCTP', targetPort: 99, appProtocol: 'kubernetes.io/h2c' }] }),
  );
  assert.deepEqual(obj.ports, [
    { name: 'dns', protocol: 'UDP', port: 53, targetPort: 'dns-udp', nodePort: 0 },
    { name: 'sctp', protocol: 'SCTP', port: 9, targetPort: 99, nodePort: 0, appProtocol: 'kubernetes.io/h2c' },
  ]);
  // nodePort on a ClusterIP service: ignored with a warning (the API server would refuse it).
  const np = ok<Service>(service({ clusterIP: '10.0.0.1', ports: [{ port: 80, nodePort: 30001 }] }));
  assert.equal(np.obj.ports[0]!.nodePort, 0);
  assert.match(np.warnings[0]!.message, /may not be used when type is ClusterIP/);
});

test('type, traffic policies, affinity and health check node port', () => {
  rejected(service({ type: 'Magic', clusterIP: '10.0.0.1', ports: [{ port: 80 }] }), 'spec.type', /must be one of/);
  rejected(service({ clusterIP: '10.0.0.1', externalTrafficPolicy: 'Global', ports: [{ port: 80 }] }), 'spec.externalTrafficPolicy', /Cluster or Local/);
  rejected(service({ clusterIP: '10.0.0.1', sessionAffinity: 'Cookie', ports: [{ port: 80 }] }), 'spec.sessionAffinity', /None or ClientIP/);
  rejected(
    service({ clusterIP: '10.0.0.1', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } }, ports: [{ port: 80 }] }),
    'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
    /between 1 and 86400/,
  );
  const { obj } = ok<Service>(
    service({
      type: 'LoadBalancer',
      clusterIP: '10.0.0.1',
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Local',
      healthCheckNodePort: 30000,
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 10 } },
      trafficDistribution: 'PreferClose',
      publishNotReadyAddresses: true,
      ports: [{ port: 80, nodePort: 30080 }],
    }),
  );
  assert.equal(obj.externalTrafficPolicy, 'Local');
  assert.equal(obj.internalTrafficPolicy, 'Local');
  assert.equal(obj.healthCheckNodePort, 30000);
  assert.equal(obj.sessionAffinity, 'ClientIP');
  assert.equal(obj.sessionAffinityTimeoutSeconds, 10);
  assert.equal(obj.trafficDistribution, 'PreferClose');
  assert.equal(obj.publishNotReadyAddresses, true);
});

test('headless and ExternalName services', () => {
  const h = ok<Service>(service({ clusterIP: 'None', ipFamilies: ['IPv6'], selector: { a: 'b' } }));
  assert.equal(h.obj.headless, true);
  assert.deepEqual(h.obj.clusterIPs, []);
  assert.deepEqual(h.obj.ipFamilies, ['IPv6']);
  assert.deepEqual(h.warnings, [], 'a headless service needs no ports');
  const e = ok<Service>(service({ type: 'ExternalName', externalName: 'db.example.com.' }));
  assert.equal(e.obj.externalName, 'db.example.com.');
  assert.deepEqual(e.obj.clusterIPs, []);
  rejected(service({ type: 'ExternalName', externalName: 'bad name"' }), 'spec.externalName', /not a valid DNS name/);
  rejected(service({ type: 'ExternalName' }), 'spec.externalName', /is required/);
});

test('names: nothing with quotes, newlines, control characters or upper case gets through', () => {
  const evil = ['a"b', 'web\n-A KUBE-SERVICES -j ACCEPT', 'Web', 'a b', 'x\u0000', 'a'.repeat(64), '', 'a.b'];
  for (const name of evil) {
    const r = parseObject(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name, namespace: 'default' }), origin);
    assert.equal(r.object, undefined, JSON.stringify(name));
    for (const w of r.warnings) {
      const line = formatWarning(w);
      assert.ok(!/[\n\r\u0000]/.test(line), `raw control char in: ${JSON.stringify(line)}`);
      if (name.includes('"')) assert.ok(!line.includes('a"b'), 'quote escaped');
    }
  }
  // Namespace must be a DNS label too; EndpointSlice/Pod/Node names are subdomains.
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 'ok', namespace: 'Bad_NS' }), 'metadata.namespace', /DNS-1123 label/);
  const w = rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 'a"b\nc' }), 'metadata.name', /not a valid name/);
  assert.equal(w.object, 'default/"a\\"b\\nc"');
  assert.ok(ok<Pod>({ kind: 'Pod', apiVersion: 'v1', metadata: { name: 'web-1.x' }, spec: {} }).obj);
  rejected({ kind: 'Service', metadata: {}, spec: {} }, 'metadata.name', /is required/);
  rejected({ kind: 'Service', metadata: { name: 7 }, spec: {} }, 'metadata.name', /must be a string/);
});

test('labels and annotations: keys and values as the API server checks them', () => {
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 's', labels: { version: 1 } }), 'metadata.labels["version"]', /must be a string/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 's', labels: { app: 'has space' } }), 'metadata.labels["app"]', /not a valid label value/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 's', labels: { 'a/b/c': 'x' } }), 'metadata.labels["a/b/c"]', /label key/);
  rejected(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }], selector: { app: 'a"b' } }), 'spec.selector["app"]', /label value/);
  const { obj } = ok<Service>(service({ clusterIP: '10.0.0.1', ports: [{ port: 80 }] }, { name: 's', labels: { 'app.kubernetes.io/name': 'web' }, annotations: { note: 'any "text"\nhere' }, deletionTimestamp: '2024-01-01T00:00:00Z', uid: 'u1' }));
  assert.deepEqual(obj.meta.labels, { 'app.kubernetes.io/name': 'web' });
  assert.equal(obj.meta.annotations.note, 'any "text"\nhere', 'annotation values are free text (never written into rules)');
  assert.equal(obj.meta.deleting, true);
  assert.equal(obj.meta.uid, 'u1');
});

test('unknown kinds, bad apiVersions and non-objects: warnings, never a crash', () => {
  const d = parseObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'prod' } }, origin);
  assert.equal(d.kind, 'Deployment');
  assert.equal(d.object, undefined);
  assert.equal(d.warnings.length, 1);
  assert.equal(d.warnings[0]!.object, 'prod/web');
  assert.match(d.warnings[0]!.message, /not used by kproxy/);
  const v = parseObject({ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 'x' } }, origin);
  assert.equal(v.object, undefined);
  assert.equal(v.warnings[0]!.field, 'apiVersion');
  for (const raw of [null, 42, 'text', [1, 2], {}, { kind: 'a b' }, { kind: 7 }]) {
    const r = parseObject(raw, origin);
    assert.equal(r.object, undefined);
    assert.equal(r.warnings.length, 1, JSON.stringify(raw));
    assert.ok(!/[\n]/.test(formatWarning(r.warnings[0]!)));
  }
  // Items of an API list have no apiVersion: accepted.
  assert.ok(parseObject({ kind: 'Node', metadata: { name: 'n1' } }, origin).object);
  // Wrongly typed fields are reported, not thrown.
  for (const spec of [{ ports: 'x' }, { ports: [7] }, { selector: [] }, { externalIPs: 'x' }, { clusterIP: 5 }]) {
    const r = parseObject(service(spec), origin);
    assert.ok(r.warnings.length > 0, JSON.stringify(spec));
  }
  assert.equal(parseObject(service('x' as unknown as Record<string, unknown>), origin).object, undefined);
});

test('EndpointSlice: conditions as the endpointslice cache reads them, addresses normalized and checked', () => {
  const raw = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'svc1-abc', namespace: 'ns1', labels: { 'kubernetes.io/service-name': 'svc1' } },
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['10.180.0.001'], nodeName: 'node-1', zone: 'z1', hostname: 'h1', hints: { forZones: [{ name: 'z1' }] }, targetRef: { kind: 'Pod', namespace: 'ns1', name: 'p1' } },
      { addresses: ['10.180.0.2'], conditions: { ready: false } },
      { addresses: ['10.180.0.3'], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ['fd00::1'] },
      { addresses: ['10.180.0.999'] },
      { addresses: [] },
      { addresses: ['10.180.0.4'], hostname: 'Bad Host' },
    ],
    ports: [{ name: 'p80', port: 80 }, { name: 'all', port: null, protocol: 'UDP' }],
  };
  const { obj, warnings } = ok<EndpointSlice>(raw);
  assert.equal(obj.serviceName, 'svc1');
  assert.deepEqual(
    obj.endpoints.map((e) => [e.addresses[0], e.conditions.ready, e.conditions.serving, e.conditions.terminating]),
    [
      ['10.180.0.1', true, true, false],
      ['10.180.0.2', false, false, false],
      ['10.180.0.3', false, true, true],
      ['10.180.0.4', true, true, false],
    ],
  );
  assert.deepEqual(obj.endpoints[0], {
    addresses: ['10.180.0.1'],
    conditions: { ready: true, serving: true, terminating: false },
    hostname: 'h1',
    nodeName: 'node-1',
    zone: 'z1',
    hints: { forZones: ['z1'], forNodes: [] },
    targetRef: { kind: 'Pod', namespace: 'ns1', name: 'p1' },
  });
  assert.equal(obj.endpoints[3]!.hostname, undefined);
  assert.deepEqual(obj.ports, [
    { name: 'p80', port: 80, protocol: 'TCP' },
    { name: 'all', port: null, protocol: 'UDP' },
  ]);
  assert.deepEqual(warnings.map((w) => w.field), ['endpoints[3].addresses[0]', 'endpoints[4].addresses[0]', 'endpoints[5].addresses', 'endpoints[6].hostname']);
  rejected({ ...raw, metadata: { name: 'x', namespace: 'ns1' } }, 'metadata.labels["kubernetes.io/service-name"]', /is required/);
  rejected({ ...raw, addressType: 'IP' }, 'addressType', /IPv4, IPv6 or FQDN/);
  rejected({ ...raw, ports: [{ name: 'P_80', port: 80 }] }, 'ports[0].name', /DNS-1123 label/);
  rejected({ ...raw, ports: [{ port: 0 }] }, 'ports[0].port', /between 1 and 65535/);
  const v6 = ok<EndpointSlice>({ ...raw, addressType: 'IPv6', endpoints: [{ addresses: ['FD00:0:0:0:0:0:0:0001'] }] });
  assert.deepEqual(v6.obj.endpoints[0]!.addresses, ['fd00::1']);
});

test('Node: addresses normalized, pod CIDRs masked, bad entries dropped', () => {
  const { obj, warnings } = ok<Node>({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'z1' } },
    spec: { podCIDR: '10.244.1.7/24', taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }] },
    status: {
      addresses: [
        { type: 'InternalIP', address: '192.168.000.2' },
        { type: 'InternalIP', address: 'fd00:0::2' },
        { type: 'Hostname', address: 'node-1' },
        { type: 'ExternalIP', address: 'x.y' },
      ],
    },
  });
  assert.deepEqual(obj.addresses, [
    { type: 'InternalIP', address: '192.168.0.2' },
    { type: 'InternalIP', address: 'fd00::2' },
    { type: 'Hostname', address: 'node-1' },
  ]);
  assert.deepEqual(obj.podCIDRs, ['10.244.1.0/24']);
  assert.equal(obj.taints.length, 1);
  assert.equal(obj.meta.namespace, '');
  assert.deepEqual(warnings.map((w) => w.field), ['status.addresses[3].address']);
});

test('Pod: IPs, readiness, ports of containers and sidecars, deletion, hostname/subdomain', () => {
  const { obj } = ok<Pod>({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', namespace: 'ns1', labels: { app: 'web' }, deletionTimestamp: '2024-01-01T00:00:00Z' },
    spec: {
      nodeName: 'node-1',
      hostname: 'web-1',
      subdomain: 'web',
      dnsPolicy: 'ClusterFirst',
      containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 53, protocol: 'UDP' }] }],
      initContainers: [
        { name: 'init', ports: [{ name: 'ignored', containerPort: 1 }] },
        { name: 'sidecar', restartPolicy: 'Always', ports: [{ name: 'metrics', containerPort: 9090 }] },
      ],
    },
    status: { phase: 'Running', podIP: '10.244.1.005', podIPs: [{ ip: '10.244.1.005' }, { ip: 'fd00:10:244:1::5' }], conditions: [{ type: 'Ready', status: 'True' }] },
  });
  assert.deepEqual(obj.podIPs, ['10.244.1.5', 'fd00:10:244:1::5']);
  assert.equal(obj.ready, true);
  assert.equal(obj.meta.deleting, true);
  assert.equal(obj.phase, 'Running');
  assert.equal(obj.hostname, 'web-1');
  assert.equal(obj.subdomain, 'web');
  assert.deepEqual(obj.containerPorts, [
    { name: 'http', containerPort: 8080, protocol: 'TCP' },
    { containerPort: 53, protocol: 'UDP' },
    { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
  ]);
  const notReady = ok<Pod>({ kind: 'Pod', metadata: { name: 'p' }, status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] } });
  assert.equal(notReady.obj.ready, false);
  rejected({ kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ ports: [{ containerPort: 0 }] }] } }, 'spec.containers[0].ports[0].containerPort', /between 1 and 65535/);
  rejected({ kind: 'Pod', metadata: { name: 'p' }, spec: { hostname: 'Bad_Host' } }, 'spec.hostname', /DNS-1123 label/);
});
