// What kproxy's nftables table holds for a cluster, per IP family (pure).
// Two parts: the fixed rules (from the node's settings only) and, per
// service, the set and map elements it contributes. The semantics are
// iptables mode's (render.ts there), decision by decision; the layout is
// this mode's own (layout.ts, docs/nftables.md).
import type { ClusterState, IPFamily, Node } from '../../k8s/types.js';
import { buildEndpointsMap, type EndpointInfo } from '../../proxy/endpoints.js';
import { buildServicePortMap, type ServicePortInfo } from '../../proxy/service-port.js';
import { categorizeEndpoints } from '../../proxy/topology.js';
import { cidrContains, ipFamily, normalizeCIDR, normalizeIP } from '../../util/ip.js';
import { flat } from '../../util/text.js';
import {
  checkInterfaceName,
  formatMasqueradeMark,
  localMatch,
  nodePortAddressesFor,
  pickFamilies,
  type LocalMatch,
  type RenderOptions,
} from '../iptables/render.js';
import { BASE_CHAINS, DISPATCHES, epsMap, familyWords, keyExpr, shapeName, type DispatchName, type FamilyWords, type Proto } from './layout.js';

/** Where each endpoint of a dispatch sat last time ("ip:port" per slot), so a change moves as few slots as it can. */
export type SlotHistory = (d: DispatchName, key: string) => readonly string[] | undefined;

export interface NftFamilyContext {
  family: IPFamily;
  w: FamilyWords;
  nodeName: string;
  nodeLabels: Record<string, string>;
  nodeIP: string | undefined;
  preferSameNode: boolean;
  /** Fixed-rule inputs. */
  mark: string;
  detector: LocalMatch | null;
  masqueradeAll: boolean;
  /** null: NodePorts on every local address; else only these addresses. */
  nodePortIPs: string[] | null;
  beLiberal: boolean;
}

/** One service's contribution: flat [set, key, value] triples (value "" for plain sets) and its slot orders. */
export interface ServiceContribution {
  elems: string[];
  slots: [DispatchName, string, string[]][];
}

export function familyContext(state: ClusterState, opts: RenderOptions, family: IPFamily): NftFamilyContext {
  checkInterfaceName(opts.bridgeInterface, '--pod-bridge-interface');
  checkInterfaceName(opts.interfaceNamePrefix, '--pod-interface-name-prefix');
  const want = family === 'IPv4' ? 4 : 6;
  const node: Node | undefined = state.nodes.find((n) => n.meta.name === opts.nodeName);
  const nodeIPs = opts.nodeIPs.map((ip) => normalizeIP(ip)).filter((ip): ip is string => ip !== null);
  const nodeIP = nodeIPs.find((ip) => ipFamily(ip) === want);
  const npa = nodePortAddressesFor(family, opts.nodePortAddresses ?? [], nodeIP);
  let nodePortIPs: string[] | null = null;
  if (!npa.matchAll) {
    // Like iptables mode's per-address jumps: the local addresses inside the CIDRs; never loopback (no localhost NodePorts here).
    const locals = opts.localAddresses ?? nodeIPs;
    nodePortIPs = [];
    for (const raw of locals) {
      const ip = normalizeIP(raw);
      if (!ip || ipFamily(ip) !== want || nodePortIPs.includes(ip)) continue;
      if (ip === '::1' || ip.startsWith('127.')) continue;
      if (npa.cidrs.some((c) => cidrContains(c, ip))) nodePortIPs.push(ip);
    }
  }
  return {
    family,
    w: familyWords(family),
    nodeName: opts.nodeName,
    nodeLabels: opts.nodeLabels ?? node?.meta.labels ?? {},
    nodeIP,
    preferSameNode: opts.preferSameNode ?? true,
    mark: opts.masqueradeMark ?? formatMasqueradeMark(opts.masqueradeBit ?? 14),
    detector: localMatch(family, opts, node),
    masqueradeAll: opts.masqueradeAll ?? false,
    nodePortIPs,
    beLiberal: opts.conntrackTCPBeLiberal ?? false,
  };
}

function detectorText(m: LocalMatch, w: FamilyWords, local: boolean): string {
  const op = local ? '' : '!= ';
  switch (m.kind) {
    case 'cidr':
      return `${w.addr} saddr ${op}${m.value}`;
    case 'bridge':
      return `iifname ${op}"${m.value}"`;
    case 'prefix':
      return `iifname ${op}"${m.value}*"`;
  }
}

/** The rules that never change with services, per chain in order (shape rules are appended by the caller). */
export function fixedRules(c: NftFamilyContext): Map<string, string[]> {
  const { w, mark } = c;
  const fe = keyExpr('fe', w).expr;
  const np = keyExpr('np', w).expr;
  const masq = `meta mark set meta mark | ${mark}`;
  const r = new Map<string, string[]>();
  const add = (chain: string, rule: string): void => {
    const a = r.get(chain);
    if (a) a.push(rule);
    else r.set(chain, [rule]);
  };
  add('nat-prerouting', 'jump services');
  add('nat-output', 'jump services');
  add('nat-postrouting', 'jump masquerading');

  // Cluster IPs: masquerade off-cluster sources (or all), then pick an endpoint.
  if (c.masqueradeAll) add('services', `${fe} @int-fe ${masq}`);
  else if (c.detector) add('services', `${fe} @int-fe ${detectorText(c.detector, w, false)} ${masq}`);
  add('services', `${fe} @int-fe goto int`);
  // LB source ranges: traffic from elsewhere is not DNATed, and the firewall chain drops it.
  add('services', `${fe} @fw-fe ${fe} . ${w.addr} saddr != @fw-allow return`);
  const external = (chain: string, key: string, p: 'ext' | 'np'): void => {
    add(chain, `${key} @${p}-masq ${masq} goto ${p}-c`);
    // eTP Local: pods and the node itself short-circuit to any endpoint (the node masqueraded); others stay local.
    if (c.detector) add(chain, `${key} @${p}-local ${detectorText(c.detector, w, true)} goto ${p}-c`);
    add(chain, `${key} @${p}-local fib saddr type local ${masq} goto ${p}-c`);
    add(chain, `${key} @${p}-local goto ${p}-l`);
  };
  external('services', fe, 'ext');
  // NodePorts come last, as KUBE-NODEPORTS is the last rule of KUBE-SERVICES.
  if (c.nodePortIPs === null) add('services', `fib daddr type local ${w.addr} daddr != ${w.loopback} jump nodeports`);
  else add('services', `${w.addr} daddr @nodeport-ips jump nodeports`);
  external('nodeports', np, 'np');
  for (const d of DISPATCHES) add(d, `jump ${d}-aff`);

  add('masquerading', `ct status dnat ${w.addr} saddr . ${w.addr} daddr @hairpin ${masq}`);
  add('masquerading', `meta mark & ${mark} == 0 return`);
  add('masquerading', `meta mark set meta mark ^ ${mark}`);
  add('masquerading', 'masquerade fully-random');

  add('service-endpoints', `${fe} @reject-int reject`);
  add('service-endpoints', `${fe} @drop-int drop`);
  add('external-endpoints', `${fe} @reject-ext reject`);
  add('external-endpoints', `${fe} @drop-ext drop`);
  add('external-endpoints', `fib daddr type local ${np} @reject-np reject`);
  add('external-endpoints', `fib daddr type local ${np} @drop-np drop`);
  add('firewall', `${fe} @fw-fe drop`);

  // The hooks and order of iptables mode's jumps (KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS, KUBE-SERVICES, KUBE-FORWARD, KUBE-PROXY-FIREWALL).
  add('filter-input', 'ct state new jump external-endpoints');
  add('filter-input', 'tcp dport @hc-nodeports accept');
  add('filter-input', 'ct state new jump firewall');
  add('filter-forward', 'ct state new jump external-endpoints');
  add('filter-forward', 'ct state new jump service-endpoints');
  if (!c.beLiberal) add('filter-forward', 'ct state invalid drop');
  add('filter-forward', 'ct state new jump firewall');
  add('filter-output', 'ct state new jump service-endpoints');
  add('filter-output', 'ct state new jump firewall');
  for (const b of BASE_CHAINS) if (!r.has(b.name)) r.set(b.name, []);
  return r;
}

/**
 * Slot order for a dispatch: endpoints keep the slot they had; a new one takes
 * a free slot or goes at the end; a hole left at the end shrinks the list and
 * one inside it is filled by the last endpoint. Sticky clients hold a slot, so
 * this keeps every client of a surviving endpoint where it was except those of
 * the one endpoint that moves.
 */
export function assignSlots(prev: readonly string[] | undefined, eps: EndpointInfo[]): EndpointInfo[] {
  if (!prev || prev.length === 0) return eps;
  const by = new Map<string, EndpointInfo>();
  for (const e of eps) by.set(e.endpoint, e);
  const slots: (EndpointInfo | null)[] = prev.map((p) => by.get(p) ?? null);
  const placed = new Set(prev);
  const fresh = eps.filter((e) => !placed.has(e.endpoint));
  let f = 0;
  for (let i = 0; i < slots.length && f < fresh.length; i++) if (slots[i] === null) slots[i] = fresh[f++]!;
  while (f < fresh.length) slots.push(fresh[f++]!);
  for (let i = 0; i < slots.length; i++) {
    while (slots.length > 0 && slots[slots.length - 1] === null) slots.pop();
    if (i < slots.length && slots[i] === null) slots[i] = slots.pop()!;
  }
  return slots as EndpointInfo[];
}

/**
 * An interval set refuses overlapping elements, and CIDRs either nest or are
 * disjoint: keep the widest of each nest (an address inside a range adds nothing).
 */
export function disjointRanges(list: string[]): string[] {
  const prefix = (c: string): number => (c.includes('/') ? Number(c.slice(c.indexOf('/') + 1)) : 128);
  const kept: string[] = [];
  for (const c of [...list].sort((a, b) => prefix(a) - prefix(b))) {
    const addr = c.includes('/') ? c.slice(0, c.indexOf('/')) : c;
    if (kept.some((k) => k === c || (k.includes('/') && cidrContains(k, addr)))) continue;
    kept.push(c);
  }
  return kept;
}

/** The elements one service port contributes (iptables mode's per-service decisions, as set membership). */
export function servicePortElements(sp: ServicePortInfo, eps: EndpointInfo[], c: NftFamilyContext, history: SlotHistory | undefined, out: ServiceContribution): void {
  const proto = sp.protocol.toLowerCase() as Proto;
  const cat = categorizeEndpoints(eps, sp, c.nodeName, c.nodeLabels, { preferSameNode: c.preferSameNode });
  const hasEndpoints = cat.hasAnyEndpoints;
  const e = out.elems;
  const put = (set: string, key: string, value = ''): void => {
    e.push(set, flat(key), flat(value));
  };
  const affinity = sp.sessionAffinity === 'ClientIP' ? sp.stickyMaxAgeSeconds : 0;
  const dispatch = (d: DispatchName, key: string, list: EndpointInfo[]): void => {
    if (list.length === 0) return;
    const ordered = assignSlots(history?.(d, key), list);
    for (let i = 0; i < ordered.length; i++) {
      const ep = ordered[i]!;
      put(epsMap(d, proto), `${key} . ${i}`, `${ep.ip} . ${ep.port}`);
    }
    out.slots.push([d, key, ordered.map((x) => x.endpoint)]);
    if (affinity > 0) {
      put(shapeName.affCount(d, proto, ordered.length, affinity), key);
      put(shapeName.affTimeout(d, proto, affinity), key);
    } else put(shapeName.count(d, proto, ordered.length), key);
  };

  let hasInternal = hasEndpoints;
  let internalVerdict = 'reject';
  let hasExternal = hasEndpoints;
  let externalVerdict = 'reject';
  if (hasEndpoints) {
    if (sp.internalPolicyLocal && cat.localEndpoints.length === 0) {
      hasInternal = false;
      internalVerdict = 'drop';
    }
    if (sp.externalPolicyLocal && cat.localEndpoints.length === 0) {
      hasExternal = false;
      externalVerdict = 'drop';
    }
  }
  const usesCluster = cat.clusterEndpoints.length > 0 && sp.usesClusterEndpoints();
  const usesLocal = cat.localEndpoints.length > 0 && sp.usesLocalEndpoints();
  const clusterEps = usesCluster ? cat.clusterEndpoints : [];
  const localEps = usesLocal ? cat.localEndpoints : [];

  const fe = `${sp.clusterIP} . ${proto} . ${sp.port}`;
  if (hasInternal) {
    put('int-fe', fe);
    dispatch('int', fe, sp.internalPolicyLocal ? localEps : clusterEps);
  } else put(`${internalVerdict}-int`, fe);

  const externalPath = (key: string, p: 'ext' | 'np'): void => {
    if (!sp.externalPolicyLocal) {
      put(`${p}-masq`, key);
      dispatch(`${p}-c`, key, clusterEps);
    } else {
      put(`${p}-local`, key);
      dispatch(`${p}-c`, key, clusterEps);
      if (hasExternal) dispatch(`${p}-l`, key, localEps);
    }
  };
  for (const ip of sp.externalIPs) {
    const k = `${ip} . ${proto} . ${sp.port}`;
    if (hasEndpoints) externalPath(k, 'ext');
    if (!hasExternal) put(`${externalVerdict}-ext`, k);
  }
  const usesFW = hasEndpoints && sp.loadBalancerVIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  let allowFromNode = false;
  const ranges: string[] = [];
  if (usesFW) {
    for (const raw of sp.loadBalancerSourceRanges) {
      const cidr = normalizeCIDR(raw);
      if (!cidr) continue;
      ranges.push(cidr);
      if (c.nodeIP && cidrContains(cidr, c.nodeIP)) allowFromNode = true;
    }
    // The LB may hairpin node traffic back with the LB IP as source.
    if (allowFromNode) for (const ip of sp.loadBalancerVIPs) ranges.push(ip);
  }
  const allowed = disjointRanges(ranges);
  for (const ip of sp.loadBalancerVIPs) {
    const k = `${ip} . ${proto} . ${sp.port}`;
    if (hasEndpoints) externalPath(k, 'ext');
    if (usesFW) {
      put('fw-fe', k);
      for (const r of allowed) put('fw-allow', `${k} . ${r}`);
    }
    if (!hasExternal) put(`${externalVerdict}-ext`, k);
  }
  if (sp.nodePort !== 0) {
    const k = `${proto} . ${sp.nodePort}`;
    if (hasEndpoints) externalPath(k, 'np');
    if (!hasExternal) put(`${externalVerdict}-np`, k);
  }
  if (sp.healthCheckNodePort !== 0) put('hc-nodeports', String(sp.healthCheckNodePort));
  // Only a pod on this node can reach itself through this node's rules (another node's pod is
  // DNATed by its own node), so the hairpin pairs are those of local endpoints, and of endpoints
  // whose node is not known: a few per node instead of one per endpoint in the cluster.
  for (const ep of cat.allReachableEndpoints) if (ep.isLocal || !ep.nodeName) put('hairpin', `${ep.ip} . ${ep.ip}`);
}

/** Every service port of one family, grouped by service (ns/name): what a full sync writes. */
export function renderServices(state: ClusterState, c: NftFamilyContext, history?: SlotHistory): Map<string, ServiceContribution> {
  const svcPorts = buildServicePortMap(state.services, c.family);
  const epMap = buildEndpointsMap(state.endpointSlices, svcPorts, c.family, c.nodeName);
  const out = new Map<string, ServiceContribution>();
  for (const [key, sp] of svcPorts) {
    const nsn = `${sp.namespace}/${sp.name}`;
    let contrib = out.get(nsn);
    if (!contrib) out.set(nsn, (contrib = { elems: [], slots: [] }));
    servicePortElements(sp, epMap.get(key) ?? [], c, history, contrib);
  }
  return out;
}

export { pickFamilies };
