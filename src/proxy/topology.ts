// Which endpoints a service port uses on this node: upstream pkg/proxy/topology.go
// CategorizeEndpoints. Ready endpoints by default, falling back to
// serving+terminating ones (independently for cluster and local); topology
// hints (zone, and node hints for PreferSameNode) narrow the cluster set when
// every ready endpoint carries them and one matches this node.
import type { EndpointInfo } from './endpoints.js';
import type { ServicePortInfo } from './service-port.js';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export interface CategorizedEndpoints {
  /** Endpoints for Cluster-policy traffic (empty when the service never uses them). */
  clusterEndpoints: EndpointInfo[];
  /** Endpoints for Local-policy traffic (empty when the service never uses them). */
  localEndpoints: EndpointInfo[];
  /** Union of the two, sorted by "ip:port": the endpoints this node needs chains for. */
  allReachableEndpoints: EndpointInfo[];
  /** Some endpoint anywhere in the cluster is usable (may be true with none reachable here). */
  hasAnyEndpoints: boolean;
}

export interface TopologyOptions {
  /** Feature gate PreferSameTrafficDistribution (node hints); on by default upstream since 1.34. */
  preferSameNode?: boolean;
}

type Mode = '' | 'PreferSameNode' | 'PreferSameZone';

function topologyModeFromHints(eps: EndpointInfo[], nodeName: string, zone: string, preferSameNode: boolean): Mode {
  let hasReady = false;
  let hasForNode = false;
  let allNodeHints = true;
  let hasForZone = false;
  let allZoneHints = true;
  for (const ep of eps) {
    if (!ep.ready) continue;
    hasReady = true;
    if (ep.nodeHints.size === 0) allNodeHints = false;
    else if (ep.nodeHints.has(nodeName)) hasForNode = true;
    if (ep.zoneHints.size === 0) allZoneHints = false;
    else if (ep.zoneHints.has(zone)) hasForZone = true;
  }
  if (!hasReady) return '';
  if (preferSameNode && allNodeHints && hasForNode) return 'PreferSameNode';
  if (allZoneHints && hasForZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: EndpointInfo, mode: Mode, nodeName: string, zone: string): boolean {
  switch (mode) {
    case '':
      return true;
    case 'PreferSameNode':
      return ep.nodeHints.has(nodeName);
    case 'PreferSameZone':
      return ep.zoneHints.has(zone);
  }
}

function byEndpoint(a: EndpointInfo, b: EndpointInfo): number {
  return a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0;
}

const EMPTY: EndpointInfo[] = [];

export function categorizeEndpoints(
  eps: EndpointInfo[],
  svc: ServicePortInfo,
  nodeName: string,
  nodeLabels: Record<string, string>,
  opts: TopologyOptions = {},
): CategorizedEndpoints {
  const res: CategorizedEndpoints = {
    clusterEndpoints: EMPTY,
    localEndpoints: EMPTY,
    allReachableEndpoints: EMPTY,
    hasAnyEndpoints: false,
  };
  if (eps.length === 0) return res;
  let mode: Mode = '';
  let useServingTerminating = false;
  if (svc.usesClusterEndpoints()) {
    const zone = nodeLabels[ZONE_LABEL] ?? '';
    mode = topologyModeFromHints(eps, nodeName, zone, opts.preferSameNode ?? true);
    let cluster = eps.filter((ep) => ep.ready && availableForTopology(ep, mode, nodeName, zone));
    // No ready endpoint for this topology means none anywhere (the mode would be ""), so fall back.
    if (cluster.length === 0) cluster = eps.filter((ep) => ep.serving && ep.terminating);
    res.clusterEndpoints = cluster;
    if (cluster.length > 0) res.hasAnyEndpoints = true;
  }
  if (!svc.usesLocalEndpoints()) {
    res.allReachableEndpoints = res.clusterEndpoints;
    return res;
  }
  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (const ep of eps) {
    if (ep.ready) {
      res.hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalReady = true;
    } else if (ep.serving && ep.terminating) {
      res.hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalServingTerminating = true;
    }
  }
  if (hasLocalReady) {
    res.localEndpoints = eps.filter((ep) => ep.isLocal && ep.ready);
  } else if (hasLocalServingTerminating) {
    useServingTerminating = true;
    res.localEndpoints = eps.filter((ep) => ep.isLocal && ep.serving && ep.terminating);
  }
  if (!svc.usesClusterEndpoints()) {
    res.allReachableEndpoints = res.localEndpoints;
    return res;
  }
  if (mode === '' && !useServingTerminating) {
    // Every ready endpoint is in the cluster set, so it contains the local set.
    res.allReachableEndpoints = res.clusterEndpoints;
    return res;
  }
  const merged = new Map<string, EndpointInfo>();
  for (const ep of res.clusterEndpoints) merged.set(ep.endpoint, ep);
  for (const ep of res.localEndpoints) merged.set(ep.endpoint, ep);
  res.allReachableEndpoints = [...merged.values()].sort(byEndpoint);
  return res;
}
