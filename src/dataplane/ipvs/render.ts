// ipvs mode, rendered: what upstream's ipvs proxier (pkg/proxy/ipvs/proxier.go
// syncProxyRules + writeIptablesRules) programs for one IP family — the
// addresses on kube-ipvs0, the IPVS virtual and real servers, the ipset
// entries, and the iptables rules that still do masquerading and filtering.
// Pure: the same state and options always give the same bytes.
import type { ClusterState, IPFamily, Protocol } from '../../k8s/types.js';
import { buildEndpointsMap, type EndpointInfo } from '../../proxy/endpoints.js';
import { buildServicePortMap, type ServicePortInfo } from '../../proxy/service-port.js';
import { categorizeEndpoints } from '../../proxy/topology.js';
import { cidrContains, ipFamily, normalizeCIDR, normalizeIP, parseCIDR, parseIP } from '../../util/ip.js';
import type { IpsetSpec, IpvsJumpRule, IpvsRender, RealServer, VirtualServer, VirtualServerKind } from './model.js';
import {
  DEFAULT_SCHEDULER,
  familySetName,
  IPSET_INFO,
  IPTABLES_CHAINS,
  IPTABLES_JUMPS,
  ipsetInfo,
  KUBE_CLUSTER_IP,
  KUBE_EXTERNAL_IP,
  KUBE_EXTERNAL_IP_LOCAL,
  KUBE_FORWARD,
  KUBE_HEALTH_CHECK_NODE_PORT,
  KUBE_IPVS_FILTER,
  KUBE_IPVS_IPS,
  KUBE_IPVS_OUT_FILTER,
  KUBE_LOAD_BALANCER,
  KUBE_LOAD_BALANCER_CHAIN,
  KUBE_LOAD_BALANCER_FW,
  KUBE_LOAD_BALANCER_LOCAL,
  KUBE_LOAD_BALANCER_SOURCE_CIDR,
  KUBE_LOAD_BALANCER_SOURCE_IP,
  KUBE_LOOP_BACK,
  KUBE_MARK_MASQ,
  KUBE_NODE_PORT,
  KUBE_NODE_PORT_LOCAL_SCTP,
  KUBE_NODE_PORT_LOCAL_TCP,
  KUBE_NODE_PORT_LOCAL_UDP,
  KUBE_NODE_PORT_SCTP,
  KUBE_NODE_PORT_TCP,
  KUBE_NODE_PORT_UDP,
  KUBE_POSTROUTING,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
  KUBE_SOURCE_RANGES_FIREWALL,
} from './names.js';
import { formatIpsetRestore, formatIpvsadmRestore } from './text.js';

export interface IpvsRenderOptions {
  family: IPFamily;
  /** This node's name: endpoints on it are local (eTP/iTP Local, KUBE-LOOP-BACK). */
  nodeName: string;
  /**
   * The node's addresses (upstream: every local address except those on kube-ipvs0).
   * NodePort virtual servers are made on them. Default: the Node object's
   * InternalIP/ExternalIP addresses of this family.
   */
  nodeIPs?: string[];
  /** The primary node IP (checked against loadBalancerSourceRanges). Default: the first node IP. */
  nodeIP?: string;
  /** --nodeport-addresses CIDRs; empty (or a zero CIDR) means every node address. */
  nodePortAddresses?: string[];
  /** --ipvs-scheduler; default rr. */
  scheduler?: string;
  /** --masquerade-all. */
  masqueradeAll?: boolean;
  /** --iptables-masquerade-bit; default 14. */
  masqueradeBit?: number;
  /** --cluster-cidr (local traffic detection ClusterCIDR): traffic from outside it to a ClusterIP is masqueraded. */
  clusterCIDR?: string;
  /** --cluster-cidr as a list (dual-stack); the CIDR of this family is used. */
  clusterCIDRs?: string[];
  /** --detect-local-mode; default ClusterCIDR. */
  detectLocalMode?: 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix';
  /** The node's pod CIDRs for NodeCIDR (default: the Node object's podCIDRs). */
  nodePodCIDRs?: string[];
  bridgeInterface?: string;
  interfaceNamePrefix?: string;
  /** MASQUERADE --random-fully (upstream adds it when iptables supports it); default true. */
  randomFully?: boolean;
  /** Node labels for topology hints; default: the Node object's labels. */
  nodeLabels?: Record<string, string>;
}

/** Upstream: fmt.Sprintf("%#08x", 1<<bit), e.g. "0x004000". */
export function masqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`invalid masquerade bit ${bit}: must be 0..31`);
  return `0x${(2 ** bit).toString(16).padStart(6, '0')}`;
}

function familyNum(f: IPFamily): 4 | 6 {
  return f === 'IPv4' ? 4 : 6;
}

/** The node's addresses from its Node object (InternalIP and ExternalIP of the family, in order). */
export function nodeAddressesFromState(state: ClusterState, nodeName: string, family: IPFamily): string[] {
  const node = state.nodes.find((n) => n.meta.name === nodeName);
  if (!node) return [];
  const out: string[] = [];
  for (const a of node.addresses) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    const ip = normalizeIP(a.address);
    if (ip && ipFamily(ip) === familyNum(family) && !out.includes(ip)) out.push(ip);
  }
  return out;
}

function isLoopback(ip: string): boolean {
  const p = parseIP(ip);
  if (!p) return false;
  if (p.family === 4) return p.bytes[0] === 127;
  return p.bytes.every((b, i) => (i === 15 ? b === 1 : b === 0));
}

/** Upstream NodePortAddresses: the node IPs NodePorts listen on. */
function nodePortIPs(nodeIPs: string[], cidrs: string[] | undefined, family: IPFamily, primary: string | null): string[] {
  // "primary" stands for the node's primary IP of each family.
  const expanded = (cidrs ?? []).flatMap((c) => (c.trim() === 'primary' ? (primary ? [primary.includes(':') ? `${primary}/128` : `${primary}/32`] : []) : [c]));
  const mine = expanded.map((c) => c.trim()).filter((c) => parseCIDR(c)?.family === familyNum(family));
  const parsed = mine.map((c) => {
    const p = parseCIDR(c);
    if (!p) throw new Error(`invalid --nodeport-addresses CIDR ${JSON.stringify(c)}`);
    return p;
  });
  // Loopback and IPv6 link-local addresses never count as node addresses here (upstream isValidForSet).
  const usable = nodeIPs.filter((ip) => !isLoopback(ip) && !(ip.includes(':') && cidrContains('fe80::/10', ip)));
  if (parsed.length === 0 || parsed.some((p) => p.prefix === 0)) return usable;
  return usable.filter((ip) => parsed.some((p) => cidrContains(p, ip)));
}

/** Upstream's LocalTrafficDetector for --detect-local-mode; undefined when it has nothing to detect with (a no-op detector). */
function localDetector(opts: IpvsRenderOptions, family: IPFamily, nodePodCIDRs: string[] | undefined): string[] | undefined {
  const want = familyNum(family);
  const cidrOf = (list: string[] | undefined): string | undefined => {
    for (const c of list ?? []) {
      const n = normalizeCIDR(c);
      if (!n) throw new Error(`invalid CIDR ${JSON.stringify(c)}`);
      if (parseCIDR(n)!.family === want) return n;
    }
    return undefined;
  };
  switch (opts.detectLocalMode ?? 'ClusterCIDR') {
    case 'ClusterCIDR': {
      const c = cidrOf([...(opts.clusterCIDR ? [opts.clusterCIDR] : []), ...(opts.clusterCIDRs ?? [])]);
      return c ? ['!', '-s', c] : undefined;
    }
    case 'NodeCIDR': {
      const c = cidrOf(opts.nodePodCIDRs ?? nodePodCIDRs);
      return c ? ['!', '-s', c] : undefined;
    }
    case 'BridgeInterface':
      return opts.bridgeInterface ? ['!', '-i', opts.bridgeInterface] : undefined;
    case 'InterfaceNamePrefix':
      return opts.interfaceNamePrefix ? ['!', '-i', `${opts.interfaceNamePrefix}+`] : undefined;
  }
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class SetEntries {
  private readonly sets = new Map<string, Set<string>>();
  add(set: string, entry: string): void {
    let s = this.sets.get(set);
    if (!s) this.sets.set(set, (s = new Set()));
    s.add(entry);
  }
  empty(set: string): boolean {
    return (this.sets.get(set)?.size ?? 0) === 0;
  }
  list(set: string): string[] {
    return [...(this.sets.get(set) ?? [])].sort(cmpStr);
  }
}

/** Renders ipvs mode for one family. Throws on an invalid option (scheduler names are checked by the caller). */
export function renderIpvs(state: ClusterState, opts: IpvsRenderOptions): IpvsRender {
  const family = opts.family;
  const scheduler = opts.scheduler || DEFAULT_SCHEDULER;
  const mark = masqueradeMark(opts.masqueradeBit ?? 14);
  const node = state.nodes.find((n) => n.meta.name === opts.nodeName);
  const nodeLabels = opts.nodeLabels ?? node?.meta.labels ?? {};
  const nodeAddrs = (opts.nodeIPs ?? nodeAddressesFromState(state, opts.nodeName, family))
    .map((ip) => {
      const n = normalizeIP(ip);
      if (!n) throw new Error(`invalid node IP ${JSON.stringify(ip)}`);
      return n;
    })
    .filter((ip) => ipFamily(ip) === familyNum(family));
  // Upstream's node address set leaves out loopback and IPv6 link-local addresses (isValidForSet).
  const nodeAddressSet = new Set(nodeAddrs.filter((ip) => !isLoopback(ip) && !(ip.includes(':') && cidrContains('fe80::/10', ip))));
  const primaryNodeIP = opts.nodeIP ? normalizeIP(opts.nodeIP) : nodeAddrs[0] ?? null;
  const ifNotLocal = localDetector(opts, family, node?.podCIDRs);

  const svcPorts = buildServicePortMap(state.services, family);
  const epMap = buildEndpointsMap(state.endpointSlices, svcPorts, family, opts.nodeName);
  const hasNodePort = [...svcPorts.values()].some((sp) => sp.nodePort !== 0);
  const npIPs = hasNodePort ? nodePortIPs(nodeAddrs, opts.nodePortAddresses, family, primaryNodeIP) : [];

  const sets = new SetEntries();
  const vss: VirtualServer[] = [];
  const bindAddrs = new Set<string>();
  const lbNoNodeAccess: { ip: string; proto: string; port: number }[] = [];

  const makeVS = (sp: ServicePortInfo, kind: VirtualServerKind, address: string, port: number, bound: boolean, onlyLocal: boolean): void => {
    const vs: VirtualServer = {
      protocol: sp.protocol,
      address,
      port,
      scheduler,
      schedFlags: scheduler === 'mh' ? ['mh-port'] : [],
      kind,
      service: sp.key,
      bound,
      realServers: realServersFor(sp, epMap.get(sp.key) ?? [], onlyLocal, opts.nodeName, nodeLabels),
    };
    if (sp.sessionAffinity === 'ClientIP') vs.persistentTimeout = sp.stickyMaxAgeSeconds;
    vss.push(vs);
    if (bound) bindAddrs.add(address);
  };

  for (const sp of svcPorts.values()) {
    const proto = sp.protocol.toLowerCase();
    // Hairpin: a local endpoint reaching itself through the service is masqueraded.
    for (const ep of epMap.get(sp.key) ?? []) {
      if (!ep.isLocal) continue;
      sets.add(KUBE_LOOP_BACK, `${ep.ip},${proto}:${ep.port},${ep.ip}`);
    }

    sets.add(KUBE_CLUSTER_IP, `${sp.clusterIP},${proto}:${sp.port}`);
    makeVS(sp, 'ClusterIP', sp.clusterIP, sp.port, true, sp.internalPolicyLocal);

    for (const eip of sp.externalIPs) {
      sets.add(sp.externalPolicyLocal ? KUBE_EXTERNAL_IP_LOCAL : KUBE_EXTERNAL_IP, `${eip},${proto}:${sp.port}`);
      makeVS(sp, 'ExternalIP', eip, sp.port, !nodeAddressSet.has(eip), sp.externalPolicyLocal);
    }

    for (const lb of sp.loadBalancerVIPs) {
      const entry = `${lb},${proto}:${sp.port}`;
      sets.add(KUBE_LOAD_BALANCER, entry);
      if (sp.externalPolicyLocal) sets.add(KUBE_LOAD_BALANCER_LOCAL, entry);
      if (sp.loadBalancerSourceRanges.length > 0) {
        sets.add(KUBE_LOAD_BALANCER_FW, entry);
        let allowFromNode = false;
        for (const cidr of sp.loadBalancerSourceRanges) {
          const c = normalizeCIDR(cidr);
          if (!c) continue;
          sets.add(KUBE_LOAD_BALANCER_SOURCE_CIDR, `${lb},${proto}:${sp.port},${c}`);
          if (primaryNodeIP && cidrContains(c, primaryNodeIP)) allowFromNode = true;
        }
        // The node reaches an LB VIP bound locally with the VIP itself as source: allow that pair,
        // or, when the node is outside the ranges, drop it explicitly in KUBE-IPVS-OUT-FILTER (#119656).
        if (allowFromNode) sets.add(KUBE_LOAD_BALANCER_SOURCE_IP, `${lb},${proto}:${sp.port},${lb}`);
        else lbNoNodeAccess.push({ ip: lb, proto, port: sp.port });
      }
      makeVS(sp, 'LoadBalancer', lb, sp.port, !nodeAddressSet.has(lb), sp.externalPolicyLocal);
    }

    // Upstream skips the rest of the service (its health check port too) when a NodePort has no node IP to sit on.
    if (sp.nodePort !== 0 && npIPs.length === 0) continue;
    if (sp.nodePort !== 0) {
      let set: string;
      let local: string;
      let entries: string[];
      if (sp.protocol === 'SCTP') {
        set = KUBE_NODE_PORT_SCTP;
        local = KUBE_NODE_PORT_LOCAL_SCTP;
        entries = npIPs.map((ip) => `${ip},${proto}:${sp.nodePort}`);
      } else {
        set = sp.protocol === 'TCP' ? KUBE_NODE_PORT_TCP : KUBE_NODE_PORT_UDP;
        local = sp.protocol === 'TCP' ? KUBE_NODE_PORT_LOCAL_TCP : KUBE_NODE_PORT_LOCAL_UDP;
        entries = [String(sp.nodePort)];
      }
      for (const e of entries) sets.add(set, e);
      if (sp.externalPolicyLocal) for (const e of entries) sets.add(local, e);
      for (const ip of npIPs) makeVS(sp, 'NodePort', ip, sp.nodePort, false, sp.externalPolicyLocal);
    }

    if (sp.healthCheckNodePort !== 0) sets.add(KUBE_HEALTH_CHECK_NODE_PORT, String(sp.healthCheckNodePort));
  }
  for (const a of bindAddrs) sets.add(KUBE_IPVS_IPS, a);

  const ipsets: IpsetSpec[] = IPSET_INFO.map((info) => ({
    name: familySetName(info.name, family),
    type: info.type,
    family: family === 'IPv6' ? 'inet6' : 'inet',
    comment: info.comment,
    entries: sets.list(info.name),
  }));

  const { natRules, filterRules } = iptablesRules(sets, family, mark, {
    masqueradeAll: opts.masqueradeAll ?? false,
    ifNotLocal,
    randomFully: opts.randomFully ?? true,
    lbNoNodeAccess,
  });
  const jumps: IpvsJumpRule[] = IPTABLES_JUMPS.map((j) => ({
    table: j.table,
    chain: j.from,
    args: ['-m', 'comment', '--comment', `"${j.comment}"`, '-j', j.to],
  }));

  const render: IpvsRender = {
    family,
    scheduler,
    interfaceAddresses: [...bindAddrs].sort(compareIP),
    virtualServers: vss,
    ipsets,
    natRules,
    filterRules,
    jumps,
    nodePortAddresses: npIPs,
    ipvsadmRestore: '',
    ipsetRestore: '',
    iptablesRestore: '',
  };
  render.ipvsadmRestore = formatIpvsadmRestore(vss);
  render.ipsetRestore = formatIpsetRestore(ipsets);
  render.iptablesRestore = formatIptablesRestore(natRules, filterRules);
  return render;
}

function compareIP(a: string, b: string): number {
  const pa = parseIP(a)!;
  const pb = parseIP(b)!;
  if (pa.bytes.length !== pb.bytes.length) return pa.bytes.length - pb.bytes.length;
  for (let i = 0; i < pa.bytes.length; i++) if (pa.bytes[i] !== pb.bytes[i]) return pa.bytes[i]! - pb.bytes[i]!;
  return 0;
}

/** Upstream syncEndpoint: local endpoints for Local policy (falling back to cluster ones, PR #97081), else cluster ones. */
function realServersFor(
  sp: ServicePortInfo,
  eps: EndpointInfo[],
  onlyNodeLocal: boolean,
  nodeName: string,
  nodeLabels: Record<string, string>,
): RealServer[] {
  const cat = categorizeEndpoints(eps, sp, nodeName, nodeLabels);
  let chosen: EndpointInfo[];
  if (onlyNodeLocal) chosen = cat.localEndpoints.length > 0 ? cat.localEndpoints : cat.clusterEndpoints;
  else chosen = cat.clusterEndpoints;
  const seen = new Set<string>();
  const out: RealServer[] = [];
  for (const ep of chosen) {
    if (seen.has(ep.endpoint)) continue;
    seen.add(ep.endpoint);
    out.push({ address: ep.ip, port: ep.port, weight: 1, forward: 'masq' });
  }
  return out;
}

interface RuleOpts {
  masqueradeAll: boolean;
  /** The local-traffic detector's "not local" match (LocalTrafficDetector.IfNotLocal), e.g. ["!", "-s", "10.244.0.0/16"]. */
  ifNotLocal: string[] | undefined;
  randomFully: boolean;
  lbNoNodeAccess: { ip: string; proto: string; port: number }[];
}

/** Upstream's ipsetWithIptablesChain: a rule per non-empty set, in this order. */
const SET_RULES: readonly { set: string; table: 'nat' | 'filter'; from: string; to: string; match: string; proto?: Protocol }[] = [
  { set: KUBE_LOOP_BACK, table: 'nat', from: KUBE_POSTROUTING, to: 'MASQUERADE', match: 'dst,dst,src' },
  { set: KUBE_LOAD_BALANCER, table: 'nat', from: KUBE_SERVICES, to: KUBE_LOAD_BALANCER_CHAIN, match: 'dst,dst' },
  { set: KUBE_LOAD_BALANCER_LOCAL, table: 'nat', from: KUBE_LOAD_BALANCER_CHAIN, to: 'RETURN', match: 'dst,dst' },
  { set: KUBE_NODE_PORT_LOCAL_TCP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'TCP' },
  { set: KUBE_NODE_PORT_TCP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'TCP' },
  { set: KUBE_NODE_PORT_LOCAL_UDP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'UDP' },
  { set: KUBE_NODE_PORT_UDP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'UDP' },
  { set: KUBE_NODE_PORT_LOCAL_SCTP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst,dst', proto: 'SCTP' },
  { set: KUBE_NODE_PORT_SCTP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst,dst', proto: 'SCTP' },
  { set: KUBE_LOAD_BALANCER_FW, table: 'filter', from: KUBE_PROXY_FIREWALL, to: KUBE_SOURCE_RANGES_FIREWALL, match: 'dst,dst' },
  { set: KUBE_LOAD_BALANCER_SOURCE_CIDR, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL, to: 'RETURN', match: 'dst,dst,src' },
  { set: KUBE_LOAD_BALANCER_SOURCE_IP, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL, to: 'RETURN', match: 'dst,dst,src' },
];

/** Upstream writeIptablesRules, line for line. */
function iptablesRules(sets: SetEntries, family: IPFamily, mark: string, o: RuleOpts): { natRules: string[]; filterRules: string[] } {
  const nat: string[] = [];
  const filter: string[] = [];
  const name = (s: string): string => familySetName(s, family);
  const comment = (s: string): string => `"${ipsetInfo(s).comment}"`;
  const line = (...args: string[]): string => args.join(' ');

  nat.push(line('-A', KUBE_SERVICES, '-s', family === 'IPv6' ? '::1/128' : '127.0.0.0/8', '-j', 'RETURN'));

  for (const r of SET_RULES) {
    if (sets.empty(r.set)) continue;
    const args = ['-A', r.from];
    if (r.proto) args.push('-p', r.proto.toLowerCase());
    args.push('-m', 'comment', '--comment', comment(r.set), '-m', 'set', '--match-set', name(r.set), r.match, '-j', r.to);
    (r.table === 'filter' ? filter : nat).push(line(...args));
  }

  if (!sets.empty(KUBE_CLUSTER_IP)) {
    const args = ['-A', KUBE_SERVICES, '-m', 'comment', '--comment', comment(KUBE_CLUSTER_IP), '-m', 'set', '--match-set', name(KUBE_CLUSTER_IP)];
    if (o.masqueradeAll) nat.push(line(...args, 'dst,dst', '-j', KUBE_MARK_MASQ));
    else if (o.ifNotLocal) nat.push(line(...args, 'dst,dst', ...o.ifNotLocal, '-j', KUBE_MARK_MASQ));
    // Without a way to tell pod traffic, masquerade node traffic that picked a VIP as its source.
    else nat.push(line(...args, 'src,dst', '-j', KUBE_MARK_MASQ));
  }

  const externalIPRules = (args: string[]): void => {
    nat.push(line(...args, '-m', 'physdev', '!', '--physdev-is-in', '-m', 'addrtype', '!', '--src-type', 'LOCAL', '-j', 'ACCEPT'));
    nat.push(line(...args, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'ACCEPT'));
  };
  if (!sets.empty(KUBE_EXTERNAL_IP)) {
    const args = ['-A', KUBE_SERVICES, '-m', 'comment', '--comment', comment(KUBE_EXTERNAL_IP), '-m', 'set', '--match-set', name(KUBE_EXTERNAL_IP), 'dst,dst'];
    nat.push(line(...args, '-j', KUBE_MARK_MASQ));
    externalIPRules(args);
  }
  if (!sets.empty(KUBE_EXTERNAL_IP_LOCAL)) {
    externalIPRules(['-A', KUBE_SERVICES, '-m', 'comment', '--comment', comment(KUBE_EXTERNAL_IP_LOCAL), '-m', 'set', '--match-set', name(KUBE_EXTERNAL_IP_LOCAL), 'dst,dst']);
  }

  nat.push(line('-A', KUBE_SERVICES, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', KUBE_NODE_PORT));
  nat.push(line('-A', KUBE_LOAD_BALANCER_CHAIN, '-j', KUBE_MARK_MASQ));
  filter.push(line('-A', KUBE_SOURCE_RANGES_FIREWALL, '-j', 'DROP'));
  for (const e of o.lbNoNodeAccess) {
    filter.push(line('-A', KUBE_IPVS_OUT_FILTER, '-s', e.ip, '-m', 'ipvs', '--vaddr', e.ip, '--vproto', e.proto, '--vport', String(e.port), '-j', 'DROP'));
  }
  // acceptIPVSTraffic: the last rules of KUBE-SERVICES.
  for (const s of [KUBE_CLUSTER_IP, KUBE_LOAD_BALANCER]) {
    if (!sets.empty(s)) nat.push(line('-A', KUBE_SERVICES, '-m', 'set', '--match-set', name(s), 'dst,dst', '-j', 'ACCEPT'));
  }

  filter.push(line('-A', KUBE_FORWARD, '-m', 'comment', '--comment', '"kubernetes forwarding rules"', '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT'));
  filter.push(
    line('-A', KUBE_FORWARD, '-m', 'comment', '--comment', '"kubernetes forwarding conntrack rule"', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'),
  );
  filter.push(
    line('-A', KUBE_NODE_PORT, '-m', 'comment', '--comment', comment(KUBE_HEALTH_CHECK_NODE_PORT), '-m', 'set', '--match-set', name(KUBE_HEALTH_CHECK_NODE_PORT), 'dst', '-j', 'ACCEPT'),
  );
  // KUBE-IPVS-FILTER (#72236): new connections to a kube-ipvs0 address that is not a service VIP:port are rejected.
  for (const s of [KUBE_LOAD_BALANCER, KUBE_CLUSTER_IP, KUBE_EXTERNAL_IP, KUBE_EXTERNAL_IP_LOCAL]) {
    filter.push(line('-A', KUBE_IPVS_FILTER, '-m', 'set', '--match-set', name(s), 'dst,dst', '-j', 'RETURN'));
  }
  filter.push(line('-A', KUBE_IPVS_FILTER, '-m', 'set', '--match-set', name(KUBE_HEALTH_CHECK_NODE_PORT), 'dst', '-j', 'RETURN'));
  filter.push(line('-A', KUBE_IPVS_FILTER, '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'set', '--match-set', name(KUBE_IPVS_IPS), 'dst', '-j', 'REJECT'));

  nat.push(line('-A', KUBE_POSTROUTING, '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN'));
  nat.push(line('-A', KUBE_POSTROUTING, '-j', 'MARK', '--xor-mark', mark));
  const masq = ['-A', KUBE_POSTROUTING, '-m', 'comment', '--comment', '"kubernetes service traffic requiring SNAT"', '-j', 'MASQUERADE'];
  if (o.randomFully) masq.push('--random-fully');
  nat.push(line(...masq));
  nat.push(line('-A', KUBE_MARK_MASQ, '-j', 'MARK', '--or-mark', mark));
  return { natRules: nat, filterRules: filter };
}

/** The iptables-restore payload: nat chains and rules, then filter (upstream's order), each table committed. */
export function formatIptablesRestore(natRules: string[], filterRules: string[]): string {
  const out: string[] = ['*nat'];
  for (const c of IPTABLES_CHAINS) if (c.table === 'nat') out.push(`:${c.chain} - [0:0]`);
  out.push(...natRules, 'COMMIT', '*filter');
  for (const c of IPTABLES_CHAINS) if (c.table === 'filter') out.push(`:${c.chain} - [0:0]`);
  out.push(...filterRules, 'COMMIT');
  return out.join('\n') + '\n';
}
