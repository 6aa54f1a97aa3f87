// The endpoints of each service port, as kube-proxy's EndpointSliceCache
// builds them (pkg/proxy/endpointslicecache.go): all slices of a service are
// merged, slice ports are matched to service ports by name and protocol,
// duplicates (same "ip:port") are merged preferring a local copy, and the list
// is sorted by the "ip:port" string.
import type { Endpoint, EndpointSlice, IPFamily } from '../k8s/types.js';
import { joinHostPort } from '../util/ip.js';
import { flat } from '../util/text.js';
import { canonicalIP, HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL, servicePortNameString, type ServicePortInfo } from './service-port.js';

export interface EndpointInfo {
  ip: string;
  port: number;
  /** net.JoinHostPort(ip, port): "10.0.0.1:80", "[fd00::1]:80". Also BaseEndpointInfo.String(). */
  endpoint: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The endpoint's nodeName is this node. */
  isLocal: boolean;
  /** Treat as read-only: endpoints without hints share one empty set. */
  zoneHints: Set<string>;
  nodeHints: Set<string>;
  nodeName?: string;
  zone?: string;
}

/** The key used to match slices to services: "ns/name". */
function serviceNN(ns: string, name: string): string {
  return `${ns}/${name}`;
}

/** Shared by every endpoint without hints (most of them): 100k endpoints need not carry 200k empty Sets. */
const NO_HINTS: ReadonlySet<string> = new Set<string>();

function hintSet(list: string[] | undefined): Set<string> {
  return list && list.length > 0 ? new Set(list) : (NO_HINTS as Set<string>);
}

/**
 * One endpoint's info. Endpoints nearly always name their node: that one is made in one
 * literal (100k endpoints at 10k services; a property added afterwards goes to a separate
 * property store), with the same keys in the same order as when set one by one.
 */
function endpointInfo(ip: string, port: number, endpoint: string, ep: Endpoint, isLocal: boolean): EndpointInfo {
  const { ready, serving, terminating } = ep.conditions;
  const zoneHints = hintSet(ep.hints?.forZones);
  const nodeHints = hintSet(ep.hints?.forNodes);
  const info: EndpointInfo = ep.nodeName
    ? { ip, port, endpoint, ready, serving, terminating, isLocal, zoneHints, nodeHints, nodeName: ep.nodeName }
    : { ip, port, endpoint, ready, serving, terminating, isLocal, zoneHints, nodeHints };
  if (ep.zone) info.zone = ep.zone;
  return info;
}

function compareEndpoint(a: EndpointInfo, b: EndpointInfo): number {
  return a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0;
}

/**
 * Endpoints per service port (keyed like svcPorts: ServicePortName.String()).
 * Only slices of the given address family are read; slices labelled with
 * service-proxy-name or headless are ignored like kube-proxy's informer does.
 * Service ports without any endpoint get no entry.
 */
export function buildEndpointsMap(
  slices: EndpointSlice[],
  svcPorts: Map<string, ServicePortInfo>,
  family: IPFamily,
  nodeName: string,
): Map<string, EndpointInfo[]> {
  // Group slices by service, in slice-name order so duplicate handling is deterministic.
  const byService = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    if (s.addressType !== family) continue;
    if (!s.serviceName) continue;
    if (SERVICE_PROXY_NAME_LABEL in s.meta.labels || HEADLESS_LABEL in s.meta.labels) continue;
    const k = serviceNN(s.meta.namespace, s.serviceName);
    let arr = byService.get(k);
    if (!arr) byService.set(k, (arr = []));
    arr.push(s);
  }
  const out = new Map<string, EndpointInfo[]>();
  for (const [nn, group] of byService) {
    group.sort((a, b) => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0));
    const slash = nn.indexOf('/');
    const ns = nn.slice(0, slash);
    const name = nn.slice(slash + 1);
    const found = new Map<string, EndpointInfo[]>();
    for (const slice of group) {
      for (const port of slice.ports) {
        if (port.port === null || port.port === 0) continue;
        const key = servicePortNameString(ns, name, port.name);
        const sp = svcPorts.get(key);
        // The cache keys by (name, protocol); a slice port whose protocol differs from the service port's matches nothing.
        if (!sp || sp.protocol !== port.protocol) continue;
        let list = found.get(key);
        if (!list) found.set(key, (list = []));
        for (const ep of slice.endpoints) {
          if (ep.addresses.length === 0) continue;
          const ip = canonicalIP(ep.addresses[0]!);
          // A slice's address type decides its family; an address of the other family is dropped.
          if (ip === null || ip.includes(':') !== (family === 'IPv6')) continue;
          const isLocal = ep.nodeName !== undefined && ep.nodeName !== '' && ep.nodeName === nodeName;
          list.push(endpointInfo(ip, port.port, flat(joinHostPort(ip, port.port)), ep, isLocal));
        }
      }
    }
    for (const [key, list] of found) {
      if (list.length === 0) continue;
      out.set(key, withoutDuplicates(list.sort(compareEndpoint)));
    }
  }
  return out;
}

/**
 * One endpoint per "ip:port", from a list sorted by it (stably, so copies are in slice
 * order): the last local copy if there is one, else the first, as the cache's merge
 * keeps them. A sort and a scan rather than a Map per service port: copies are rare.
 */
function withoutDuplicates(sorted: EndpointInfo[]): EndpointInfo[] {
  let i = 1;
  while (i < sorted.length && sorted[i]!.endpoint !== sorted[i - 1]!.endpoint) i++;
  if (i >= sorted.length) return sorted;
  const out: EndpointInfo[] = [];
  for (let start = 0; start < sorted.length; ) {
    let pick = sorted[start]!;
    let end = start + 1;
    for (; end < sorted.length && sorted[end]!.endpoint === pick.endpoint; end++) if (sorted[end]!.isLocal) pick = sorted[end]!;
    out.push(pick);
    start = end;
  }
  return out;
}

/** Local endpoints that are Ready (what the health-check server reports; terminating ones do not count). */
export function localReadyEndpointCount(eps: EndpointInfo[] | undefined): number {
  let n = 0;
  for (const e of eps ?? []) if (e.isLocal && e.ready) n++;
  return n;
}
