// `trace()`: one packet through a ruleset, every outcome with its probability.
//
// Packets arriving (from outside, or from a pod's interface):
//   PREROUTING (raw, conntrack, mangle, nat) → routing → INPUT (mangle, filter, security, nat)
//   or FORWARD (mangle, filter, security) → POSTROUTING (mangle, nat)
// Packets generated locally:
//   OUTPUT (raw, conntrack, mangle, nat, filter, security) → re-routing → POSTROUTING (mangle, nat),
//   and, for a local destination, back in on lo: PREROUTING (raw, mangle), INPUT (mangle, filter, security).
// nat rules run only for a connection's first packet. With `reply`, each accepted outcome's
// answer packet is traced too, un-NATed by conntrack.
import { hostPort, isLoopback, parseAddr, type Addr } from './addr.js';
import { confirm, runHook, type HookContext } from './hooks.js';
import { inferLocalAddresses } from './infer.js';
import type { IpsetStore } from './ipset.js';
import { isLocal, UNKNOWN_IFACE } from './matches.js';
import { findRoute, parseLocalSpec, parseRouteSpec } from './routing.js';
import type { Ruleset } from './ruleset.js';
import { hex } from './targets.js';
import type { Branch, Conn, Env, LocalAddr, LocalDeliveryChoice, Packet, Step, Uncertainty, Verdict } from './state.js';

export type Proto = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6';

export interface TraceRequest {
  proto?: Proto;
  dst: string;
  dport?: number;
  /** Defaults: 203.0.113.2 for arriving packets, the node's first address for local ones. */
  src?: string;
  sport?: number;
  /** 'external' (arrives on eth0), 'local' (a process on the node), or an interface name. */
  from?: string;
  /** "IP" or "IP@IFACE" entries; when absent, inferred from the dump. */
  localIps?: string[];
  /** "CIDR=IFACE[,via=IP][,src=IP]" entries. */
  routes?: string[];
  ipsets?: IpsetStore | null;
  /** Seeded recent lists: [name, ip]. */
  recent?: [string, string][];
  reply?: boolean;
  /** The packet's mark when it enters (0). */
  mark?: number;
  maxBranches?: number;
  /** Step budget per branch. */
  maxSteps?: number;
  localDelivery?: (pkt: Packet) => LocalDeliveryChoice[] | null;
}

export interface PacketDescription {
  proto: string;
  src: string;
  dst: string;
  from: string;
  inInterface: string | null;
}

export interface ReplyOutcome {
  verdict: Verdict;
  delivery: 'local' | 'forward' | 'none';
  /** The answer as the client receives it. */
  source: string;
  destination: string;
  uncertain: boolean;
  uncertainties: Uncertainty[];
  path: Step[];
}

export interface Outcome {
  probability: number;
  verdict: Verdict;
  /** 'local': delivered to a process on the node; 'forward': sent on; 'none': dropped, rejected or stopped. */
  delivery: 'local' | 'forward' | 'none';
  /** ip:port after any DNAT. */
  destination: string;
  /** ip:port after any SNAT/MASQUERADE. */
  source: string;
  dnat: boolean;
  snat: boolean;
  masquerade: boolean;
  outInterface: string | null;
  mark: string;
  ctmark: string;
  rejectWith?: string;
  /** The conntrack entry the connection leaves, in `conntrack -L` form (accepted outcomes only). */
  conntrack?: string;
  uncertain: boolean;
  uncertainties: Uncertainty[];
  notes: string[];
  path: Step[];
  reply?: ReplyOutcome[];
}

export interface TraceResult {
  packet: PacketDescription;
  localAddresses: { addresses: string[]; source: 'given' | 'inferred' | 'none'; evidence: string[] };
  outcomes: Outcome[];
  /** Sum of the probabilities of the outcomes not flagged uncertain. */
  certainProbability: number;
  notes: string[];
}

export class TraceInputError extends Error {}

const DEFAULT_EXTERNAL_CLIENT = '203.0.113.2';
const DEFAULT_SPORT = 40000;

function makeConn(pkt: Packet): Conn {
  return {
    state: 'NEW',
    dir: 'ORIGINAL',
    orig: { src: pkt.src, dst: pkt.dst, sport: pkt.sport, dport: pkt.dport },
    dnat: false,
    snat: false,
    masquerade: false,
    dstNatDone: false,
    srcNatDone: false,
    confirmed: false,
    seenReply: false,
    mark: 0,
  };
}

function step(b: Branch, kind: Step['kind'], rule: string, hook?: string): void {
  b.path.push({ kind, table: null, chain: null, line: null, rule, hook });
}

/** The routing decision: local delivery or forwarding, and the outgoing interface. */
function routeDecision(env: Env, b: Branch, locallyGenerated: boolean): 'local' | 'forward' {
  const pkt = b.pkt;
  const local = isLocal(env, pkt.dst);
  if (local === undefined) {
    // The packet's own destination may well be the node; a DNAT'd one is normally a pod.
    const why = `routing: whether ${pkt.dst.text} is a node address is not known (give --local-ip); assumed it is not`;
    if (b.ct.dnat) b.notes.push(why);
    else b.uncertain.push({ line: null, table: null, chain: null, rule: '', reason: why });
  }
  if (local) {
    pkt.oif = locallyGenerated ? 'lo' : null;
    step(b, 'routing', `routing: ${pkt.dst.text} is a local address → ${locallyGenerated ? 'out via lo, back in on lo' : 'INPUT'}`);
    return 'local';
  }
  const r = findRoute(env, pkt.dst);
  pkt.oif = r ? r.iface : UNKNOWN_IFACE;
  const how = r ? `via ${r.iface}${r.via ? ` gw ${r.via.text}` : ''} (route ${r.cidr.text})` : 'out of the node (no --route matches: interface unknown)';
  step(b, 'routing', `routing: ${pkt.dst.text} is not local → ${locallyGenerated ? '' : 'FORWARD, '}${how}`);
  if (!locallyGenerated && pkt.dst.family === 4 && isLoopback(pkt.dst))
    b.notes.push('a packet from outside to 127.0.0.0/8 is a martian unless route_localnet=1 (kube-proxy sets it for localhost NodePorts)');
  return 'forward';
}

function deliverLocal(ctx: HookContext, b: Branch, out: Branch[]): void {
  const choices = ctx.env.localDelivery?.(b.pkt) ?? null;
  if (!choices) {
    b.verdict = 'ACCEPT';
    b.delivery = 'local';
    step(b, 'deliver', `delivered to a local socket on ${hostPort(b.pkt.dst, b.pkt.dport)}`);
    out.push(b);
    return;
  }
  if (choices.length === 0) {
    // IPVS has no real server to give the connection (none, all quiesced, or a hash bucket's server down).
    b.verdict = 'DROP';
    b.delivery = 'none';
    step(b, 'ipvs', 'IPVS: no real server available for this virtual service: the packet is dropped');
    ctx.ended.push(b);
    return;
  }
  // Another component (IPVS) sends the packet on to a real server: routing → POSTROUTING.
  choices.forEach((c, i) => {
    const nb = i === choices.length - 1 ? b : cloneForChoice(b);
    nb.prob *= c.probability;
    nb.pkt.dst = c.dst;
    if (c.dport !== undefined) nb.pkt.dport = c.dport;
    nb.ct.dnat = true;
    // IPVS takes the packet at LOCAL_IN priority 98, before nat INPUT (100) and the conntrack
    // confirmation, so the source NAT binding is still open: POSTROUTING's nat rules run.
    nb.ct.confirmed = false;
    nb.ct.srcNatDone = false;
    step(nb, 'ipvs', c.note);
    routeDecision(ctx.env, nb, true);
    const after = runHookAndConfirm(ctx, [nb], 'POSTROUTING');
    for (const x of after) {
      x.verdict = 'ACCEPT';
      x.delivery = 'forward';
      out.push(x);
    }
  });
}

function cloneForChoice(b: Branch): Branch {
  return { ...b, pkt: { ...b.pkt }, ct: { ...b.ct }, path: b.path.slice(), uncertain: b.uncertain.slice(), notes: b.notes.slice(), recent: new Map(b.recent) };
}

function runHookAndConfirm(ctx: HookContext, bs: Branch[], hook: 'POSTROUTING' | 'INPUT'): Branch[] {
  const r = runHook(ctx, bs, hook);
  confirm(r);
  return r;
}

/** The pipeline for one packet. Returns the branches that got through (ACCEPT); the rest are in ctx.ended. */
function pipeline(ctx: HookContext, start: Branch, locallyGenerated: boolean): Branch[] {
  const env = ctx.env;
  const delivered: Branch[] = [];
  if (locallyGenerated) {
    // The route (and so the outgoing interface) is chosen before OUTPUT, then again after it.
    const l = isLocal(env, start.pkt.dst);
    const r = findRoute(env, start.pkt.dst);
    start.pkt.oif = l ? 'lo' : r ? r.iface : UNKNOWN_IFACE;
    let cur = runHook(ctx, [start], 'OUTPUT');
    const local: Branch[] = [];
    const fwd: Branch[] = [];
    for (const b of cur) (routeDecision(env, b, true) === 'local' ? local : fwd).push(b);
    for (const b of runHookAndConfirm(ctx, fwd, 'POSTROUTING')) {
      b.verdict = 'ACCEPT';
      b.delivery = 'forward';
      step(b, 'deliver', `sent out ${b.pkt.oif === UNKNOWN_IFACE ? 'of the node' : `via ${b.pkt.oif}`} to ${hostPort(b.pkt.dst, b.pkt.dport)}`);
      delivered.push(b);
    }
    cur = runHookAndConfirm(ctx, local, 'POSTROUTING');
    for (const b of cur) {
      b.pkt.iif = 'lo';
      b.pkt.oif = null;
    }
    cur = runHook(ctx, cur, 'PREROUTING');
    cur = runHook(ctx, cur, 'INPUT');
    for (const b of cur) deliverLocal(ctx, b, delivered);
    return delivered;
  }
  let cur = runHook(ctx, [start], 'PREROUTING');
  const local: Branch[] = [];
  const fwd: Branch[] = [];
  for (const b of cur) (routeDecision(env, b, false) === 'local' ? local : fwd).push(b);
  for (const b of runHookAndConfirm(ctx, local, 'INPUT')) deliverLocal(ctx, b, delivered);
  cur = runHook(ctx, fwd, 'FORWARD');
  for (const b of runHookAndConfirm(ctx, cur, 'POSTROUTING')) {
    b.verdict = 'ACCEPT';
    b.delivery = 'forward';
    step(b, 'deliver', `forwarded ${b.pkt.oif === UNKNOWN_IFACE ? '' : `via ${b.pkt.oif} `}to ${hostPort(b.pkt.dst, b.pkt.dport)}`);
    delivered.push(b);
  }
  return delivered;
}

function conntrackLine(b: Branch): string {
  const ct = b.ct;
  const p = b.pkt;
  const ports = (sp?: number, dp?: number): string => (sp !== undefined && dp !== undefined ? ` sport=${sp} dport=${dp}` : '');
  return (
    `${p.proto} src=${ct.orig.src.text} dst=${ct.orig.dst.text}${ports(ct.orig.sport, ct.orig.dport)} ` +
    `src=${p.dst.text} dst=${p.src.text}${ports(p.dport, p.sport)}` +
    (ct.mark ? ` mark=${ct.mark}` : '')
  );
}

function toOutcome(b: Branch): Outcome {
  const o: Outcome = {
    probability: Number(b.prob.toPrecision(12)),
    verdict: b.verdict ?? 'ACCEPT',
    delivery: b.delivery ?? 'none',
    destination: hostPort(b.pkt.dst, b.pkt.dport),
    source: hostPort(b.pkt.src, b.pkt.sport),
    dnat: b.ct.dnat,
    snat: b.ct.snat,
    masquerade: b.ct.masquerade,
    outInterface: b.pkt.oif === UNKNOWN_IFACE ? null : b.pkt.oif,
    mark: hex(b.pkt.mark),
    ctmark: hex(b.ct.mark),
    uncertain: b.uncertain.length > 0,
    uncertainties: b.uncertain,
    notes: [...new Set(b.notes)],
    path: b.path,
  };
  if (b.rejectWith) o.rejectWith = b.rejectWith;
  if (o.verdict === 'ACCEPT' && b.ct.state !== 'UNTRACKED') o.conntrack = conntrackLine(b);
  return o;
}

function parseHost(s: string, what: string): Addr {
  const a = parseAddr(s);
  if (!a) throw new TraceInputError(`${what}: "${s}" is not an IP address`);
  return a;
}

export function buildEnv(rs: Ruleset, req: Pick<TraceRequest, 'localIps' | 'routes' | 'ipsets' | 'maxBranches' | 'localDelivery'>): {
  env: Env;
  evidence: string[];
} {
  let locals: LocalAddr[];
  let knowledge: Env['localKnowledge'];
  let evidence: string[] = [];
  try {
    if (req.localIps && req.localIps.length > 0) {
      locals = req.localIps.map(parseLocalSpec);
      knowledge = 'given';
    } else {
      const inf = inferLocalAddresses(rs);
      locals = inf.map((i) => ({ addr: i.addr }));
      evidence = inf.map((i) => `${i.addr.text}: ${i.evidence}`);
      knowledge = inf.length ? 'inferred' : 'none';
    }
    const routes = (req.routes ?? []).map(parseRouteSpec);
    return {
      env: { rs, locals, localKnowledge: knowledge, routes, ipsets: req.ipsets ?? null, localDelivery: req.localDelivery, maxBranches: req.maxBranches ?? 20000 },
      evidence,
    };
  } catch (e) {
    throw new TraceInputError((e as Error).message);
  }
}

export function trace(rs: Ruleset, req: TraceRequest): TraceResult {
  const { env, evidence } = buildEnv(rs, req);
  const proto = req.proto ?? 'tcp';
  const dst = parseHost(req.dst, '--dst');
  if (dst.family !== rs.family) throw new TraceInputError(`--dst ${dst.text} is IPv${dst.family} but the dump is IPv${rs.family}`);
  const from = req.from ?? 'external';
  const locallyGenerated = from === 'local';
  const iif = locallyGenerated ? null : from === 'external' ? 'eth0' : from;
  let src: Addr;
  const notes: string[] = [];
  if (req.src) src = parseHost(req.src, '--src');
  else if (locallyGenerated) {
    const l = isLoopback(dst)
      ? { addr: dst }
      : (env.locals.find((x) => x.addr.family === dst.family && !isLoopback(x.addr)) ?? null);
    if (!l) throw new TraceInputError('--src is needed: no node address is known for a locally generated packet (give --src or --local-ip)');
    src = l.addr;
    notes.push(`source ${src.text} assumed (the node's first address); give --src to choose`);
  } else {
    src = parseHost(dst.family === 4 ? DEFAULT_EXTERNAL_CLIENT : '2001:db8:ffff::2', 'default source');
    notes.push(`source ${src.text} assumed (an outside client); give --src to choose`);
  }
  if (src.family !== dst.family) throw new TraceInputError('--src and --dst are of different IP families');
  const hasPorts = proto === 'tcp' || proto === 'udp' || proto === 'sctp';
  if (hasPorts && req.dport === undefined) throw new TraceInputError(`--dst needs a port for ${proto} (IP:PORT)`);
  const pkt: Packet = {
    family: dst.family,
    proto: proto === 'icmp' && dst.family === 6 ? 'icmpv6' : proto,
    src,
    dst,
    sport: hasPorts ? (req.sport ?? DEFAULT_SPORT) : undefined,
    dport: hasPorts ? req.dport : undefined,
    iif,
    oif: null,
    mark: req.mark ?? 0,
    tcpFlags: proto === 'tcp' ? ['SYN'] : [],
    icmpType: proto === 'icmp' || proto === 'icmpv6' ? (dst.family === 4 ? 8 : 128) : undefined,
  };
  const recent = new Map<string, Set<string>>();
  for (const [name, ip] of req.recent ?? []) {
    const a = parseHost(ip, `--recent ${name}`);
    if (!recent.has(name)) recent.set(name, new Set());
    recent.get(name)!.add(a.text);
  }
  const start: Branch = {
    prob: 1,
    pkt,
    ct: makeConn(pkt),
    path: [],
    uncertain: [],
    notes: [],
    recent,
    budget: req.maxSteps ?? 1_000_000,
  };
  const ctx: HookContext = { env, counter: { forks: 0 }, ended: [] };
  const delivered = pipeline(ctx, start, locallyGenerated);
  // Outcomes in path order: the ended ones interleave with the delivered ones by where they split.
  const all = [...delivered, ...ctx.ended];
  const outcomes = all.map(toOutcome);
  outcomes.sort((a, b) => comparePaths(a.path, b.path));
  if (req.reply) {
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i]!;
      if (o.verdict !== 'ACCEPT') continue;
      const b = all.find((x) => x.path === o.path)!;
      o.reply = traceReply(env, b);
    }
  }
  const certainProbability = outcomes.filter((o) => !o.uncertain).reduce((s, o) => s + o.probability, 0);
  return {
    packet: {
      proto: pkt.proto,
      src: hostPort(src, hasPorts ? (req.sport ?? DEFAULT_SPORT) : undefined),
      dst: hostPort(dst, hasPorts ? req.dport : undefined),
      from: locallyGenerated ? 'local' : from,
      inInterface: iif,
    },
    localAddresses: { addresses: env.locals.map((l) => l.addr.text + (l.iface ? `@${l.iface}` : '')), source: env.localKnowledge, evidence },
    outcomes,
    certainProbability,
    notes,
  };
}

/** Orders outcomes by where their paths diverge: rule order (lines), so endpoint 1 comes first. */
function comparePaths(a: Step[], b: Step[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (x.kind === y.kind && x.line === y.line && x.rule === y.rule && x.effect === y.effect) continue;
    // The branch that took a rule comes before the one that did not.
    if (x.line !== null && y.line !== null && x.line === y.line) return x.kind === 'not-taken' ? 1 : y.kind === 'not-taken' ? -1 : 0;
    if (x.line !== null && y.line !== null && x.table === y.table) return x.line - y.line;
    return 0;
  }
  return a.length - b.length;
}

/** The answer packet: from the final destination back to the final source, un-NATed by conntrack. */
function traceReply(env: Env, fwd: Branch): ReplyOutcome[] {
  const p = fwd.pkt;
  const pkt: Packet = {
    family: p.family,
    proto: p.proto,
    src: p.dst,
    dst: p.src,
    sport: p.dport,
    dport: p.sport,
    iif: fwd.delivery === 'local' ? null : (p.oif ?? UNKNOWN_IFACE),
    oif: null,
    mark: 0,
    tcpFlags: p.proto === 'tcp' ? ['SYN', 'ACK'] : [],
    icmpType: p.icmpType !== undefined ? (p.family === 4 ? 0 : 129) : undefined,
  };
  const ct: Conn = { ...fwd.ct, orig: { ...fwd.ct.orig }, state: 'ESTABLISHED', dir: 'REPLY', seenReply: true, confirmed: true, unDnatDone: false, unSnatDone: false };
  const start: Branch = { prob: 1, pkt, ct, path: [], uncertain: [], notes: [], recent: new Map(fwd.recent), budget: 1_000_000 };
  const ctx: HookContext = { env, counter: { forks: 0 }, ended: [] };
  const locallyGenerated = fwd.delivery === 'local';
  const delivered = pipeline(ctx, start, locallyGenerated);
  return [...delivered, ...ctx.ended].map((b) => ({
    verdict: b.verdict ?? 'ACCEPT',
    delivery: b.delivery ?? 'none',
    source: hostPort(b.pkt.src, b.pkt.sport),
    destination: hostPort(b.pkt.dst, b.pkt.dport),
    uncertain: b.uncertain.length > 0,
    uncertainties: b.uncertain,
    path: b.path,
  }));
}
