// The parts of Kubernetes objects that kproxy reads, after validation and
// normalization (see validate.ts). Everything downstream (proxy, dataplanes,
// DNS, doctor) works on these shapes, never on raw API objects, so a bad
// object is rejected once, at the edge, with a message that says where it came from.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 'IPv4' | 'IPv6';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';

export interface ObjectMeta {
  namespace: string;
  name: string;
  uid?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Set when the object has a deletionTimestamp. */
  deleting: boolean;
}

export interface ServicePort {
  /** Empty string when the port is unnamed (then the service has exactly one port). */
  name: string;
  protocol: Protocol;
  port: number;
  /** A number, or the name of a container port. */
  targetPort: number | string;
  /** 0 when not allocated. */
  nodePort: number;
  appProtocol?: string;
}

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
  /** Upstream skips ipMode Proxy ingress IPs in kube-proxy. */
  ipMode?: 'VIP' | 'Proxy';
}

export interface Service {
  meta: ObjectMeta;
  type: ServiceType;
  /** Normalized ClusterIPs, primary first; empty for headless and ExternalName services. */
  clusterIPs: string[];
  /** spec.clusterIP was "None". */
  headless: boolean;
  ipFamilies: IPFamily[];
  ports: ServicePort[];
  /** Undefined when the service has no selector (endpoints are managed by hand). */
  selector?: Record<string, string>;
  externalIPs: string[];
  /** Normalized CIDRs, whitespace trimmed. */
  loadBalancerSourceRanges: string[];
  loadBalancerIngress: LoadBalancerIngress[];
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** 0 when none. */
  healthCheckNodePort: number;
  sessionAffinity: 'None' | 'ClientIP';
  /** Only meaningful for ClientIP affinity; upstream default 10800. */
  sessionAffinityTimeoutSeconds: number;
  externalName?: string;
  publishNotReadyAddresses: boolean;
  /** spec.trafficDistribution, e.g. "PreferClose". */
  trafficDistribution?: string;
}

export interface EndpointConditions {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface Endpoint {
  /** Normalized addresses (one in practice; upstream uses only the first). */
  addresses: string[];
  conditions: EndpointConditions;
  hostname?: string;
  nodeName?: string;
  zone?: string;
  hints?: { forZones: string[]; forNodes: string[] };
  targetRef?: { kind: string; namespace?: string; name: string };
}

export interface EndpointSlicePort {
  name: string;
  /** null means "all ports" in the API; kube-proxy ignores such ports. */
  port: number | null;
  protocol: Protocol;
  appProtocol?: string;
}

export interface EndpointSlice {
  meta: ObjectMeta;
  /** From the kubernetes.io/service-name label. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: Endpoint[];
  ports: EndpointSlicePort[];
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface Node {
  meta: ObjectMeta;
  addresses: NodeAddress[];
  podCIDRs: string[];
  taints: { key: string; value?: string; effect: string }[];
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol: Protocol;
  hostPort?: number;
}

export interface Pod {
  meta: ObjectMeta;
  nodeName?: string;
  hostNetwork: boolean;
  hostname?: string;
  subdomain?: string;
  podIPs: string[];
  phase?: string;
  /** The Ready condition is True. */
  ready: boolean;
  containerPorts: ContainerPort[];
  dnsPolicy?: string;
}

/** Everything kproxy knows about the cluster at one moment. */
export interface ClusterState {
  services: Service[];
  endpointSlices: EndpointSlice[];
  nodes: Node[];
  pods: Pod[];
  /**
   * Set by sources that keep their state incrementally (state-store.ts): what
   * changed since the snapshot they emitted before this one. Absent: unknown,
   * compare everything.
   */
  delta?: StateDelta;
}

/** What changed between a snapshot and the one before it (ClusterState.delta). */
export interface StateDelta {
  /** The snapshot this one follows; a consumer that did not see that one must not trust `services`. */
  prev: ClusterState | undefined;
  /** Services (ns/name) whose Service or EndpointSlices (real or derived from Pods) may have changed. */
  services: ReadonlySet<string>;
  /** A Node changed (topology labels, node IPs). */
  nodes: boolean;
  /** A Pod changed. */
  pods: boolean;
}

/** A problem with one input object: where it came from, which field, what is wrong. */
export interface InputWarning {
  /** File path, "-" for stdin, or "api" for objects from the API server. */
  source: string;
  /** 0-based index of the YAML document (or List item) within the source, when known. */
  document?: number;
  kind?: string;
  /** namespace/name when known. */
  object?: string;
  /** JSON-path-like field, e.g. spec.ports[0].port. */
  field?: string;
  message: string;
}

export function formatWarning(w: InputWarning): string {
  const where = [w.source + (w.document !== undefined ? `#${w.document}` : '')];
  if (w.kind || w.object) where.push(`${w.kind ?? 'object'} ${w.object ?? '?'}`);
  if (w.field) where.push(w.field);
  return `${where.join(': ')}: ${w.message}`;
}
