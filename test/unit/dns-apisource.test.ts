// The API-server path: an ApiSource configured as `kproxy dns` configures it
// (every Service and EndpointSlice, headless ones included) against the fake
// list/watch server; names follow watch events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer } from '../support/k8s-fake-apiserver.js';
import { ApiSource } from '../../src/k8s/api-source.js';
import { startDnsServer } from '../../src/dns/server.js';
import { query } from '../../src/dns/client.js';
import { waitFor } from '../../src/lab/netns.js';
import { logger } from '../../src/util/log.js';

const quiet = logger({ test: 'dns-apisource' });

function service(name: string, clusterIP: string, labels: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'default', name, labels, resourceVersion: '1', uid: `uid-${name}` },
    spec: { clusterIP, clusterIPs: clusterIP === 'None' ? undefined : [clusterIP], selector: { app: name }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
  };
}

test('kproxy dns over the API: ClusterIP and headless services (slices labelled headless) are served, changes follow', async () => {
  const api = new FakeApiServer();
  await api.start();
  api.apply('services', service('web', '10.96.0.50'));
  api.apply('services', service('db', 'None', { 'service.kubernetes.io/headless': '' }));
  api.apply('endpointslices', {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'default', name: 'db-abc', labels: { 'kubernetes.io/service-name': 'db', 'service.kubernetes.io/headless': '' }, resourceVersion: '1' },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.10'], hostname: 'db-0', conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  } as never);
  const source = new ApiSource({ kubeconfig: api.writeKubeconfig(), nodeName: 'n1', labelSelector: '', logger: quiet, events: false });
  const dns = await startDnsServer(source, { listen: ['127.0.0.1:0'], noForward: true });
  try {
    const port = dns.addresses().udp[0]!.port;
    const at = { host: '127.0.0.1', port };
    assert.equal((await query(at, 'web.default.svc.cluster.local')).rcode, 'SERVFAIL', 'before the first sync');
    await source.start();
    const a = (name: string) => query(at, name).then((r) => r.answers.map((x) => (x as { data: string }).data));
    assert.deepEqual(await a('web.default.svc.cluster.local'), ['10.96.0.50']);
    assert.deepEqual(await a('db.default.svc.cluster.local'), ['10.244.1.10']);
    assert.deepEqual(await a('db-0.db.default.svc.cluster.local'), ['10.244.1.10']);
    api.apply('services', service('late', '10.96.0.51'));
    await waitFor('late service in DNS', async () => (await a('late.default.svc.cluster.local')).length === 1, 5000, 50);
  } finally {
    await dns.close();
    await source.stop();
    await api.stop();
  }
});
