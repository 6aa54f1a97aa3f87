// Building normalized objects in code (tests, benchmarks, embedding): the
// defaults the API server and validate.ts give an object nobody configured.
import type { ObjectMeta, Service } from './types.js';

export function objectMeta(namespace: string, name: string, labels: Record<string, string> = {}): ObjectMeta {
  return { namespace, name, labels, annotations: {}, deleting: false };
}

/** A ClusterIP Service with every field at its default; `over` replaces fields. */
export function makeService(namespace: string, name: string, over: Partial<Service> = {}): Service {
  return {
    meta: objectMeta(namespace, name),
    type: 'ClusterIP',
    clusterIPs: [],
    headless: false,
    ipFamilies: [],
    ports: [],
    selector: {},
    externalIPs: [],
    loadBalancerSourceRanges: [],
    loadBalancerIngress: [],
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    healthCheckNodePort: 0,
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 10800,
    publishNotReadyAddresses: false,
    ...over,
  };
}
