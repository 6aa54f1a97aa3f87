// What the health-check node port server needs after a sync: the
// healthCheckNodePort of every eTP=Local LoadBalancer service, and its local
// ready endpoint count. Kept per service, so a partial sync recomputes only
// the services that changed (looked up in the snapshot's index) instead of
// rebuilding the service-port and endpoints maps of the whole cluster.
import type { ClusterState, IPFamily } from '../k8s/types.js';
import { serviceObjects } from '../k8s/state-index.js';
import { buildEndpointsMap, localReadyEndpointCount } from './endpoints.js';
import { buildServicePortMap, servicePortsOf } from './service-port.js';

export class HealthCheckPorts {
  /** ns/name → healthCheckNodePort. */
  readonly ports = new Map<string, number>();
  /** ns/name → local ready endpoints (of its last port, last family: as upstream's map is filled). */
  readonly counts = new Map<string, number>();

  constructor(
    private readonly families: IPFamily[],
    private readonly nodeName: string,
  ) {}

  /** Recomputes every service (full syncs). */
  full(state: ClusterState): void {
    this.ports.clear();
    this.counts.clear();
    for (const f of this.families) {
      const spm = buildServicePortMap(state.services, f);
      const eps = buildEndpointsMap(state.endpointSlices, spm, f, this.nodeName);
      for (const [key, sp] of spm) {
        if (!sp.healthCheckNodePort) continue;
        const nsn = `${sp.namespace}/${sp.name}`;
        this.ports.set(nsn, sp.healthCheckNodePort);
        this.counts.set(nsn, localReadyEndpointCount(eps.get(key)));
      }
    }
  }

  /** Recomputes the services named (ns/name) from their own objects only. */
  update(state: ClusterState, services: Iterable<string>): void {
    for (const nsn of services) {
      this.ports.delete(nsn);
      this.counts.delete(nsn);
      const { service, slices } = serviceObjects(state, nsn);
      if (!service) continue;
      for (const f of this.families) {
        const ports = servicePortsOf(service, f).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
        if (!ports.some((sp) => sp.healthCheckNodePort)) continue;
        const spm = new Map(ports.map((sp) => [sp.key, sp]));
        const eps = buildEndpointsMap(slices, spm, f, this.nodeName);
        for (const [key, sp] of spm) {
          if (!sp.healthCheckNodePort) continue;
          this.ports.set(nsn, sp.healthCheckNodePort);
          this.counts.set(nsn, localReadyEndpointCount(eps.get(key)));
        }
      }
    }
  }
}
