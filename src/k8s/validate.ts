// Raw Kubernetes objects (parsed YAML/JSON or API responses) → the normalized
// model in types.ts. This is the one place where input is trusted or not:
//  - what the API server would refuse (bad names, ports, protocols, types)
//    makes the object unusable: it is skipped with a warning;
//  - what kube-proxy itself filters (invalid externalIPs, LB ingress IPs,
//    source ranges: pkg/proxy/service.go newBaseServiceInfo) is dropped entry
//    by entry with a warning, and the rest of the object is kept;
//  - IPs and CIDRs are re-serialized from their parsed value, as upstream does
//    with netutils.ParseIPSloppy/ParseCIDRSloppy ("172.30.0.041" → "172.30.0.41").
// Names end up in iptables comments, chain-name hashes and DNS answers, so no
// string that fails the API server's name rules may get through.
import { normalizeCIDR, normalizeIP } from '../util/ip.js';
import type {
  ContainerPort,
  Endpoint,
  EndpointConditions,
  EndpointSlice,
  EndpointSlicePort,
  IPFamily,
  InputWarning,
  LoadBalancerIngress,
  Node,
  NodeAddress,
  ObjectMeta,
  Pod,
  Protocol,
  Service,
  ServicePort,
  ServiceType,
  TrafficPolicy,
} from './types.js';

export interface ParseOrigin {
  source: string;
  document?: number;
}

export interface ParseResult {
  kind: string;
  object?: Service | EndpointSlice | Node | Pod;
  warnings: InputWarning[];
}

/** The kinds parseObject understands, with the apiVersions accepted for each. */
export const KNOWN_KINDS: Record<string, string[]> = {
  Service: ['v1'],
  EndpointSlice: ['discovery.k8s.io/v1'],
  Node: ['v1'],
  Pod: ['v1'],
};

/** Upstream's default --service-node-port-range. */
export const DEFAULT_NODE_PORT_RANGE: [number, number] = [30000, 32767];
export const DEFAULT_AFFINITY_TIMEOUT = 10800;
const MAX_AFFINITY_TIMEOUT = 86400;

// ---- name rules (k8s.io/apimachinery/pkg/util/validation) ----

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

export function isDNS1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/** IANA_SVC_NAME (validation.IsValidPortName): ≤15 chars, [-a-z0-9], a letter, no leading/trailing/double hyphen. */
export function isValidPortName(s: string): boolean {
  return (
    s.length >= 1 &&
    s.length <= 15 &&
    /^[-a-z0-9]+$/.test(s) &&
    /[a-z]/.test(s) &&
    !s.startsWith('-') &&
    !s.endsWith('-') &&
    !s.includes('--')
  );
}

export function isLabelValue(s: string): boolean {
  return s.length <= 63 && LABEL_VALUE.test(s);
}

/** validation.IsQualifiedName: [prefix/]name, prefix a DNS subdomain, name ≤63 chars. */
export function isQualifiedName(s: string): boolean {
  const parts = s.split('/');
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1]!;
  if (name.length > 63 || !QUALIFIED_NAME_PART.test(name)) return false;
  if (parts.length === 2) return parts[0]!.length > 0 && isDNS1123Subdomain(parts[0]!);
  return true;
}

/** A value quoted and escaped for a message: nothing raw from the input reaches a log line. */
export function quote(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  // JSON.stringify leaves U+2028/U+2029 and non-ASCII as-is; escape them too.
  s = s.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

// ---- context: collects warnings, remembers whether the object is unusable ----

class Ctx {
  readonly warnings: InputWarning[] = [];
  failed = false;
  object?: string;
  constructor(
    readonly origin: ParseOrigin,
    readonly kind: string,
  ) {}

  warn(field: string | undefined, message: string): void {
    const w: InputWarning = { source: this.origin.source, message };
    if (this.origin.document !== undefined) w.document = this.origin.document;
    if (this.kind) w.kind = this.kind;
    if (this.object) w.object = this.object;
    if (field) w.field = field;
    this.warnings.push(w);
  }

  /** The object cannot be used: warn and mark it skipped. Validation goes on to report every problem at once. */
  fail(field: string | undefined, message: string): void {
    this.failed = true;
    this.warn(field, `${message}; ${this.kind || 'object'} skipped`);
  }
}

type Raw = Record<string, unknown>;

function isMap(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(ctx: Ctx, v: unknown, field: string, required = false): string | undefined {
  if (v === undefined || v === null) {
    if (required) ctx.fail(field, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') {
    ctx.fail(field, `must be a string, got ${quote(v)}`);
    return undefined;
  }
  return v;
}

function bool(ctx: Ctx, v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') {
    ctx.fail(field, `must be true or false, got ${quote(v)}`);
    return undefined;
  }
  return v;
}

function arr(ctx: Ctx, v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    ctx.fail(field, `must be a list, got ${quote(v)}`);
    return [];
  }
  return v;
}

function map(ctx: Ctx, v: unknown, field: string): Raw {
  if (v === undefined || v === null) return {};
  if (!isMap(v)) {
    ctx.fail(field, `must be a mapping, got ${quote(v)}`);
    return {};
  }
  return v;
}

function int(ctx: Ctx, v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    ctx.fail(field, `must be an integer, got ${quote(v)}`);
    return undefined;
  }
  return v;
}

function port(ctx: Ctx, v: unknown, field: string, required: boolean): number | undefined {
  if (v === undefined || v === null) {
    if (required) ctx.fail(field, 'is required');
    return undefined;
  }
  const n = int(ctx, v, field);
  if (n === undefined) return undefined;
  if (n < 1 || n > 65535) {
    ctx.fail(field, `must be between 1 and 65535, got ${n}`);
    return undefined;
  }
  return n;
}

function protocol(ctx: Ctx, v: unknown, field: string): Protocol {
  if (v === undefined || v === null || v === '') return 'TCP';
  if (v === 'TCP' || v === 'UDP' || v === 'SCTP') return v;
  ctx.fail(field, `must be TCP, UDP or SCTP, got ${quote(v)}`);
  return 'TCP';
}

function stringMap(ctx: Ctx, v: unknown, field: string, labels: boolean): Record<string, string> {
  const m = map(ctx, v, field);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(m)) {
    // Built only for a warning (quote() is a JSON.stringify and a regex; 20,000 objects have labels).
    const f = (): string => `${field}[${quote(k)}]`;
    if (typeof val !== 'string') {
      // The API server refuses non-string label/annotation values (YAML `version: 1` needs quotes).
      ctx.fail(f(), `must be a string, got ${quote(val)}`);
      continue;
    }
    if (!isQualifiedName(k)) {
      ctx.fail(f(), `${quote(k)} is not a valid ${labels ? 'label' : 'annotation'} key`);
      continue;
    }
    if (labels && !isLabelValue(val)) {
      ctx.fail(f(), `${quote(val)} is not a valid label value`);
      continue;
    }
    out[k] = val;
  }
  return out;
}

type NameRule = 'label' | 'subdomain';

function meta(ctx: Ctx, raw: Raw, nameRule: NameRule, namespaced: boolean): ObjectMeta {
  const m = map(ctx, raw.metadata, 'metadata');
  const name = typeof m.name === 'string' ? m.name : undefined;
  let namespace = typeof m.namespace === 'string' && m.namespace !== '' ? m.namespace : namespaced ? 'default' : '';
  const nsOK = !namespaced || isDNS1123Label(namespace);
  const nameOK = name !== undefined && (nameRule === 'label' ? isDNS1123Label(name) : isDNS1123Subdomain(name));
  // The object's identity appears in every later warning: escape it if it is not a valid name.
  const nsText = nsOK ? namespace : quote(namespace);
  const nameText = nameOK ? name! : name === undefined ? '?' : quote(name);
  ctx.object = namespaced ? `${nsText}/${nameText}` : nameText;
  if (m.namespace !== undefined && m.namespace !== null && typeof m.namespace !== 'string')
    ctx.fail('metadata.namespace', `must be a string, got ${quote(m.namespace)}`);
  else if (!nsOK) ctx.fail('metadata.namespace', `${quote(namespace)} is not a valid namespace (a DNS-1123 label)`);
  if (name === undefined) ctx.fail('metadata.name', m.name === undefined ? 'is required' : `must be a string, got ${quote(m.name)}`);
  else if (!nameOK)
    ctx.fail(
      'metadata.name',
      `${quote(name)} is not a valid name (${nameRule === 'label' ? 'a DNS-1123 label: lower-case letters, digits and "-", at most 63' : 'a DNS-1123 subdomain'})`,
    );
  if (!nsOK) namespace = '';
  const uid = typeof m.uid === 'string' ? m.uid : undefined;
  const out: ObjectMeta = {
    namespace,
    name: nameOK ? name! : '',
    labels: stringMap(ctx, m.labels, 'metadata.labels', true),
    annotations: stringMap(ctx, m.annotations, 'metadata.annotations', false),
    deleting: m.deletionTimestamp !== undefined && m.deletionTimestamp !== null,
  };
  if (uid !== undefined) out.uid = uid;
  return out;
}

/** The family of a normalized address: printed IPv6 always has a colon, printed IPv4 never. */
function familyOf(ip: string): IPFamily {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}

// ---- Service ----

const SERVICE_TYPES: ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];

function parseService(ctx: Ctx, raw: Raw): Service {
  const md = meta(ctx, raw, 'label', true);
  const spec = map(ctx, raw.spec, 'spec');
  const status = map(ctx, raw.status, 'status');

  let type: ServiceType = 'ClusterIP';
  if (spec.type !== undefined && spec.type !== null && spec.type !== '') {
    if (SERVICE_TYPES.includes(spec.type as ServiceType)) type = spec.type as ServiceType;
    else ctx.fail('spec.type', `must be one of ${SERVICE_TYPES.join(', ')}, got ${quote(spec.type)}`);
  }

  // clusterIP / clusterIPs: an invalid one makes the service unusable (kube-proxy would
  // have no valid address to write rules for), "None" means headless, "" means unallocated.
  const clusterIP = str(ctx, spec.clusterIP, 'spec.clusterIP') ?? '';
  const rawIPs = arr(ctx, spec.clusterIPs, 'spec.clusterIPs');
  const ipStrings: string[] = [];
  rawIPs.forEach((v, i) => {
    const s = str(ctx, v, `spec.clusterIPs[${i}]`);
    if (s !== undefined) ipStrings.push(s);
  });
  if (ipStrings.length === 0 && clusterIP !== '') ipStrings.push(clusterIP);
  if (clusterIP !== '' && ipStrings[0] !== clusterIP)
    ctx.fail('spec.clusterIPs[0]', `${quote(ipStrings[0])} must equal spec.clusterIP ${quote(clusterIP)}`);
  let headless = false;
  const clusterIPs: string[] = [];
  if (ipStrings.length === 1 && ipStrings[0] === 'None') headless = true;
  else {
    if (ipStrings.length > 2) ctx.fail('spec.clusterIPs', `may hold at most two addresses, got ${ipStrings.length}`);
    ipStrings.forEach((s, i) => {
      const n = normalizeIP(s);
      const field = i === 0 && (rawIPs.length === 0 || s === clusterIP) ? 'spec.clusterIP' : `spec.clusterIPs[${i}]`;
      if (s === 'None') ctx.fail(field, '"None" must be the only cluster IP');
      else if (n === null) ctx.fail(field, `${quote(s)} is not a valid IP address`);
      else clusterIPs.push(n);
    });
    if (clusterIPs.length === 2 && familyOf(clusterIPs[0]!) === familyOf(clusterIPs[1]!))
      ctx.fail('spec.clusterIPs', `the two addresses must be of different IP families, got ${clusterIPs.join(', ')}`);
  }

  const declaredFamilies: IPFamily[] = [];
  arr(ctx, spec.ipFamilies, 'spec.ipFamilies').forEach((v, i) => {
    if (v === 'IPv4' || v === 'IPv6') {
      if (!declaredFamilies.includes(v)) declaredFamilies.push(v);
    } else ctx.fail(`spec.ipFamilies[${i}]`, `must be IPv4 or IPv6, got ${quote(v)}`);
  });
  let ipFamilies: IPFamily[] = declaredFamilies;
  if (clusterIPs.length > 0) {
    ipFamilies = clusterIPs.map(familyOf);
    const mismatch = declaredFamilies.length > 0 && declaredFamilies.some((f, i) => ipFamilies[i] !== undefined && ipFamilies[i] !== f);
    if (mismatch)
      ctx.warn('spec.ipFamilies', `${quote(declaredFamilies)} does not match the cluster IPs; using ${quote(ipFamilies)}`);
  }

  // ports
  const ports: ServicePort[] = [];
  const rawPorts = arr(ctx, spec.ports, 'spec.ports');
  const names = new Set<string>();
  rawPorts.forEach((rp, i) => {
    const f = `spec.ports[${i}]`;
    if (!isMap(rp)) {
      ctx.fail(f, `must be a mapping, got ${quote(rp)}`);
      return;
    }
    const name = str(ctx, rp.name, `${f}.name`) ?? '';
    if (name !== '' && !isValidPortName(name))
      ctx.fail(`${f}.name`, `${quote(name)} is not a valid port name (IANA_SVC_NAME: at most 15 lower-case letters, digits and "-", with a letter)`);
    if (name === '' && rawPorts.length > 1) ctx.fail(`${f}.name`, 'is required when a service has more than one port');
    const proto = protocol(ctx, rp.protocol, `${f}.protocol`);
    if (names.has(`${name}`)) ctx.fail(`${f}.name`, `duplicate port name ${quote(name)}`);
    names.add(name);
    const p = port(ctx, rp.port, `${f}.port`, true);
    let targetPort: number | string | undefined = p;
    if (typeof rp.targetPort === 'string') {
      if (!isValidPortName(rp.targetPort))
        ctx.fail(`${f}.targetPort`, `${quote(rp.targetPort)} is neither a port number nor a valid port name`);
      else targetPort = rp.targetPort;
    } else if (rp.targetPort !== undefined && rp.targetPort !== null && rp.targetPort !== 0) {
      targetPort = port(ctx, rp.targetPort, `${f}.targetPort`, false);
    }
    let nodePort = 0;
    const np = int(ctx, rp.nodePort, `${f}.nodePort`);
    if (np !== undefined && np !== 0) {
      if (np < 1 || np > 65535) ctx.fail(`${f}.nodePort`, `must be between 1 and 65535, got ${np}`);
      else if (type !== 'NodePort' && type !== 'LoadBalancer')
        ctx.warn(`${f}.nodePort`, `may not be used when type is ${type}; ignored`);
      else {
        if (np < DEFAULT_NODE_PORT_RANGE[0] || np > DEFAULT_NODE_PORT_RANGE[1])
          ctx.warn(`${f}.nodePort`, `${np} is outside the default node port range ${DEFAULT_NODE_PORT_RANGE.join('-')} (kept)`);
        nodePort = np;
      }
    }
    const sp: ServicePort = { name, protocol: proto, port: p ?? 0, targetPort: targetPort ?? 0, nodePort };
    const ap = str(ctx, rp.appProtocol, `${f}.appProtocol`);
    if (ap !== undefined && ap !== '') {
      if (isQualifiedName(ap)) sp.appProtocol = ap;
      else ctx.warn(`${f}.appProtocol`, `${quote(ap)} is not a valid protocol name; ignored`);
    }
    ports.push(sp);
  });
  // The API server requires ports except for headless and ExternalName services.
  if (rawPorts.length === 0 && type !== 'ExternalName' && !headless) ctx.fail('spec.ports', 'is required (at least one port)');

  // selector: an empty map reads back from the API as no selector.
  const selMap = stringMap(ctx, spec.selector, 'spec.selector', true);
  const selector = Object.keys(selMap).length > 0 ? selMap : undefined;

  // externalIPs: newBaseServiceInfo drops unparseable entries and keeps the rest.
  const externalIPs: string[] = [];
  arr(ctx, spec.externalIPs, 'spec.externalIPs').forEach((v, i) => {
    const f = `spec.externalIPs[${i}]`;
    const n = typeof v === 'string' ? normalizeIP(v) : null;
    if (n === null) ctx.warn(f, `${quote(v)} is not a valid IP address; entry dropped`);
    else if (!externalIPs.includes(n)) externalIPs.push(n);
  });

  const loadBalancerSourceRanges: string[] = [];
  arr(ctx, spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges').forEach((v, i) => {
    const f = `spec.loadBalancerSourceRanges[${i}]`;
    const n = typeof v === 'string' ? normalizeCIDR(v) : null;
    if (n === null) ctx.warn(f, `${quote(v)} is not a valid CIDR; entry dropped`);
    else if (!loadBalancerSourceRanges.includes(n)) loadBalancerSourceRanges.push(n);
  });

  const loadBalancerIngress: LoadBalancerIngress[] = [];
  const lb = map(ctx, status.loadBalancer, 'status.loadBalancer');
  arr(ctx, lb.ingress, 'status.loadBalancer.ingress').forEach((v, i) => {
    const f = `status.loadBalancer.ingress[${i}]`;
    if (!isMap(v)) {
      ctx.warn(f, `must be a mapping, got ${quote(v)}; entry dropped`);
      return;
    }
    const ing: LoadBalancerIngress = {};
    if (v.ip !== undefined && v.ip !== null && v.ip !== '') {
      const n = typeof v.ip === 'string' ? normalizeIP(v.ip) : null;
      if (n === null) {
        ctx.warn(`${f}.ip`, `${quote(v.ip)} is not a valid IP address; entry dropped`);
        return;
      }
      ing.ip = n;
    }
    if (typeof v.hostname === 'string' && v.hostname !== '') {
      if (isDNS1123Subdomain(v.hostname)) ing.hostname = v.hostname;
      else ctx.warn(`${f}.hostname`, `${quote(v.hostname)} is not a valid DNS name; ignored`);
    }
    if (v.ipMode !== undefined && v.ipMode !== null) {
      if (v.ipMode === 'VIP' || v.ipMode === 'Proxy') ing.ipMode = v.ipMode;
      else ctx.warn(`${f}.ipMode`, `must be VIP or Proxy, got ${quote(v.ipMode)}; treated as VIP`);
    }
    if (ing.ip !== undefined || ing.hostname !== undefined) loadBalancerIngress.push(ing);
  });

  const policy = (v: unknown, field: string): TrafficPolicy => {
    if (v === undefined || v === null || v === '') return 'Cluster';
    if (v === 'Cluster' || v === 'Local') return v;
    ctx.fail(field, `must be Cluster or Local, got ${quote(v)}`);
    return 'Cluster';
  };
  const externalTrafficPolicy = policy(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy');
  const internalTrafficPolicy = policy(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy');

  let healthCheckNodePort = 0;
  const hc = int(ctx, spec.healthCheckNodePort, 'spec.healthCheckNodePort');
  if (hc !== undefined && hc !== 0) {
    if (hc < 1 || hc > 65535) ctx.fail('spec.healthCheckNodePort', `must be between 1 and 65535, got ${hc}`);
    else healthCheckNodePort = hc;
  }

  let sessionAffinity: 'None' | 'ClientIP' = 'None';
  if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== null && spec.sessionAffinity !== '') {
    if (spec.sessionAffinity === 'None' || spec.sessionAffinity === 'ClientIP') sessionAffinity = spec.sessionAffinity;
    else ctx.fail('spec.sessionAffinity', `must be None or ClientIP, got ${quote(spec.sessionAffinity)}`);
  }
  let sessionAffinityTimeoutSeconds = DEFAULT_AFFINITY_TIMEOUT;
  const sac = map(ctx, spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  const cip = map(ctx, sac.clientIP, 'spec.sessionAffinityConfig.clientIP');
  const to = int(ctx, cip.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds');
  if (to !== undefined) {
    if (to < 1 || to > MAX_AFFINITY_TIMEOUT)
      ctx.fail('spec.sessionAffinityConfig.clientIP.timeoutSeconds', `must be between 1 and ${MAX_AFFINITY_TIMEOUT}, got ${to}`);
    else sessionAffinityTimeoutSeconds = to;
  }

  let externalName: string | undefined;
  if (type === 'ExternalName') {
    const en = str(ctx, spec.externalName, 'spec.externalName', true);
    if (en !== undefined) {
      const trimmed = en.endsWith('.') ? en.slice(0, -1) : en;
      if (!isDNS1123Subdomain(trimmed)) ctx.fail('spec.externalName', `${quote(en)} is not a valid DNS name`);
      else externalName = en;
    }
  }

  // newBaseServiceInfo keeps, per IP family, only the entries of that family: an entry of a
  // family the service does not have is never used. Say so instead of dropping it silently.
  if (clusterIPs.length > 0) {
    const fams = new Set(ipFamilies);
    const keep = <T>(list: T[], field: string, addr: (x: T) => string | undefined, what: string): T[] =>
      list.filter((x) => {
        const a = addr(x);
        if (a === undefined || fams.has(familyOf(a))) return true;
        ctx.warn(field, `${what} ${a} is not of the service's IP families (${ipFamilies.join(', ')}); entry dropped`);
        return false;
      });
    externalIPs.splice(0, externalIPs.length, ...keep(externalIPs, 'spec.externalIPs', (x) => x, 'external IP'));
    loadBalancerSourceRanges.splice(
      0,
      loadBalancerSourceRanges.length,
      ...keep(loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges', (x) => x.split('/')[0], 'source range'),
    );
    // Proxy-mode ingress IPs may be translated across families by the load balancer: upstream keeps them out of the check.
    loadBalancerIngress.splice(
      0,
      loadBalancerIngress.length,
      ...keep(loadBalancerIngress, 'status.loadBalancer.ingress', (x) => (x.ipMode === 'Proxy' ? undefined : x.ip), 'ingress IP'),
    );
  }

  const publishNotReadyAddresses = bool(ctx, spec.publishNotReadyAddresses, 'spec.publishNotReadyAddresses') ?? false;
  const td = str(ctx, spec.trafficDistribution, 'spec.trafficDistribution');
  const svc: Service = {
    meta: md,
    type,
    clusterIPs: type === 'ExternalName' ? [] : clusterIPs,
    headless,
    ipFamilies,
    ports,
    externalIPs,
    loadBalancerSourceRanges,
    loadBalancerIngress,
    externalTrafficPolicy,
    internalTrafficPolicy,
    healthCheckNodePort,
    sessionAffinity,
    sessionAffinityTimeoutSeconds,
    publishNotReadyAddresses,
  };
  if (selector) svc.selector = selector;
  if (externalName !== undefined) svc.externalName = externalName;
  if (td !== undefined && td !== '') {
    if (isQualifiedName(td)) svc.trafficDistribution = td;
    else ctx.warn('spec.trafficDistribution', `${quote(td)} is not a valid value; ignored`);
  }
  return svc;
}

// ---- EndpointSlice ----

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/**
 * The eight possible endpoint conditions, shared (frozen: nothing may change them) by every
 * endpoint, indexed by ready·4 + serving·2 + terminating.
 */
const CONDITIONS: readonly EndpointConditions[] = Array.from({ length: 8 }, (_, i) =>
  Object.freeze({ ready: (i & 4) !== 0, serving: (i & 2) !== 0, terminating: (i & 1) !== 0 }),
);

function parseEndpointSlice(ctx: Ctx, raw: Raw): EndpointSlice {
  const md = meta(ctx, raw, 'subdomain', true);
  let addressType: EndpointSlice['addressType'] = 'IPv4';
  if (raw.addressType === 'IPv4' || raw.addressType === 'IPv6' || raw.addressType === 'FQDN') addressType = raw.addressType;
  else if (raw.addressType === undefined || raw.addressType === null) ctx.fail('addressType', 'is required (IPv4, IPv6 or FQDN)');
  else ctx.fail('addressType', `must be IPv4, IPv6 or FQDN, got ${quote(raw.addressType)}`);

  // kube-proxy ignores slices without this label (endpointslicecache: "doesn't have a service name label").
  const serviceName = md.labels[SERVICE_NAME_LABEL] ?? '';
  if (serviceName === '') ctx.fail(`metadata.labels[${quote(SERVICE_NAME_LABEL)}]`, 'is required: it names the slice\'s service');
  else if (!isDNS1123Label(serviceName))
    ctx.fail(`metadata.labels[${quote(SERVICE_NAME_LABEL)}]`, `${quote(serviceName)} is not a valid service name`);

  const endpoints: Endpoint[] = [];
  // 100k endpoints at 10k services: field names for warnings are built only for a warning,
  // and arrays and objects are made at their final size and shape (a pushed-to empty array
  // reserves 17 slots; a property added later goes to a separate property store).
  arr(ctx, raw.endpoints, 'endpoints').forEach((re, i) => {
    const f = (): string => `endpoints[${i}]`;
    if (!isMap(re)) {
      ctx.warn(f(), `must be a mapping, got ${quote(re)}; endpoint dropped`);
      return;
    }
    const addrs = Array.isArray(re.addresses) ? re.addresses : [];
    if (addrs.length === 0) {
      ctx.warn(`${f()}.addresses`, 'must hold at least one address; endpoint dropped');
      return;
    }
    const addresses = new Array<string>(addrs.length);
    let bad = false;
    for (let j = 0; j < addrs.length; j++) {
      const a: unknown = addrs[j];
      const af = (): string => `${f()}.addresses[${j}]`;
      if (typeof a !== 'string') {
        ctx.warn(af(), `must be a string, got ${quote(a)}; endpoint dropped`);
        bad = true;
        continue;
      }
      if (addressType === 'FQDN') {
        if (!isDNS1123Subdomain(a)) {
          ctx.warn(af(), `${quote(a)} is not a valid FQDN; endpoint dropped`);
          bad = true;
        } else addresses[j] = a;
        continue;
      }
      const n = normalizeIP(a);
      if (n === null) {
        ctx.warn(af(), `${quote(a)} is not a valid IP address; endpoint dropped`);
        bad = true;
      } else if (familyOf(n) !== addressType) {
        ctx.warn(af(), `${quote(a)} is not an ${addressType} address (the slice's addressType); endpoint dropped`);
        bad = true;
      } else addresses[j] = n;
    }
    if (bad) return;
    const cond = isMap(re.conditions) ? re.conditions : {};
    // endpointslicecache: nil ready/serving count as true, nil terminating as false.
    const ready = cond.ready === undefined || cond.ready === null || cond.ready === true;
    const serving = cond.serving === undefined || cond.serving === null ? ready : cond.serving === true;
    const terminating = cond.terminating === true;
    const conditions = CONDITIONS[(ready ? 4 : 0) + (serving ? 2 : 0) + (terminating ? 1 : 0)]!;
    let hostname: string | undefined;
    if (typeof re.hostname === 'string' && re.hostname !== '') {
      if (isDNS1123Label(re.hostname)) hostname = re.hostname;
      else ctx.warn(`${f()}.hostname`, `${quote(re.hostname)} is not a valid hostname (a DNS-1123 label); ignored`);
    }
    let nodeName: string | undefined;
    if (typeof re.nodeName === 'string' && re.nodeName !== '') {
      if (isDNS1123Subdomain(re.nodeName)) nodeName = re.nodeName;
      else ctx.warn(`${f()}.nodeName`, `${quote(re.nodeName)} is not a valid node name; ignored`);
    }
    // Same keys in the same order as before, but made in one literal (the usual shapes).
    const ep: Endpoint =
      hostname === undefined
        ? nodeName === undefined
          ? { addresses, conditions }
          : { addresses, conditions, nodeName }
        : nodeName === undefined
          ? { addresses, conditions, hostname }
          : { addresses, conditions, hostname, nodeName };
    if (typeof re.zone === 'string' && re.zone !== '') {
      if (isLabelValue(re.zone)) ep.zone = re.zone;
      else ctx.warn(`${f()}.zone`, `${quote(re.zone)} is not a valid zone name; ignored`);
    }
    if (isMap(re.hints)) {
      const names = (v: unknown, hf: string, ok: (s: string) => boolean): string[] => {
        const out: string[] = [];
        (Array.isArray(v) ? v : []).forEach((h, k) => {
          const n = isMap(h) ? h.name : undefined;
          if (typeof n === 'string' && ok(n)) out.push(n);
          else ctx.warn(`${f()}.hints.${hf}[${k}]`, `${quote(h)} is not a valid hint; ignored`);
        });
        return out;
      };
      ep.hints = {
        forZones: names(re.hints.forZones, 'forZones', isLabelValue),
        forNodes: names(re.hints.forNodes, 'forNodes', isDNS1123Subdomain),
      };
    }
    if (isMap(re.targetRef) && typeof re.targetRef.kind === 'string' && typeof re.targetRef.name === 'string') {
      const t = re.targetRef;
      if (isQualifiedName(t.kind as string) && isDNS1123Subdomain(t.name as string)) {
        ep.targetRef = { kind: t.kind as string, name: t.name as string };
        if (typeof t.namespace === 'string' && isDNS1123Label(t.namespace)) ep.targetRef.namespace = t.namespace;
      }
    }
    endpoints.push(ep);
  });

  const ports: EndpointSlicePort[] = [];
  arr(ctx, raw.ports, 'ports').forEach((rp, i) => {
    const f = `ports[${i}]`;
    if (!isMap(rp)) {
      ctx.fail(f, `must be a mapping, got ${quote(rp)}`);
      return;
    }
    const name = typeof rp.name === 'string' ? rp.name : '';
    if (rp.name !== undefined && rp.name !== null && typeof rp.name !== 'string') ctx.fail(`${f}.name`, `must be a string, got ${quote(rp.name)}`);
    else if (name !== '' && !isDNS1123Label(name)) ctx.fail(`${f}.name`, `${quote(name)} is not a valid port name (a DNS-1123 label)`);
    const p = rp.port === undefined || rp.port === null ? null : port(ctx, rp.port, `${f}.port`, false) ?? null;
    const sp: EndpointSlicePort = { name, port: p, protocol: protocol(ctx, rp.protocol, `${f}.protocol`) };
    if (typeof rp.appProtocol === 'string' && rp.appProtocol !== '') {
      if (isQualifiedName(rp.appProtocol)) sp.appProtocol = rp.appProtocol;
      else ctx.warn(`${f}.appProtocol`, `${quote(rp.appProtocol)} is not a valid protocol name; ignored`);
    }
    if (ports.some((o) => o.name === name)) ctx.fail(`${f}.name`, `duplicate port name ${quote(name)}`);
    ports.push(sp);
  });

  return { meta: md, serviceName, addressType, endpoints, ports };
}

// ---- Node ----

function parseNode(ctx: Ctx, raw: Raw): Node {
  const md = meta(ctx, raw, 'subdomain', false);
  const spec = map(ctx, raw.spec, 'spec');
  const status = map(ctx, raw.status, 'status');
  const addresses: NodeAddress[] = [];
  arr(ctx, status.addresses, 'status.addresses').forEach((a, i) => {
    const f = `status.addresses[${i}]`;
    if (!isMap(a) || typeof a.type !== 'string' || typeof a.address !== 'string') {
      ctx.warn(f, `must have string type and address, got ${quote(a)}; entry dropped`);
      return;
    }
    if (a.type === 'InternalIP' || a.type === 'ExternalIP') {
      const n = normalizeIP(a.address);
      if (n === null) ctx.warn(`${f}.address`, `${quote(a.address)} is not a valid IP address; entry dropped`);
      else addresses.push({ type: a.type, address: n });
    } else if (/^[A-Za-z]+$/.test(a.type) && isDNS1123Subdomain(a.address.toLowerCase())) {
      addresses.push({ type: a.type, address: a.address });
    } else ctx.warn(f, `${quote(a)} is not a valid node address; entry dropped`);
  });
  const podCIDRs: string[] = [];
  const rawCIDRs = Array.isArray(spec.podCIDRs) ? spec.podCIDRs : typeof spec.podCIDR === 'string' && spec.podCIDR ? [spec.podCIDR] : [];
  rawCIDRs.forEach((c, i) => {
    const n = typeof c === 'string' ? normalizeCIDR(c) : null;
    if (n === null) ctx.warn(`spec.podCIDRs[${i}]`, `${quote(c)} is not a valid CIDR; entry dropped`);
    else podCIDRs.push(n);
  });
  const taints: Node['taints'] = [];
  arr(ctx, spec.taints, 'spec.taints').forEach((t, i) => {
    if (isMap(t) && typeof t.key === 'string' && typeof t.effect === 'string' && isQualifiedName(t.key)) {
      const taint: Node['taints'][number] = { key: t.key, effect: t.effect };
      if (typeof t.value === 'string') taint.value = t.value;
      taints.push(taint);
    } else ctx.warn(`spec.taints[${i}]`, `${quote(t)} is not a valid taint; ignored`);
  });
  return { meta: md, addresses, podCIDRs, taints };
}

// ---- Pod ----

function parsePod(ctx: Ctx, raw: Raw): Pod {
  const md = meta(ctx, raw, 'subdomain', true);
  const spec = map(ctx, raw.spec, 'spec');
  const status = map(ctx, raw.status, 'status');
  const pod: Pod = {
    meta: md,
    hostNetwork: bool(ctx, spec.hostNetwork, 'spec.hostNetwork') ?? false,
    podIPs: [],
    ready: false,
    containerPorts: [],
  };
  const nodeName = str(ctx, spec.nodeName, 'spec.nodeName');
  if (nodeName) {
    if (isDNS1123Subdomain(nodeName)) pod.nodeName = nodeName;
    else ctx.fail('spec.nodeName', `${quote(nodeName)} is not a valid node name`);
  }
  for (const k of ['hostname', 'subdomain'] as const) {
    const v = str(ctx, spec[k], `spec.${k}`);
    if (v) {
      if (isDNS1123Label(v)) pod[k] = v;
      else ctx.fail(`spec.${k}`, `${quote(v)} is not a valid DNS-1123 label`);
    }
  }
  const dnsPolicy = str(ctx, spec.dnsPolicy, 'spec.dnsPolicy');
  if (dnsPolicy) {
    if (['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'].includes(dnsPolicy)) pod.dnsPolicy = dnsPolicy;
    else ctx.fail('spec.dnsPolicy', `${quote(dnsPolicy)} is not a valid DNS policy`);
  }

  // podutil.FindPort looks at the regular containers, then at sidecars (restartable init containers).
  const addPorts = (containers: unknown, field: string, onlySidecars: boolean): void => {
    arr(ctx, containers, field).forEach((c, i) => {
      if (!isMap(c)) return;
      if (onlySidecars && c.restartPolicy !== 'Always') return;
      arr(ctx, c.ports, `${field}[${i}].ports`).forEach((p, j) => {
        const f = `${field}[${i}].ports[${j}]`;
        if (!isMap(p)) {
          ctx.fail(f, `must be a mapping, got ${quote(p)}`);
          return;
        }
        const cp = port(ctx, p.containerPort, `${f}.containerPort`, true);
        if (cp === undefined) return;
        const out: ContainerPort = { containerPort: cp, protocol: protocol(ctx, p.protocol, `${f}.protocol`) };
        if (typeof p.name === 'string' && p.name !== '') {
          if (isValidPortName(p.name)) out.name = p.name;
          else ctx.fail(`${f}.name`, `${quote(p.name)} is not a valid port name (IANA_SVC_NAME)`);
        }
        const hp = p.hostPort === 0 ? undefined : port(ctx, p.hostPort, `${f}.hostPort`, false);
        if (hp !== undefined) out.hostPort = hp;
        pod.containerPorts.push(out);
      });
    });
  };
  addPorts(spec.containers, 'spec.containers', false);
  addPorts(spec.initContainers, 'spec.initContainers', true);

  const phase = str(ctx, status.phase, 'status.phase');
  if (phase) pod.phase = phase;
  const rawIPs: unknown[] = Array.isArray(status.podIPs) && status.podIPs.length > 0
    ? status.podIPs.map((p) => (isMap(p) ? p.ip : p))
    : typeof status.podIP === 'string' && status.podIP !== ''
      ? [status.podIP]
      : [];
  rawIPs.forEach((ip, i) => {
    const n = typeof ip === 'string' ? normalizeIP(ip) : null;
    if (n === null) ctx.warn(`status.podIPs[${i}].ip`, `${quote(ip)} is not a valid IP address; entry dropped`);
    else if (!pod.podIPs.includes(n)) pod.podIPs.push(n);
  });
  for (const c of Array.isArray(status.conditions) ? status.conditions : []) {
    if (isMap(c) && c.type === 'Ready') pod.ready = c.status === 'True';
  }
  return pod;
}

/**
 * Validates and normalizes one raw object. `object` is undefined when the object
 * must be skipped (or is of a kind kproxy does not use); `warnings` says why.
 */
export function parseObject(raw: unknown, origin: ParseOrigin): ParseResult {
  if (!isMap(raw)) {
    const ctx = new Ctx(origin, '');
    ctx.warn(undefined, `not a Kubernetes object (a mapping with kind and apiVersion), got ${quote(raw)}; skipped`);
    return { kind: '', warnings: ctx.warnings };
  }
  const kindOK = typeof raw.kind === 'string' && /^[A-Za-z][A-Za-z0-9]*$/.test(raw.kind);
  const kind = kindOK ? (raw.kind as string) : '';
  const ctx = new Ctx(origin, kind);
  if (!kindOK) {
    ctx.warn('kind', raw.kind === undefined ? 'is missing; object skipped' : `${quote(raw.kind)} is not a valid kind; object skipped`);
    return { kind: typeof raw.kind === 'string' ? quote(raw.kind) : '', warnings: ctx.warnings };
  }
  const versions = KNOWN_KINDS[kind];
  if (!versions) {
    if (isMap(raw.metadata) && typeof raw.metadata.name === 'string') {
      const n = raw.metadata.name;
      const ns = raw.metadata.namespace;
      const nsText = typeof ns === 'string' ? (isDNS1123Label(ns) ? ns : quote(ns)) + '/' : '';
      ctx.object = nsText + (isDNS1123Subdomain(n) ? n : quote(n));
    }
    ctx.warn(undefined, `kind ${kind} is not used by kproxy (it reads ${Object.keys(KNOWN_KINDS).join(', ')}); ignored`);
    return { kind, warnings: ctx.warnings };
  }
  // Items of an API list response carry no apiVersion; accept that, refuse other versions.
  if (raw.apiVersion !== undefined && !versions.includes(raw.apiVersion as string)) {
    ctx.fail('apiVersion', `${quote(raw.apiVersion)} is not supported for ${kind} (expected ${versions.join(' or ')})`);
    return { kind, warnings: ctx.warnings };
  }
  let object: Service | EndpointSlice | Node | Pod;
  switch (kind) {
    case 'Service':
      object = parseService(ctx, raw);
      break;
    case 'EndpointSlice':
      object = parseEndpointSlice(ctx, raw);
      break;
    case 'Node':
      object = parseNode(ctx, raw);
      break;
    default:
      object = parsePod(ctx, raw);
  }
  return ctx.failed ? { kind, warnings: ctx.warnings } : { kind, object, warnings: ctx.warnings };
}
