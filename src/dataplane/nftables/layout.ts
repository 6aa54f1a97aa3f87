// The shape of kproxy's nftables table: a fixed set of chains whose rules do
// not depend on any one service, and named sets and maps that hold every
// per-service fact. A rule is added only when a set of a new *shape* appears
// (a service port with an endpoint count, or an affinity timeout, that no
// other service has): the rule for a shape is the same for every service of
// that shape, so services come and go by set elements alone. docs/nftables.md
// explains the layout and why; this file is the one place that spells it.
import type { IPFamily } from '../../k8s/types.js';

export const TABLE = 'kproxy';

/**
 * A dispatch is one place where a packet picks an endpoint: the cluster IP
 * path (`int`), external and load-balancer IPs to cluster or local endpoints
 * (`ext-c`, `ext-l`), and NodePorts likewise (`np-c`, `np-l`).
 */
export type DispatchName = 'int' | 'ext-c' | 'ext-l' | 'np-c' | 'np-l';
export const DISPATCHES: readonly DispatchName[] = ['int', 'ext-c', 'ext-l', 'np-c', 'np-l'];

/** Frontends are keyed by address . protocol . port, NodePorts by protocol . port (any node address). */
export type KeyKind = 'fe' | 'np';

export function dispatchKind(d: DispatchName): KeyKind {
  return d.startsWith('np') ? 'np' : 'fe';
}

export interface FamilyWords {
  /** nft family of the table: ip | ip6. */
  nft: 'ip' | 'ip6';
  /** The address payload keyword: ip | ip6 (as in `ip daddr`). */
  addr: 'ip' | 'ip6';
  addrType: 'ipv4_addr' | 'ipv6_addr';
  loopback: string;
}

export function familyWords(f: IPFamily): FamilyWords {
  return f === 'IPv4'
    ? { nft: 'ip', addr: 'ip', addrType: 'ipv4_addr', loopback: '127.0.0.0/8' }
    : { nft: 'ip6', addr: 'ip6', addrType: 'ipv6_addr', loopback: '::1' };
}

/** The packet expression a key kind looks up, and its set type. */
export function keyExpr(k: KeyKind, w: FamilyWords): { expr: string; type: string } {
  return k === 'fe'
    ? { expr: `${w.addr} daddr . meta l4proto . th dport`, type: `${w.addrType} . inet_proto . inet_service` }
    : { expr: 'meta l4proto . th dport', type: 'inet_proto . inet_service' };
}

/**
 * The frontend part of an affinity key. nft 1.0.6 cannot list a set whose
 * `typeof` key has five parts (it loses the types and aborts on the
 * elements), so client . address . port . slot leaves the protocol out: a
 * client's TCP and UDP connections to one IP:port share their affinity.
 */
export function affKeyExpr(k: KeyKind, w: FamilyWords): string {
  return k === 'fe' ? `${w.addr} saddr . ${w.addr} daddr . th dport` : `${w.addr} saddr . meta l4proto . th dport`;
}

/**
 * A constant inside a concatenation: nft 1.0.6 cannot parse a literal there,
 * but `numgen inc mod 1 offset i` always evaluates to i.
 */
export function constant(i: number): string {
  return i === 0 ? 'numgen inc mod 1' : `numgen inc mod 1 offset ${i}`;
}

export type Proto = 'tcp' | 'udp' | 'sctp';
export const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp'];

/**
 * The endpoint map of a dispatch and protocol: frontend . slot → address . port.
 * One per protocol because the value's type is written "tcp dport" (or udp,
 * sctp): nft 1.0.6 reads a value typed "ip daddr . th dport" back from the
 * kernel as conflicting protocols and then refuses any rule that uses the
 * map, while "tcp dport" makes nft add a protocol check to the DNAT rule —
 * right when the map only holds that protocol's frontends.
 */
export function epsMap(d: DispatchName, p: Proto): string {
  return `${d}-eps-${p}`;
}

/** The per-shape set names (parsed back by shapeOf). */
export const shapeName = {
  /** Frontends of a dispatch and protocol with N endpoints, no affinity. */
  count: (d: DispatchName, p: Proto, n: number) => `${d}-${p}-n${n}`,
  /** … with N endpoints and ClientIP affinity of T seconds. */
  affCount: (d: DispatchName, p: Proto, n: number, t: number) => `${d}-${p}-aff-n${n}-t${t}`,
  /** … with affinity of T seconds (gates the sticky lookups). */
  affTimeout: (d: DispatchName, p: Proto, t: number) => `${d}-${p}-aff-t${t}`,
};

export type Shape =
  | { kind: 'count'; d: DispatchName; p: Proto; n: number }
  | { kind: 'affCount'; d: DispatchName; p: Proto; n: number; t: number }
  | { kind: 'affTimeout'; d: DispatchName; p: Proto; t: number };

const SHAPE_RE = /^(int|ext-c|ext-l|np-c|np-l)-(tcp|udp|sctp)-(?:n(\d+)|aff-n(\d+)-t(\d+)|aff-t(\d+))$/;

export function shapeOf(set: string): Shape | null {
  const m = SHAPE_RE.exec(set);
  if (!m) return null;
  const d = m[1] as DispatchName;
  const p = m[2] as Proto;
  if (m[3] !== undefined) return { kind: 'count', d, p, n: Number(m[3]) };
  if (m[4] !== undefined) return { kind: 'affCount', d, p, n: Number(m[4]), t: Number(m[5]) };
  return { kind: 'affTimeout', d, p, t: Number(m[6]) };
}

/** Clients remembered per affinity set (nft's default, 65535, is small for a busy node). */
export const AFFINITY_SET_SIZE = 1048576;

export interface SetDef {
  name: string;
  /** `type …` or `typeof …` line content, as nft wants it after the keyword. */
  spec: string;
  flags?: string;
  /** Filled by the data path (affinity): never flushed or diffed by kproxy. */
  dynamic?: boolean;
  comment?: string;
}

/** The definition of a set given its name (fixed or per shape); null for unknown names. */
export function setDef(name: string, w: FamilyWords): SetDef | null {
  const fe = keyExpr('fe', w);
  const np = keyExpr('np', w);
  const fixed: Record<string, Omit<SetDef, 'name'>> = {
    'int-fe': { spec: `type ${fe.type}`, comment: 'cluster IP frontends with endpoints for internal traffic' },
    'ext-masq': { spec: `type ${fe.type}`, comment: 'external/LB frontends with eTP Cluster (masqueraded)' },
    'ext-local': { spec: `type ${fe.type}`, comment: 'external/LB frontends with eTP Local' },
    'np-masq': { spec: `type ${np.type}`, comment: 'NodePorts with eTP Cluster (masqueraded)' },
    'np-local': { spec: `type ${np.type}`, comment: 'NodePorts with eTP Local' },
    'fw-fe': { spec: `type ${fe.type}`, comment: 'LB frontends with loadBalancerSourceRanges' },
    'fw-allow': { spec: `type ${fe.type} . ${w.addrType}`, flags: 'interval', comment: 'LB frontend . allowed source range' },
    'reject-int': { spec: `type ${fe.type}`, comment: 'cluster IPs of services without endpoints' },
    'drop-int': { spec: `type ${fe.type}`, comment: 'cluster IPs with iTP Local and no local endpoints' },
    'reject-ext': { spec: `type ${fe.type}`, comment: 'external/LB frontends of services without endpoints' },
    'drop-ext': { spec: `type ${fe.type}`, comment: 'external/LB frontends with eTP Local and no local endpoints' },
    'reject-np': { spec: `type ${np.type}`, comment: 'NodePorts of services without endpoints' },
    'drop-np': { spec: `type ${np.type}`, comment: 'NodePorts with eTP Local and no local endpoints' },
    hairpin: { spec: `type ${w.addrType} . ${w.addrType}`, comment: 'endpoint . itself: a pod reaching itself through a service' },
    'hc-nodeports': { spec: 'type inet_service', comment: 'health check node ports' },
    'nodeport-ips': { spec: `type ${w.addrType}`, comment: 'node addresses NodePorts are open on (--nodeport-addresses)' },
  };
  const f = fixed[name];
  if (f) return { name, ...f };
  for (const d of DISPATCHES) {
    const k = keyExpr(dispatchKind(d), w);
    for (const p of PROTOS) {
      if (name === epsMap(d, p)) {
        return { name, spec: `typeof ${k.expr} . numgen random mod 65536 : ${w.addr} daddr . ${p} dport`, comment: 'frontend . slot → endpoint' };
      }
    }
    if (name === `${d}-aff`) {
      return {
        name,
        spec: `typeof ${affKeyExpr(dispatchKind(d), w)} . numgen random mod 65536; size ${AFFINITY_SET_SIZE}`,
        flags: 'dynamic,timeout',
        dynamic: true,
        comment: 'client . address . port . slot (ClientIP affinity, filled by the data path)',
      };
    }
  }
  const s = shapeOf(name);
  if (s) return { name, spec: `type ${keyExpr(dispatchKind(s.d), w).type}` };
  return null;
}

/** Every fixed set, in declaration order (the per-dispatch maps follow). */
export const FIXED_SETS = [
  'int-fe', 'ext-masq', 'ext-local', 'np-masq', 'np-local', 'fw-fe', 'fw-allow', 'reject-int', 'drop-int',
  'reject-ext', 'drop-ext', 'reject-np', 'drop-np', 'hairpin', 'hc-nodeports',
] as const;

export function allFixedSets(withNodePortIPs: boolean): string[] {
  const out: string[] = [...FIXED_SETS];
  if (withNodePortIPs) out.push('nodeport-ips');
  for (const d of DISPATCHES) out.push(...PROTOS.map((p) => epsMap(d, p)), `${d}-aff`);
  return out;
}

/** The rules a shape adds, each as [chain, rule text]. */
export function shapeRules(s: Shape, w: FamilyWords): [string, string][] {
  const k = keyExpr(dispatchKind(s.d), w).expr;
  switch (s.kind) {
    case 'count':
      return [[s.d, `${k} @${shapeName.count(s.d, s.p, s.n)} dnat ${w.addr} to ${k} . numgen random mod ${s.n} map @${epsMap(s.d, s.p)}`]];
    case 'affCount': {
      // A new client: remember a random slot, then take it through the sticky lookups.
      const a = affKeyExpr(dispatchKind(s.d), w);
      return [[
        s.d,
        `${k} @${shapeName.affCount(s.d, s.p, s.n, s.t)} update @${s.d}-aff { ${a} . numgen random mod ${s.n} timeout ${s.t}s } goto ${s.d}-aff`,
      ]];
    }
    case 'affTimeout':
      return [];
  }
}

/**
 * The sticky lookup for slot i of affinity timeout T: a client with a live
 * entry for that slot, whose slot still has an endpoint, refreshes the entry
 * (as `recent --set` does on every new connection) and goes there.
 */
export function affLookupRule(d: DispatchName, p: Proto, t: number, i: number, w: FamilyWords): [string, string] {
  const k = keyExpr(dispatchKind(d), w).expr;
  const a = affKeyExpr(dispatchKind(d), w);
  const c = constant(i);
  return [
    `${d}-aff`,
    `${k} @${shapeName.affTimeout(d, p, t)} ${a} . ${c} @${d}-aff ${k} . ${c} @${epsMap(d, p)} ` +
      `update @${d}-aff { ${a} . ${c} timeout ${t}s } dnat ${w.addr} to ${k} . ${c} map @${epsMap(d, p)}`,
  ];
}

export interface BaseChain {
  name: string;
  type: 'nat' | 'filter';
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  priority: number;
}

/** Numeric priorities: nft 1.0.6 refuses the `dstnat` keyword on output chains. */
export const BASE_CHAINS: BaseChain[] = [
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: 100 },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: 0 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: 0 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: 0 },
];

/** Regular chains, in declaration order. */
export const REGULAR_CHAINS = [
  'services', 'nodeports', 'masquerading', 'service-endpoints', 'external-endpoints', 'firewall',
  ...DISPATCHES.flatMap((d) => [d, `${d}-aff`]),
];
