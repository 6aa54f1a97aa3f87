// What the userspace proxier needs to know about one service port, and how it
// is derived from cluster state with the shared proxy helpers (the same
// service-port map, endpoints map and endpoint categorization every mode uses).
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import { buildEndpointsMap } from '../../proxy/endpoints.js';
import { buildServicePortMap } from '../../proxy/service-port.js';
import { categorizeEndpoints } from '../../proxy/topology.js';

export interface UsEndpoint {
  ip: string;
  port: number;
  /** Scheduler weight; endpoints have 1 (kube-proxy's ipvs mode also gives every real server weight 1). */
  weight: number;
}

export interface UsServicePort {
  /** ServicePortName.String(): "ns/name" or "ns/name:port". */
  key: string;
  protocol: 'TCP' | 'UDP';
  clusterIP: string;
  port: number;
  /** 0 when none. */
  nodePort: number;
  externalIPs: string[];
  loadBalancerIPs: string[];
  sessionAffinity: 'None' | 'ClientIP';
  /** Affinity timeout (upstream default 10800). */
  stickyMaxAgeSeconds: number;
  /** The endpoints new connections may go to, in "ip:port" order. */
  endpoints: UsEndpoint[];
}

/**
 * The service ports this node proxies, from a cluster snapshot. SCTP is
 * skipped (the userspace proxy never supported it). Which endpoints a port
 * uses follows upstream's CategorizeEndpoints: ready ones, else serving and
 * terminating ones; internalTrafficPolicy Local restricts them to this node.
 * One listener serves every kind of traffic to the port, so externalTrafficPolicy
 * cannot be honoured separately (upstream's userspace mode never did either).
 */
export function servicePortsFromState(state: ClusterState, nodeName: string, family: IPFamily = 'IPv4'): UsServicePort[] {
  const svcPorts = buildServicePortMap(state.services, family);
  const epMap = buildEndpointsMap(state.endpointSlices, svcPorts, family, nodeName);
  const node = state.nodes.find((n) => n.meta.name === nodeName);
  const out: UsServicePort[] = [];
  for (const [key, sp] of svcPorts) {
    if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') continue;
    if (!sp.clusterIP) continue;
    const cat = categorizeEndpoints(epMap.get(key) ?? [], sp, nodeName, node?.meta.labels ?? {});
    const eps = sp.internalPolicyLocal ? cat.localEndpoints : cat.clusterEndpoints;
    out.push({
      key,
      protocol: sp.protocol,
      clusterIP: sp.clusterIP,
      port: sp.port,
      nodePort: sp.nodePort,
      externalIPs: sp.externalIPs,
      loadBalancerIPs: sp.loadBalancerVIPs,
      sessionAffinity: sp.sessionAffinity,
      stickyMaxAgeSeconds: sp.stickyMaxAgeSeconds || 10800,
      endpoints: eps.map((e) => ({ ip: e.ip, port: e.port, weight: 1 })),
    });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.protocol < b.protocol ? -1 : 1));
}

/** Listener identity: one per service port and protocol. */
export function portId(sp: Pick<UsServicePort, 'key' | 'protocol'>): string {
  return `${sp.key}/${sp.protocol}`;
}
