// The iptables ruleset kube-proxy (iptables mode, upstream master) writes on
// one node, as a structured IptablesRuleset per IP family. Pure: everything
// about the host (node IPs, local addresses, --random-fully support, nfacct
// counters) comes in through RenderOptions. Rule texts follow
// pkg/proxy/iptables/proxier.go syncProxyRules byte for byte.
import type { ClusterState, IPFamily, Node } from '../../k8s/types.js';
import { buildEndpointsMap, type EndpointInfo } from '../../proxy/endpoints.js';
import { buildServicePortMap, type ServicePortInfo } from '../../proxy/service-port.js';
import { categorizeEndpoints } from '../../proxy/topology.js';
import { cidrContains, ipFamily, normalizeCIDR, normalizeIP, parseCIDR, parseIP } from '../../util/ip.js';
import { flat } from '../../util/text.js';
import { endpointChainNamer, servicePortHash } from './chain-names.js';
import type { ChainMap, IptablesRuleset, JumpRule, ServicePortRules, TableName } from './model.js';

export type DetectLocalMode = 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix';

export interface RenderOptions {
  /** The node this ruleset is for (--hostname-override): decides which endpoints are local. */
  nodeName: string;
  /** The node's IPs (primary first per family). The first of a family is upstream's nodeIP. */
  nodeIPs: string[];
  /** Addresses on the node's interfaces, for --nodeport-addresses matching. Default: 127.0.0.1 / ::1, then nodeIPs. */
  localAddresses?: string[];
  /** --cluster-cidr, any families. */
  clusterCIDRs?: string[];
  /** --detect-local-mode; upstream default ClusterCIDR. */
  detectLocalMode?: DetectLocalMode;
  /** For NodeCIDR: the node's pod CIDRs (default: spec.podCIDRs of the Node named nodeName in the state). */
  nodePodCIDRs?: string[];
  /** --pod-bridge-interface (BridgeInterface mode). */
  bridgeInterface?: string;
  /** --pod-interface-name-prefix (InterfaceNamePrefix mode). */
  interfaceNamePrefix?: string;
  /** --masquerade-all. */
  masqueradeAll?: boolean;
  /** --iptables-masquerade-bit; default 14. */
  masqueradeBit?: number;
  /** Overrides the mark text (upstream's unit tests use "0x4000"; real kube-proxy prints "0x00004000"). */
  masqueradeMark?: string;
  /** --nodeport-addresses: CIDRs and/or "primary". Empty: all local addresses. */
  nodePortAddresses?: string[];
  /** --iptables-localhost-nodeports; default true. */
  localhostNodePorts?: boolean;
  /** Installed iptables supports MASQUERADE --random-fully (see detectRandomFully). Default false. */
  randomFully?: boolean;
  /** Which nfacct counters exist (upstream ensures them when the kernel supports nfacct). Default none. */
  nfacct?: { ctStateInvalid?: boolean; localhostNodePorts?: boolean };
  /** sysctl net.netfilter.nf_conntrack_tcp_be_liberal is non-zero: no INVALID drop rule. */
  conntrackTCPBeLiberal?: boolean;
  /** Families to render. Default: those of nodeIPs, else those of the services' cluster IPs, else IPv4. */
  families?: IPFamily[];
  /** Labels of this node (topology.kubernetes.io/zone); default: from the Node object in the state. */
  nodeLabels?: Record<string, string>;
  /** Feature gate PreferSameTrafficDistribution (node hints). Default true. */
  preferSameNode?: boolean;
  /** Overrides large-cluster mode (kproxy run re-renders only changed services and passes the whole cluster's mode). */
  largeClusterMode?: boolean;
}

const KUBE_SERVICES = 'KUBE-SERVICES';
const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
const KUBE_FORWARD = 'KUBE-FORWARD';
const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
const KUBE_FIREWALL = 'KUBE-FIREWALL';
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;
const NFACCT_CT_INVALID = 'ct_state_invalid_dropped_pkts';
const NFACCT_LOCALHOST_NP = 'localhost_nps_accepted_pkts';

/** fmt.Sprintf("%#08x", 1<<bit): Go pads the digits (not the 0x) to 8, e.g. 0x00004000. */
export function formatMasqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`masquerade bit must be 0..31, got ${bit}`);
  return '0x' + (2 ** bit).toString(16).padStart(8, '0');
}

const probCache: string[] = [];

/**
 * fmt.Sprintf("%0.10f", 1.0/n), with Go's exact round-half-to-even on the binary
 * value (Number.toFixed rounds exact ties up: 1/2048 would differ).
 */
export function computeProbability(n: number): string {
  const cached = probCache[n];
  if (cached !== undefined) return cached;
  const x = 1 / n;
  // x = mant / 2^k exactly.
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const hi = buf.getUint32(0);
  const lo = buf.getUint32(4);
  const expBits = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (expBits === 0) e = -1074;
  else {
    mant |= 1n << 52n;
    e = expBits - 1075;
  }
  let out: string;
  if (e >= 0) out = (mant << BigInt(e)).toString() + '.0000000000';
  else {
    const k = BigInt(-e);
    const scaled = mant * 10n ** 10n;
    let q = scaled >> k;
    const r = scaled - (q << k);
    const twice = r << 1n;
    const den = 1n << k;
    if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
    const s = q.toString().padStart(11, '0');
    out = `${s.slice(0, -10)}.${s.slice(-10)}`;
  }
  if (n < 100_000) probCache[n] = out;
  return out;
}

/** A service key (and so every comment built from it) must be plain: DNS names, '/', ':'. */
const SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

interface LocalDetector {
  ifLocal: string;
  ifNotLocal: string;
}

/** What marks traffic as coming from a local pod (--detect-local-mode), independent of how a backend writes it. */
export interface LocalMatch {
  kind: 'cidr' | 'bridge' | 'prefix';
  value: string;
}

/** The local-traffic detector of one family, or null when the mode has nothing to match on (no CIDR of that family…). */
export function localMatch(family: IPFamily, opts: RenderOptions, node: Node | undefined): LocalMatch | null {
  const want = family === 'IPv4' ? 4 : 6;
  const mode = opts.detectLocalMode ?? 'ClusterCIDR';
  const cidrOf = (list: string[] | undefined): string | null => {
    for (const c of list ?? []) {
      const p = parseCIDR(c);
      if (p && p.family === want) return normalizeCIDR(c);
    }
    return null;
  };
  let m: LocalMatch | null = null;
  switch (mode) {
    case 'ClusterCIDR': {
      const c = cidrOf(opts.clusterCIDRs);
      if (c) m = { kind: 'cidr', value: c };
      break;
    }
    case 'NodeCIDR': {
      const c = cidrOf(opts.nodePodCIDRs ?? node?.podCIDRs);
      if (c) m = { kind: 'cidr', value: c };
      break;
    }
    case 'BridgeInterface':
      if (opts.bridgeInterface) m = { kind: 'bridge', value: opts.bridgeInterface };
      break;
    case 'InterfaceNamePrefix':
      if (opts.interfaceNamePrefix) m = { kind: 'prefix', value: opts.interfaceNamePrefix };
      break;
  }
  return m;
}

function localDetector(family: IPFamily, opts: RenderOptions, node: Node | undefined): LocalDetector | null {
  const m = localMatch(family, opts, node);
  if (!m) return null;
  switch (m.kind) {
    case 'cidr':
      return { ifLocal: `-s ${m.value}`, ifNotLocal: `! -s ${m.value}` };
    case 'bridge':
      return { ifLocal: `-i ${m.value}`, ifNotLocal: `! -i ${m.value}` };
    case 'prefix':
      return { ifLocal: `-i ${m.value}+`, ifNotLocal: `! -i ${m.value}+` };
  }
}

/** Interface names go into rules unquoted: refuse anything iptables would not take as one. */
export function checkInterfaceName(name: string | undefined, flag: string): void {
  if (name !== undefined && !/^[A-Za-z0-9._@-]{1,15}$/.test(name)) {
    throw new Error(`${flag} ${JSON.stringify(name)} is not a valid interface name`);
  }
}

export interface NodePortAddresses {
  matchAll: boolean;
  containsLoopback: boolean;
  cidrs: string[];
}

/** proxyutil.NewNodePortAddresses for one family ("primary" = the node IP of that family). */
export function nodePortAddressesFor(family: IPFamily, list: string[], nodeIP: string | undefined): NodePortAddresses {
  const want = family === 'IPv4' ? 4 : 6;
  const cidrs: string[] = [];
  let matchAll = false;
  for (const raw of list) {
    const s = raw.trim();
    if (s === '') continue;
    let c: string | null;
    if (s === 'primary') {
      if (!nodeIP) continue;
      c = nodeIP + (want === 4 ? '/32' : '/128');
    } else {
      const p = parseCIDR(s);
      if (!p) throw new Error(`--nodeport-addresses: ${JSON.stringify(s)} is neither a CIDR nor "primary"`);
      if (p.family !== want) continue;
      c = normalizeCIDR(s);
    }
    if (!c) continue;
    if (parseCIDR(c)!.prefix === 0) matchAll = true;
    cidrs.push(c);
  }
  if (cidrs.length === 0) matchAll = true;
  // As upstream: a CIDR whose network address is loopback, or one that contains 127.0.0.0.
  const containsLoopback =
    want === 4 && (matchAll || cidrs.some((c) => c.startsWith('127.') || cidrContains(c, '127.0.0.0')));
  return { matchAll, containsLoopback, cidrs };
}

export function pickFamilies(state: ClusterState, opts: RenderOptions): IPFamily[] {
  if (opts.families && opts.families.length) return opts.families;
  const fams = new Set<IPFamily>();
  for (const ip of opts.nodeIPs) {
    const f = ipFamily(ip);
    if (f) fams.add(f === 4 ? 'IPv4' : 'IPv6');
  }
  if (fams.size === 0) {
    for (const s of state.services) for (const ip of s.clusterIPs) {
      const f = ipFamily(ip);
      if (f) fams.add(f === 4 ? 'IPv4' : 'IPv6');
    }
  }
  if (fams.size === 0) fams.add('IPv4');
  return (['IPv4', 'IPv6'] as IPFamily[]).filter((f) => fams.has(f));
}

function push(m: ChainMap, chain: string, rule: string): void {
  rule = flat(rule);
  const a = m.get(chain);
  if (a) a.push(rule);
  else m.set(chain, [rule]);
}

/**
 * Jump rules from the built-in chains (iptablesJumpChains + iptablesKubeletJumpChains), in
 * upstream order. Upstream ensures the target chain exists (EnsureChain), then the rule
 * (EnsureRule Prepend), on every full sync and in both families; KUBE-FIREWALL is kubelet's
 * chain too, so its jumps are always there even when kube-proxy writes no rule into it.
 */
function jumpRules(): JumpRule[] {
  const j = (table: TableName, chain: string, extra: string[], comment: string, dst: string): JumpRule => ({
    table,
    chain,
    args: [...extra, '-m', 'comment', '--comment', comment, '-j', dst],
  });
  const ctNew = ['-m', 'conntrack', '--ctstate', 'NEW'];
  const out: JumpRule[] = [
    j('filter', 'INPUT', ctNew, 'kubernetes externally-visible service portals', KUBE_EXTERNAL_SERVICES),
    j('filter', 'FORWARD', ctNew, 'kubernetes externally-visible service portals', KUBE_EXTERNAL_SERVICES),
    j('filter', 'INPUT', [], 'kubernetes health check service ports', KUBE_NODEPORTS),
    j('filter', 'FORWARD', ctNew, 'kubernetes service portals', KUBE_SERVICES),
    j('filter', 'OUTPUT', ctNew, 'kubernetes service portals', KUBE_SERVICES),
    j('filter', 'FORWARD', [], 'kubernetes forwarding rules', KUBE_FORWARD),
    j('filter', 'INPUT', ctNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('filter', 'OUTPUT', ctNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('filter', 'FORWARD', ctNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('nat', 'OUTPUT', [], 'kubernetes service portals', KUBE_SERVICES),
    j('nat', 'PREROUTING', [], 'kubernetes service portals', KUBE_SERVICES),
    j('nat', 'POSTROUTING', [], 'kubernetes postrouting rules', KUBE_POSTROUTING),
  ];
  out.push({ table: 'filter', chain: 'INPUT', args: ['-j', KUBE_FIREWALL] });
  out.push({ table: 'filter', chain: 'OUTPUT', args: ['-j', KUBE_FIREWALL] });
  return out;
}

/** Renders one ruleset per IP family the node handles. */
export function renderIptables(state: ClusterState, opts: RenderOptions): IptablesRuleset[] {
  return pickFamilies(state, opts).map((f) => renderFamily(state, opts, f));
}

/**
 * `counts`, when given, receives each service's (ns/name) endpoint count as
 * large-cluster mode counts them, so the sync loop can keep the total up to
 * date per service without building the endpoints map a second time.
 */
export function renderFamily(state: ClusterState, opts: RenderOptions, family: IPFamily, counts?: Map<string, number>): IptablesRuleset {
  checkInterfaceName(opts.bridgeInterface, '--pod-bridge-interface');
  checkInterfaceName(opts.interfaceNamePrefix, '--pod-interface-name-prefix');
  const want = family === 'IPv4' ? 4 : 6;
  const isIPv6 = family === 'IPv6';
  const node = state.nodes.find((n) => n.meta.name === opts.nodeName);
  const nodeLabels = opts.nodeLabels ?? node?.meta.labels ?? {};
  const nodeIPs = opts.nodeIPs.map((ip) => normalizeIP(ip)).filter((ip): ip is string => ip !== null);
  const nodeIP = nodeIPs.find((ip) => ipFamily(ip) === want);
  const mark = opts.masqueradeMark ?? formatMasqueradeMark(opts.masqueradeBit ?? 14);
  const detector = localDetector(family, opts, node);
  const masqueradeAll = opts.masqueradeAll ?? false;
  const npa = nodePortAddressesFor(family, opts.nodePortAddresses ?? [], nodeIP);
  // Upstream turns localhost NodePorts off unless the NodePort addresses include IPv4 loopback; IPv6 never has them.
  const localhostNodePorts = (opts.localhostNodePorts ?? true) && !isIPv6 && npa.containsLoopback;
  const nfCtInvalid = opts.nfacct?.ctStateInvalid ?? false;
  const nfLocalhost = opts.nfacct?.localhostNodePorts ?? false;

  const svcPorts = buildServicePortMap(state.services, family);
  const epMap = buildEndpointsMap(state.endpointSlices, svcPorts, family, opts.nodeName);
  let endpointCount = 0;
  for (const [key, sp] of svcPorts) {
    const n = epMap.get(key)?.length ?? 0;
    endpointCount += n;
    if (counts) {
      const k = `${sp.namespace}/${sp.name}`;
      counts.set(k, (counts.get(k) ?? 0) + n);
    }
  }
  const largeClusterMode = opts.largeClusterMode ?? endpointCount > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;

  // Fixed chains, declared in upstream's order.
  const filterFixed: ChainMap = new Map();
  for (const c of [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]) {
    filterFixed.set(c, []);
  }
  if (localhostNodePorts) {
    filterFixed.set(KUBE_FIREWALL, [
      `-A ${KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    ]);
  }
  const fwd = filterFixed.get(KUBE_FORWARD)!;
  if (!opts.conntrackTCPBeLiberal) {
    fwd.push(
      `-A ${KUBE_FORWARD} -m conntrack --ctstate INVALID${nfCtInvalid ? ` -m nfacct --nfacct-name ${NFACCT_CT_INVALID}` : ''} -j DROP`,
    );
  }
  fwd.push(`-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`);
  fwd.push(
    `-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  );
  const natFixed: ChainMap = new Map();
  natFixed.set(KUBE_SERVICES, []);
  natFixed.set(KUBE_NODEPORTS, []);
  natFixed.set(KUBE_POSTROUTING, [
    `-A ${KUBE_POSTROUTING} -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A ${KUBE_POSTROUTING} -j MARK --xor-mark ${mark}`,
    `-A ${KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${opts.randomFully ? ' --random-fully' : ''}`,
  ]);
  natFixed.set(KUBE_MARK_MASQ, [`-A ${KUBE_MARK_MASQ} -j MARK --or-mark ${mark}`]);

  // The KUBE-SERVICES → KUBE-NODEPORTS jump(s), written after every service rule.
  const natTrailing: ChainMap = new Map();
  const lastComment = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"';
  if (npa.matchAll) {
    let dest = '-m addrtype --dst-type LOCAL';
    if (isIPv6) dest += ' ! -d ::1/128';
    else if (!localhostNodePorts) dest += ' ! -d 127.0.0.0/8';
    push(natTrailing, KUBE_SERVICES, `-A ${KUBE_SERVICES} -m comment --comment ${lastComment} ${dest} -j ${KUBE_NODEPORTS}`);
  } else {
    // Interface order: lo comes first on a real node.
    const locals = opts.localAddresses ?? [isIPv6 ? '::1' : '127.0.0.1', ...nodeIPs];
    const seen = new Set<string>();
    for (const raw of locals) {
      const ip = normalizeIP(raw);
      if (!ip || ipFamily(ip) !== want || seen.has(ip)) continue;
      if (!npa.cidrs.some((c) => cidrContains(c, ip))) continue;
      const p = parseIP(ip)!;
      const loopback = want === 4 ? p.bytes[0] === 127 : ip === '::1';
      if (loopback && (isIPv6 || !localhostNodePorts)) continue;
      seen.add(ip);
      push(natTrailing, KUBE_SERVICES, `-A ${KUBE_SERVICES} -m comment --comment ${lastComment} -d ${ip} -j ${KUBE_NODEPORTS}`);
    }
  }

  const services: ServicePortRules[] = [];
  const skipped: { key: string; reason: string }[] = [];
  const ctx: SvcCtx = {
    family,
    nodeName: opts.nodeName,
    nodeLabels,
    nodeIP,
    detector,
    masqueradeAll,
    localhostNodePort: localhostNodePorts && nfLocalhost,
    largeClusterMode,
    preferSameNode: opts.preferSameNode ?? true,
  };
  for (const [key, svc] of svcPorts) {
    if (!SAFE_KEY.test(key)) {
      skipped.push({ key, reason: 'service or port name contains characters that cannot appear in an iptables comment' });
      continue;
    }
    services.push(renderServicePort(svc, epMap.get(key) ?? [], ctx));
  }

  return {
    family,
    fixed: { filter: filterFixed, nat: natFixed },
    trailing: { filter: new Map(), nat: natTrailing },
    services,
    jumps: jumpRules(),
    endpointCount,
    largeClusterMode,
    skipped,
  };
}

interface SvcCtx {
  family: IPFamily;
  nodeName: string;
  nodeLabels: Record<string, string>;
  nodeIP: string | undefined;
  detector: LocalDetector | null;
  masqueradeAll: boolean;
  /** Write the 127.0.0.0/8 nfacct NodePort rule (localhost NodePorts on, IPv4, counter present). */
  localhostNodePort: boolean;
  largeClusterMode: boolean;
  preferSameNode: boolean;
}

/** The rules one service port contributes (the body of upstream's per-service loop). */
export function renderServicePort(svc: ServicePortInfo, eps: EndpointInfo[], ctx: SvcCtx): ServicePortRules {
  const name = svc.key;
  const proto = svc.protocol.toLowerCase();
  const mp = `-m ${proto} -p ${proto}`;
  const cat = categorizeEndpoints(eps, svc, ctx.nodeName, ctx.nodeLabels, { preferSameNode: ctx.preferSameNode });
  const hasEndpoints = cat.hasAnyEndpoints;

  const h = servicePortHash(name, proto);
  const svcChain = flat('KUBE-SVC-' + h);
  const svlChain = flat('KUBE-SVL-' + h);
  const extChain = flat('KUBE-EXT-' + h);
  const fwChain = flat('KUBE-FW-' + h);
  const usesClusterPolicyChain = cat.clusterEndpoints.length > 0 && svc.usesClusterEndpoints();
  const usesLocalPolicyChain = cat.localEndpoints.length > 0 && svc.usesLocalEndpoints();
  const internalPolicyChain = svc.internalPolicyLocal ? svlChain : svcChain;
  const externalPolicyChain = svc.externalPolicyLocal ? svlChain : svcChain;
  const internalTrafficChain = internalPolicyChain;
  const usesExternalTrafficChain = hasEndpoints && svc.externallyAccessible();
  const usesFWChain = hasEndpoints && svc.loadBalancerVIPs.length > 0 && svc.loadBalancerSourceRanges.length > 0;
  const loadBalancerTrafficChain = usesFWChain ? fwChain : extChain;

  let hasInternalEndpoints = hasEndpoints;
  let hasExternalEndpoints = hasEndpoints;
  let internalTarget = '';
  let internalComment = '';
  let externalTarget = '';
  let externalComment = '';
  if (!hasEndpoints) {
    internalTarget = externalTarget = 'REJECT';
    internalComment = externalComment = `"${name} has no endpoints"`;
  } else {
    if (svc.internalPolicyLocal && cat.localEndpoints.length === 0) {
      hasInternalEndpoints = false;
      internalTarget = 'DROP';
      internalComment = `"${name} has no local endpoints"`;
    }
    if (svc.externalPolicyLocal && cat.localEndpoints.length === 0) {
      hasExternalEndpoints = false;
      externalTarget = 'DROP';
      externalComment = `"${name} has no local endpoints"`;
    }
  }

  const natShared: ChainMap = new Map();
  const filterShared: ChainMap = new Map();
  const chains: ChainMap = new Map();
  const port = svc.port;

  // ClusterIP.
  if (hasInternalEndpoints) {
    push(natShared, KUBE_SERVICES,
      `-A ${KUBE_SERVICES} -m comment --comment "${name} cluster IP" ${mp} -d ${svc.clusterIP} --dport ${port} -j ${internalTrafficChain}`);
  } else {
    push(filterShared, KUBE_SERVICES,
      `-A ${KUBE_SERVICES} -m comment --comment ${internalComment} ${mp} -d ${svc.clusterIP} --dport ${port} -j ${internalTarget}`);
  }
  // External IPs.
  for (const ip of svc.externalIPs) {
    if (hasEndpoints) {
      push(natShared, KUBE_SERVICES,
        `-A ${KUBE_SERVICES} -m comment --comment "${name} external IP" ${mp} -d ${ip} --dport ${port} -j ${extChain}`);
    }
    if (!hasExternalEndpoints) {
      push(filterShared, KUBE_EXTERNAL_SERVICES,
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalComment} ${mp} -d ${ip} --dport ${port} -j ${externalTarget}`);
    }
  }
  // Load balancer IPs.
  for (const ip of svc.loadBalancerVIPs) {
    if (hasEndpoints) {
      push(natShared, KUBE_SERVICES,
        `-A ${KUBE_SERVICES} -m comment --comment "${name} loadbalancer IP" ${mp} -d ${ip} --dport ${port} -j ${loadBalancerTrafficChain}`);
    }
    if (usesFWChain) {
      push(filterShared, KUBE_PROXY_FIREWALL,
        `-A ${KUBE_PROXY_FIREWALL} -m comment --comment "${name} traffic not accepted by ${fwChain}" ${mp} -d ${ip} --dport ${port} -j DROP`);
    }
  }
  if (!hasExternalEndpoints) {
    for (const ip of svc.loadBalancerVIPs) {
      push(filterShared, KUBE_EXTERNAL_SERVICES,
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalComment} ${mp} -d ${ip} --dport ${port} -j ${externalTarget}`);
    }
  }
  // NodePort.
  if (svc.nodePort !== 0) {
    if (hasEndpoints) {
      if (ctx.localhostNodePort) {
        push(natShared, KUBE_NODEPORTS,
          `-A ${KUBE_NODEPORTS} -m comment --comment ${name} ${mp} -d 127.0.0.0/8 --dport ${svc.nodePort} -m nfacct --nfacct-name ${NFACCT_LOCALHOST_NP} -j ${extChain}`);
      }
      push(natShared, KUBE_NODEPORTS, `-A ${KUBE_NODEPORTS} -m comment --comment ${name} ${mp} --dport ${svc.nodePort} -j ${extChain}`);
    }
    if (!hasExternalEndpoints) {
      push(filterShared, KUBE_EXTERNAL_SERVICES,
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalComment} -m addrtype --dst-type LOCAL ${mp} --dport ${svc.nodePort} -j ${externalTarget}`);
    }
  }
  // Health check NodePort (always TCP).
  if (svc.healthCheckNodePort !== 0) {
    push(filterShared, KUBE_NODEPORTS,
      `-A ${KUBE_NODEPORTS} -m comment --comment "${name} health check node port" -m tcp -p tcp --dport ${svc.healthCheckNodePort} -j ACCEPT`);
  }

  // Masquerade for the internal traffic chain.
  if (hasInternalEndpoints) {
    const args = `-m comment --comment "${name} cluster IP" ${mp} -d ${svc.clusterIP} --dport ${port}`;
    if (ctx.masqueradeAll) push(chains, internalTrafficChain, `-A ${internalTrafficChain} ${args} -j ${KUBE_MARK_MASQ}`);
    else if (ctx.detector) push(chains, internalTrafficChain, `-A ${internalTrafficChain} ${args} ${ctx.detector.ifNotLocal} -j ${KUBE_MARK_MASQ}`);
  }
  // External traffic chain.
  if (usesExternalTrafficChain) {
    const ext: string[] = [];
    if (!svc.externalPolicyLocal) {
      ext.push(`-A ${extChain} -m comment --comment "masquerade traffic for ${name} external destinations" -j ${KUBE_MARK_MASQ}`);
    } else {
      if (ctx.detector) {
        ext.push(`-A ${extChain} -m comment --comment "pod traffic for ${name} external destinations" ${ctx.detector.ifLocal} -j ${svcChain}`);
      }
      ext.push(`-A ${extChain} -m comment --comment "masquerade LOCAL traffic for ${name} external destinations" -m addrtype --src-type LOCAL -j ${KUBE_MARK_MASQ}`);
      ext.push(`-A ${extChain} -m comment --comment "route LOCAL traffic for ${name} external destinations" -m addrtype --src-type LOCAL -j ${svcChain}`);
    }
    if (hasExternalEndpoints) ext.push(`-A ${extChain} -j ${externalPolicyChain}`);
    chains.set(extChain, ext.map(flat));
  }
  // Firewall chain for LB source ranges.
  if (usesFWChain) {
    const fw: string[] = [];
    let allowFromNode = false;
    for (const raw of svc.loadBalancerSourceRanges) {
      const cidr = normalizeCIDR(raw);
      if (!cidr) continue;
      fw.push(`-A ${fwChain} -m comment --comment "${name} loadbalancer IP" -s ${cidr} -j ${extChain}`);
      if (ctx.nodeIP && cidrContains(cidr, ctx.nodeIP)) allowFromNode = true;
    }
    // The LB may hairpin node traffic back with the LB IP as source.
    if (allowFromNode) {
      for (const ip of svc.loadBalancerVIPs) {
        fw.push(`-A ${fwChain} -m comment --comment "${name} loadbalancer IP" -s ${ip} -j ${extChain}`);
      }
    }
    fw.push(`-A ${fwChain} -m comment --comment "other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL"`);
    chains.set(fwChain, fw.map(flat));
  }
  const proto_ = proto;
  const namer = endpointChainNamer(name, proto_);
  const sepName = (ep: EndpointInfo): string => namer(ep.endpoint);
  if (usesClusterPolicyChain) writeServiceToEndpointRules(chains, svcChain, svc, name, cat.clusterEndpoints, sepName, ctx.largeClusterMode);
  if (usesLocalPolicyChain) writeServiceToEndpointRules(chains, svlChain, svc, name, cat.localEndpoints, sepName, ctx.largeClusterMode);
  // Endpoint chains.
  const comment = ctx.largeClusterMode ? '' : ` -m comment --comment ${name}`;
  for (const ep of cat.allReachableEndpoints) {
    const sep = sepName(ep);
    const affinity = svc.sessionAffinity === 'ClientIP' ? ` -m recent --name ${sep} --set` : '';
    chains.set(sep, [
      flat(`-A ${sep}${comment} -s ${ep.ip} -j ${KUBE_MARK_MASQ}`),
      flat(`-A ${sep}${comment}${affinity} ${mp} -j DNAT --to-destination ${ep.endpoint}`),
    ]);
  }
  return { key: name, shared: { filter: filterShared, nat: natShared }, chains };
}

function writeServiceToEndpointRules(
  chains: ChainMap,
  chain: string,
  svc: ServicePortInfo,
  name: string,
  eps: EndpointInfo[],
  sepName: (ep: EndpointInfo) => string,
  large: boolean,
): void {
  let rules = chains.get(chain);
  if (!rules) chains.set(chain, (rules = []));
  const c = (ep: EndpointInfo): string => (large ? '' : ` -m comment --comment "${name} -> ${ep.endpoint}"`);
  if (svc.sessionAffinity === 'ClientIP') {
    for (const ep of eps) {
      const sep = sepName(ep);
      rules.push(flat(`-A ${chain}${c(ep)} -m recent --name ${sep} --rcheck --seconds ${svc.stickyMaxAgeSeconds} --reap -j ${sep}`));
    }
  }
  const n = eps.length;
  for (let i = 0; i < n; i++) {
    const ep = eps[i]!;
    const stat = i < n - 1 ? ` -m statistic --mode random --probability ${computeProbability(n - i)}` : '';
    rules.push(flat(`-A ${chain}${c(ep)}${stat} -j ${sepName(ep)}`));
  }
}
