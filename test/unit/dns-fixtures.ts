// A hand-built ClusterState for the DNS tests: the seeds' services
// (kubernetes, kube-dns, tiller-deploy) plus one of each DNS shape.
import { EventEmitter } from 'node:events';
import type { ClusterSource, SourceEvents } from '../../src/k8s/source.js';
import type { ClusterState, Endpoint, EndpointSlice, Pod, Service, ServicePort } from '../../src/k8s/types.js';
import { makeService } from '../../src/k8s/build.js';

import { objectMeta as meta } from '../../src/k8s/build.js';
export { meta };

export function svc(namespace: string, name: string, over: Partial<Service> = {}): Service {
  return makeService(namespace, name, { ipFamilies: ['IPv4'], selector: { app: name }, ...over });
}

export function port(name: string, p: number, protocol: 'TCP' | 'UDP' = 'TCP'): ServicePort {
  return { name, protocol, port: p, targetPort: p, nodePort: 0 };
}

export function ep(ip: string, over: Partial<Endpoint> = {}): Endpoint {
  return { addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, ...over };
}

export function slice(
  namespace: string,
  service: string,
  endpoints: Endpoint[],
  ports: { name: string; port: number; protocol?: 'TCP' | 'UDP' }[],
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
  suffix = 'abc',
): EndpointSlice {
  return {
    meta: meta(namespace, `${service}-${suffix}`, { 'kubernetes.io/service-name': service }),
    serviceName: service,
    addressType,
    endpoints,
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
  };
}

export function pod(namespace: string, name: string, ip: string, over: Partial<Pod> = {}): Pod {
  return {
    meta: meta(namespace, name),
    hostNetwork: false,
    podIPs: [ip],
    ready: true,
    containerPorts: [],
    ...over,
  };
}

/** The number of endpoints of default/big: enough that its A answer exceeds 512 bytes. */
export const BIG = 60;

export function clusterState(): ClusterState {
  const bigEndpoints: Endpoint[] = [];
  for (let i = 0; i < BIG; i++) bigEndpoints.push(ep(`10.244.9.${i + 1}`));
  return {
    services: [
      svc('default', 'kubernetes', { clusterIPs: ['10.96.0.1'], ports: [port('https', 443)], selector: undefined }),
      svc('kube-system', 'kube-dns', {
        clusterIPs: ['10.96.0.10'],
        ports: [port('dns', 53, 'UDP'), port('dns-tcp', 53), port('metrics', 9153)],
      }),
      svc('kube-system', 'tiller-deploy', { clusterIPs: ['10.108.160.127'], ports: [port('tiller', 44134)] }),
      svc('default', 'web', {
        clusterIPs: ['10.96.100.10', 'fd00:10:96::100a'],
        ipFamilies: ['IPv4', 'IPv6'],
        ports: [port('http', 80)],
      }),
      svc('default', 'db', { headless: true, ports: [port('mysql', 3306)] }),
      svc('default', 'unnamed', { clusterIPs: ['10.96.100.20'], ports: [port('', 8080)] }),
      svc('default', 'empty', { headless: true, ports: [port('http', 80)] }),
      svc('default', 'pnr', { headless: true, ports: [port('http', 80)], publishNotReadyAddresses: true }),
      svc('default', 'big', { headless: true, ports: [port('http', 80)] }),
      svc('default', 'ext', { type: 'ExternalName', externalName: 'www.example.test', ipFamilies: [], selector: undefined }),
      svc('default', 'alias', {
        type: 'ExternalName',
        externalName: 'kubernetes.default.svc.cluster.local',
        ipFamilies: [],
        selector: undefined,
      }),
    ],
    endpointSlices: [
      slice('default', 'kubernetes', [ep('192.168.1.11')], [{ name: 'https', port: 6443 }]),
      slice('default', 'web', [ep('10.244.1.5'), ep('10.244.2.6'), ep('10.244.3.7', { conditions: { ready: false, serving: false, terminating: false } })], [{ name: 'http', port: 8080 }]),
      slice('default', 'db', [ep('10.244.1.10', { hostname: 'db-0' }), ep('10.244.2.11', { hostname: 'db-1' })], [{ name: 'mysql', port: 3306 }]),
      slice('default', 'db', [ep('fd00:244::b')], [{ name: 'mysql', port: 3306 }], 'IPv6', 'v6'),
      slice('default', 'pnr', [ep('10.244.4.4', { conditions: { ready: false, serving: false, terminating: false } })], [{ name: 'http', port: 80 }]),
      slice('default', 'big', bigEndpoints, [{ name: 'http', port: 80 }]),
    ],
    nodes: [],
    pods: [
      pod('default', 'web-1', '10.244.1.5'),
      pod('default', 'db-0', '10.244.1.10', { hostname: 'db-0', subdomain: 'db' }),
      pod('apps', 'tool', '10.244.5.5'),
    ],
  };
}

/** A ClusterSource driven by the test: emit(state) is a sync or a change. */
export class FakeSource extends EventEmitter<SourceEvents> implements ClusterSource {
  private state: ClusterState = { services: [], endpointSlices: [], nodes: [], pods: [] };
  synced = false;
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  current(): ClusterState {
    return this.state;
  }
  emitState(state: ClusterState): void {
    this.state = state;
    this.synced = true;
    this.emit('change', state);
  }
}
