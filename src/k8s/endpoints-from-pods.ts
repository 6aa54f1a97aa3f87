// What the endpointslice controller (pkg/controller/endpointslice, reconciler in
// staging/src/k8s.io/endpointslice) would write for selector Services, computed
// from the Pods and Nodes in a ClusterState. Manifests describe Deployments'
// pods directly; this turns them into the EndpointSlices kube-proxy reads.
import { sha256 } from '../util/sha256.js';
import { ipFamily } from '../util/ip.js';
import { SERVICE_NAME_LABEL } from './validate.js';
import type { ClusterState, Endpoint, EndpointSlice, EndpointSlicePort, IPFamily, Node, Pod, Service, ServicePort } from './types.js';

export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const CONTROLLER_NAME = 'endpointslice-controller.k8s.io';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** The controller's --max-endpoints-per-slice default. */
export const MAX_ENDPOINTS_PER_SLICE = 100;

/** reconciler getAddressTypesForService: spec.ipFamilies, else the clusterIP's family, else (headless) both. */
export function addressTypesForService(svc: Service): IPFamily[] {
  if (svc.ipFamilies.length > 0) return [...svc.ipFamilies];
  if (svc.clusterIPs.length > 0) return [ipFamily(svc.clusterIPs[0]!) === 6 ? 'IPv6' : 'IPv4'];
  return ['IPv4', 'IPv6'];
}

/** endpointsliceutil.ShouldPodBeInEndpoints(pod, includeTerminating=true). */
export function podHasEndpoint(pod: Pod): boolean {
  if (pod.phase === 'Failed' || pod.phase === 'Succeeded') return false;
  return pod.podIPs.length > 0;
}

export function selectorMatches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** podutil.FindPort: a number is taken as is; a name is looked up among the pod's container ports with the service port's protocol. */
export function findPort(pod: Pod, sp: ServicePort): number | undefined {
  if (typeof sp.targetPort === 'number') return sp.targetPort;
  for (const cp of pod.containerPorts) if (cp.name === sp.targetPort && cp.protocol === sp.protocol) return cp.containerPort;
  return undefined;
}

function endpointPorts(svc: Service, pod: Pod): EndpointSlicePort[] {
  const out: EndpointSlicePort[] = [];
  for (const sp of svc.ports) {
    const port = findPort(pod, sp);
    if (port === undefined) continue; // the controller logs and leaves this port out for this pod
    const ep: EndpointSlicePort = { name: sp.name, port, protocol: sp.protocol };
    if (sp.appProtocol !== undefined) ep.appProtocol = sp.appProtocol;
    out.push(ep);
  }
  return out;
}

function portKey(ports: EndpointSlicePort[]): string {
  // endpointutil.NewPortMapKey hashes the ports sorted, so the key ignores order.
  return ports
    .map((p) => `${p.name}/${p.protocol}/${p.port}/${p.appProtocol ?? ''}`)
    .sort()
    .join(',');
}

// utilrand's alphabet (no vowels, no look-alikes), used here for a deterministic suffix
// in place of the API server's random generateName suffix.
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

export function sliceName(svcName: string, seed: string): string {
  const h = sha256(seed);
  let suffix = '';
  for (let i = 0; i < 5; i++) suffix += ALPHABET[h.charCodeAt(i) % ALPHABET.length];
  return `${svcName}-${suffix}`;
}

function podToEndpoint(pod: Pod, node: Node | undefined, svc: Service, family: IPFamily): Endpoint {
  const serving = pod.ready;
  const terminating = pod.meta.deleting;
  // "ready" is never true for a terminating pod unless publishNotReadyAddresses is set.
  const ready = svc.publishNotReadyAddresses || (serving && !terminating);
  const ep: Endpoint = {
    addresses: pod.podIPs.filter((ip) => (ipFamily(ip) === 6) === (family === 'IPv6')),
    conditions: { ready, serving, terminating },
    targetRef: { kind: 'Pod', namespace: pod.meta.namespace, name: pod.meta.name },
  };
  if (pod.nodeName) ep.nodeName = pod.nodeName;
  const zone = node?.meta.labels[ZONE_LABEL];
  if (zone) ep.zone = zone;
  // endpointutil.ShouldSetHostname
  if (pod.hostname && pod.subdomain === svc.meta.name && pod.meta.namespace === svc.meta.namespace) ep.hostname = pod.hostname;
  return ep;
}

/** trafficDistribution values the controller's preferCloseHeuristic handles (trafficdist.go). */
const CLOSE_DISTRIBUTIONS = new Set(['PreferClose', 'PreferSameZone', 'PreferSameNode']);
const TOPOLOGY_ANNOTATIONS = ['service.kubernetes.io/topology-aware-hints', 'service.kubernetes.io/topology-mode'];

/**
 * trafficdist.ReconcileHints: with a "close" trafficDistribution (and no topology-mode
 * annotation, which takes precedence), every ready endpoint gets a hint for its own
 * zone (and its node with PreferSameNode); otherwise hints are cleared.
 */
function applyHints(svc: Service, endpoints: Endpoint[]): void {
  const annotated = TOPOLOGY_ANNOTATIONS.some((a) => a in svc.meta.annotations);
  const td = svc.trafficDistribution;
  const close = !annotated && td !== undefined && CLOSE_DISTRIBUTIONS.has(td);
  for (const ep of endpoints) {
    delete ep.hints;
    if (!close || !ep.conditions.ready) continue;
    const forZones = ep.zone ? [ep.zone] : [];
    const forNodes = ep.nodeName && td === 'PreferSameNode' ? [ep.nodeName] : [];
    if (forZones.length > 0 || forNodes.length > 0) ep.hints = { forZones, forNodes };
  }
}

function sliceLabels(svc: Service): Record<string, string> {
  // setEndpointSliceLabels: the service's labels, minus the reserved ones, plus the controller's.
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(svc.meta.labels)) {
    if (k === SERVICE_NAME_LABEL || k === MANAGED_BY_LABEL || k === HEADLESS_LABEL) continue;
    labels[k] = v;
  }
  if (svc.headless) labels[HEADLESS_LABEL] = '';
  labels[SERVICE_NAME_LABEL] = svc.meta.name;
  labels[MANAGED_BY_LABEL] = CONTROLLER_NAME;
  return labels;
}

/** The EndpointSlices the controller would maintain for one selector Service. */
export function endpointSlicesForService(svc: Service, pods: Pod[], nodes: Map<string, Node>): EndpointSlice[] {
  if (!svc.selector || svc.type === 'ExternalName') return [];
  const selector = svc.selector;
  const matching = pods
    .filter((p) => p.meta.namespace === svc.meta.namespace && selectorMatches(selector, p.meta.labels) && podHasEndpoint(p))
    .sort((a, b) => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0));
  const out: EndpointSlice[] = [];
  for (const family of addressTypesForService(svc)) {
    const groups = new Map<string, { ports: EndpointSlicePort[]; endpoints: Endpoint[] }>();
    for (const pod of matching) {
      const ep = podToEndpoint(pod, pod.nodeName ? nodes.get(pod.nodeName) : undefined, svc, family);
      if (ep.addresses.length === 0) continue;
      const ports = endpointPorts(svc, pod);
      const key = portKey(ports);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { ports, endpoints: [] }));
      g.endpoints.push(ep);
    }
    const base = `${svc.meta.namespace}/${svc.meta.name}/${family}`;
    if (groups.size === 0) {
      // The controller keeps one placeholder slice (no endpoints, no ports) per service.
      out.push(makeSlice(svc, family, sliceName(svc.meta.name, `${base}/placeholder`), [], []));
      continue;
    }
    for (const [key, g] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      for (let i = 0; i < g.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) {
        const chunk = g.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE);
        applyHints(svc, chunk);
        out.push(makeSlice(svc, family, sliceName(svc.meta.name, `${base}/${key}/${i}`), g.ports, chunk));
      }
    }
  }
  return out;
}

function makeSlice(svc: Service, family: IPFamily, name: string, ports: EndpointSlicePort[], endpoints: Endpoint[]): EndpointSlice {
  return {
    meta: { namespace: svc.meta.namespace, name, labels: sliceLabels(svc), annotations: {}, deleting: false },
    serviceName: svc.meta.name,
    addressType: family,
    endpoints,
    ports: ports.map((p) => ({ ...p })),
  };
}

/**
 * EndpointSlices for every selector Service that has none in `state`, derived
 * from its Pods. Services that already have slices (written by hand or by a
 * real controller) are left alone.
 */
export function endpointSlicesFromPods(state: ClusterState): EndpointSlice[] {
  const hasSlices = new Set(state.endpointSlices.map((s) => `${s.meta.namespace}/${s.serviceName}`));
  const nodes = new Map(state.nodes.map((n) => [n.meta.name, n]));
  const out: EndpointSlice[] = [];
  for (const svc of state.services) {
    if (hasSlices.has(`${svc.meta.namespace}/${svc.meta.name}`)) continue;
    out.push(...endpointSlicesForService(svc, state.pods, nodes));
  }
  return out;
}
