// One entry per (service, port, IP family): what kube-proxy's ServicePortMap
// holds (pkg/proxy/service.go BaseServicePortInfo), built from the normalized
// Service model. Every dataplane (iptables, ipvs, userspace) starts here.
import type { IPFamily, Protocol, Service, TrafficPolicy } from '../k8s/types.js';
import { ipFamily, normalizeCIDR, normalizeIP } from '../util/ip.js';

/** Label that hands a Service to another proxy; kube-proxy's informer excludes such objects. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
/** Label on EndpointSlices/Endpoints of headless services; also excluded by kube-proxy's informer. */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

export interface ServicePortInfo {
  /** ServicePortName.String(): "ns/name", or "ns/name:portName" when the port has a name. */
  key: string;
  namespace: string;
  name: string;
  /** "" when the port is unnamed. */
  portName: string;
  protocol: Protocol;
  port: number;
  targetPort: number | string;
  /** 0 when none. */
  nodePort: number;
  family: IPFamily;
  /** The service's cluster IP of this family (normalized). */
  clusterIP: string;
  /** External IPs of this family, in spec order. */
  externalIPs: string[];
  /** LB ingress IPs of this family, ipMode Proxy skipped, in status order. */
  loadBalancerVIPs: string[];
  /** loadBalancerSourceRanges of this family (trimmed, normalized). */
  loadBalancerSourceRanges: string[];
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** Upstream ExternalPolicyLocal(): eTP Local on an externally-accessible service type. */
  externalPolicyLocal: boolean;
  /** Upstream InternalPolicyLocal(): iTP Local. */
  internalPolicyLocal: boolean;
  /** Set only for LoadBalancer services with eTP Local (apiservice.NeedsHealthCheck); 0 otherwise. */
  healthCheckNodePort: number;
  sessionAffinity: 'None' | 'ClientIP';
  /** 0 unless sessionAffinity is ClientIP. */
  stickyMaxAgeSeconds: number;
  trafficDistribution?: string;
  /** The Service this port came from. */
  service: Service;
  externallyAccessible(): boolean;
  usesClusterEndpoints(): boolean;
  usesLocalEndpoints(): boolean;
}

/** ServicePortName.String() (pkg/proxy/types.go): the port name is appended only when set. */
export function servicePortNameString(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

/** proxyutil.ShouldSkipService plus the informer's label filter. */
export function shouldSkipService(svc: Service): boolean {
  if (svc.type === 'ExternalName') return true;
  if (svc.headless) return true;
  if (SERVICE_PROXY_NAME_LABEL in svc.meta.labels) return true;
  return false;
}

/** proxyutil.GetClusterIPByFamily: "" when the service has no cluster IP of that family. */
export function clusterIPForFamily(svc: Service, family: IPFamily): string {
  const want = family === 'IPv4' ? 4 : 6;
  const ips = svc.clusterIPs.filter((ip) => ip !== '' && ip !== 'None');
  if (ips.length === 0) return '';
  if (svc.ipFamilies.length === 0) {
    return ipFamily(ips[0]!) === want ? ips[0]! : '';
  }
  for (let i = 0; i < svc.ipFamilies.length; i++) {
    if (svc.ipFamilies[i] === family && i < ips.length) return ips[i]!;
  }
  // ipFamilies not aligned with clusterIPs: fall back to the address itself.
  for (const ip of ips) if (ipFamily(ip) === want) return ip;
  return '';
}

/** normalizeIP (which returns IPv4 text that is already canonical as it is, without parsing). */
export function canonicalIP(s: string): string | null {
  return normalizeIP(s);
}

/** The IPs of one family, re-serialized (upstream keeps parsed net.IPs); unparsable ones are dropped. */
function ofFamily(ips: string[], family: IPFamily): string[] {
  const want = family === 'IPv4' ? 4 : 6;
  const out: string[] = [];
  for (const raw of ips) {
    const ip = canonicalIP(raw);
    if (ip !== null && (ip.includes(':') ? 6 : 4) === want) out.push(ip);
  }
  return out;
}

function cidrsOfFamily(cidrs: string[], family: IPFamily): string[] {
  const want = family === 'IPv4' ? 4 : 6;
  const out: string[] = [];
  for (const raw of cidrs) {
    const c = normalizeCIDR(raw.trim());
    if (c !== null && ipFamily(c.slice(0, c.lastIndexOf('/'))) === want) out.push(c);
  }
  return out;
}

/** apiservice.ExternallyAccessible: the service type accepts traffic from outside the cluster. */
function serviceTypeExternallyAccessible(svc: Service): boolean {
  return (
    svc.type === 'LoadBalancer' || svc.type === 'NodePort' || (svc.type === 'ClusterIP' && svc.externalIPs.length > 0)
  );
}

class PortInfo implements ServicePortInfo {
  key!: string;
  namespace!: string;
  name!: string;
  portName!: string;
  protocol!: Protocol;
  port!: number;
  targetPort!: number | string;
  nodePort!: number;
  family!: IPFamily;
  clusterIP!: string;
  externalIPs!: string[];
  loadBalancerVIPs!: string[];
  loadBalancerSourceRanges!: string[];
  externalTrafficPolicy!: TrafficPolicy;
  internalTrafficPolicy!: TrafficPolicy;
  externalPolicyLocal!: boolean;
  internalPolicyLocal!: boolean;
  healthCheckNodePort!: number;
  sessionAffinity!: 'None' | 'ClientIP';
  stickyMaxAgeSeconds!: number;
  trafficDistribution?: string;
  service!: Service;
  externallyAccessible(): boolean {
    return this.nodePort !== 0 || this.loadBalancerVIPs.length !== 0 || this.externalIPs.length !== 0;
  }
  usesClusterEndpoints(): boolean {
    // Even with eTP Local, cluster endpoints are needed for the short-circuit of pod/node traffic.
    return !this.internalPolicyLocal || this.externallyAccessible();
  }
  usesLocalEndpoints(): boolean {
    return this.internalPolicyLocal || (this.externalPolicyLocal && this.externallyAccessible());
  }
}

/** The ServicePortInfos of one service for one family (empty when the service is skipped). */
export function servicePortsOf(svc: Service, family: IPFamily): ServicePortInfo[] {
  if (shouldSkipService(svc)) return [];
  const clusterIP = canonicalIP(clusterIPForFamily(svc, family)) ?? '';
  if (clusterIP === '') return [];
  const externalIPs = ofFamily(svc.externalIPs, family);
  const lbIPs = ofFamily(
    svc.loadBalancerIngress.filter((i) => i.ip && i.ipMode !== 'Proxy').map((i) => i.ip!),
    family,
  );
  const ranges = cidrsOfFamily(svc.loadBalancerSourceRanges, family);
  const externalPolicyLocal = serviceTypeExternallyAccessible(svc) && svc.externalTrafficPolicy === 'Local';
  const needsHealthCheck = svc.type === 'LoadBalancer' && svc.externalTrafficPolicy === 'Local';
  const out: ServicePortInfo[] = [];
  for (const p of svc.ports) {
    const info = new PortInfo();
    info.key = servicePortNameString(svc.meta.namespace, svc.meta.name, p.name);
    info.namespace = svc.meta.namespace;
    info.name = svc.meta.name;
    info.portName = p.name;
    info.protocol = p.protocol;
    info.port = p.port;
    info.targetPort = p.targetPort;
    info.nodePort = p.nodePort;
    info.family = family;
    info.clusterIP = clusterIP;
    info.externalIPs = externalIPs;
    info.loadBalancerVIPs = lbIPs;
    info.loadBalancerSourceRanges = ranges;
    info.externalTrafficPolicy = svc.externalTrafficPolicy;
    info.internalTrafficPolicy = svc.internalTrafficPolicy;
    info.externalPolicyLocal = externalPolicyLocal;
    info.internalPolicyLocal = svc.internalTrafficPolicy === 'Local';
    info.healthCheckNodePort = needsHealthCheck ? svc.healthCheckNodePort : 0;
    info.sessionAffinity = svc.sessionAffinity;
    info.stickyMaxAgeSeconds = svc.sessionAffinity === 'ClientIP' ? svc.sessionAffinityTimeoutSeconds : 0;
    if (svc.trafficDistribution !== undefined) info.trafficDistribution = svc.trafficDistribution;
    info.service = svc;
    out.push(info);
  }
  return out;
}

/**
 * The ServicePortMap for one IP family, keyed by ServicePortName.String().
 * Skips ExternalName and headless services, services labelled with
 * service.kubernetes.io/service-proxy-name, and services without a cluster IP of that family.
 * Iteration order is by key, so everything built from it is deterministic.
 */
export function buildServicePortMap(services: Service[], family: IPFamily): Map<string, ServicePortInfo> {
  const all: ServicePortInfo[] = [];
  for (const svc of services) for (const sp of servicePortsOf(svc, family)) all.push(sp);
  all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const m = new Map<string, ServicePortInfo>();
  for (const sp of all) if (!m.has(sp.key)) m.set(sp.key, sp);
  return m;
}
