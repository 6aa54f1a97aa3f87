// The tracer's IPVS model. IPVS sits on the LOCAL_IN hook (priority
// NF_IP_PRI_NAT_SRC-2 = 98: after filter INPUT, before nat INPUT) and, for the
// node's own connections, on LOCAL_OUT (NF_IP_PRI_NAT_DST+2 = -98: after nat
// OUTPUT, before filter OUTPUT) — net/netfilter/ipvs/ip_vs_core.c. A packet
// addressed to a virtual service is handed to its scheduler, which picks a
// real server; in NAT ("Masq") mode the destination is rewritten and the
// packet goes out through LOCAL_OUT's remaining hooks and POSTROUTING, where
// kube-proxy's KUBE-POSTROUTING decides on masquerading.
//
// What the model can know from a dump:
//  - rr / wrr: the position of the round-robin pointer is not in any dump, so
//    the answer is the distribution over many new connections (equal or
//    weight-proportional shares);
//  - lc / wlc / sed / nq: the next pick is exact from the listing's
//    ActiveConn/InActConn counters (save format has none: idle); the shares
//    over many new connections are given too;
//  - sh / dh / mh: the exact server for this source (sh, mh) or virtual address
//    (dh), computed with the kernel's hash tables over the real servers in the
//    dump's order. ipvsadm sorts real servers unless run with --nosort, while
//    the kernel fills its tables in list order (newest first), so the answer
//    is exact for a --nosort dump and is flagged as order-dependent otherwise.
import { createScheduler, isSchedulerName, type SchedServer } from '../dataplane/schedulers/index.js';
import { joinHostPort } from '../util/ip.js';
import { parseAddr } from './addr.js';
import { findIpvsService, parseIpvsadm, type IpvsDest, type IpvsService, type IpvsTable } from './ipvs-parse.js';
import { inferLocalAddresses } from './infer.js';
import type { Ruleset } from './ruleset.js';
import type { TraceRequest } from './simulate.js';
import type { LocalDeliveryChoice, Packet } from './state.js';
import { DUMMY_DEVICE } from '../dataplane/ipvs/names.js';

export interface IpvsChoice {
  dest: IpvsDest;
  /** Share of new connections (distribution) or 1 (exact). */
  probability: number;
  /** ipvsadm-style "10.0.0.5:8080 (Masq, weight 1, 0 active / 0 inactive)". */
  label: string;
}

export interface IpvsDecision {
  service: IpvsService;
  /** "TCP 10.96.0.10:80 rr" */
  serviceLabel: string;
  /** 'distribution': shares over new connections; 'exact': this packet's server; 'none': no usable server. */
  kind: 'distribution' | 'exact' | 'none';
  choices: IpvsChoice[];
  /** For lc/wlc/sed/nq: the server the very next new connection gets, from the counters. */
  next?: IpvsDest;
  /** Human lines: why this choice, persistence, caveats. */
  notes: string[];
  /** The answer depends on facts the dump may not hold (real-server order for hash schedulers). */
  orderDependent: boolean;
}

export interface IpvsClient {
  proto: string;
  src: string;
  sport?: number;
  dst: string;
  dport?: number;
}

const SHARE_ROUNDS = 60;

function destKey(d: IpvsDest): string {
  return joinHostPort(d.address, d.port);
}

function destLabel(d: IpvsDest): string {
  const fwd = d.forward === 'masq' ? 'Masq' : d.forward === 'route' ? 'Route' : 'Tunnel';
  const counters = d.activeConns !== undefined ? `, ${d.activeConns} active / ${d.inactiveConns ?? 0} inactive` : '';
  return `${destKey(d)} (${fwd}, weight ${d.weight}${counters})`;
}

function toSched(d: IpvsDest): SchedServer {
  return { key: destKey(d), ip: d.address, port: d.port, weight: d.weight, activeConns: d.activeConns ?? 0, inactiveConns: d.inactiveConns ?? 0 };
}

export function serviceLabel(s: IpvsService): string {
  const where = s.fwmark !== undefined ? `FWM ${s.fwmark}` : `${(s.proto ?? '').toUpperCase()} ${joinHostPort(s.address!, s.port!)}`;
  const flags = s.schedFlags.length ? ` (${s.schedFlags.join(',')})` : '';
  const pers = s.persistent !== undefined ? ` persistent ${s.persistent}` : '';
  return `${where} ${s.scheduler}${flags}${pers}`;
}

/**
 * Shares of new connections: the scheduler run over SHARE_ROUNDS × (sum of
 * weights) successive new connections, each one counted as active on the
 * server it got (what a burst of new connections does to the counters).
 */
function shares(s: IpvsService, client: IpvsClient): Map<string, number> {
  const sched = createScheduler(s.scheduler, s.schedFlags);
  const servers = s.dests.map(toSched);
  const total = servers.reduce((a, x) => a + (x.weight > 0 ? x.weight : 0), 0);
  const rounds = Math.min(10_000, Math.max(1, total) * SHARE_ROUNDS);
  const counts = new Map<string, number>();
  let picked = 0;
  for (let i = 0; i < rounds; i++) {
    const got = sched.schedule(servers, { srcIP: client.src, srcPort: client.sport ?? 0, dstIP: client.dst });
    if (!got) break;
    got.activeConns++;
    counts.set(got.key, (counts.get(got.key) ?? 0) + 1);
    picked++;
  }
  const out = new Map<string, number>();
  for (const [k, c] of counts) out.set(k, picked ? c / picked : 0);
  return out;
}

/** The scheduler's decision for one new connection to this virtual service. */
export function ipvsDecide(s: IpvsService, client: IpvsClient): IpvsDecision {
  const label = serviceLabel(s);
  const notes: string[] = [];
  const base = { service: s, serviceLabel: label, notes, orderDependent: false };
  if (!isSchedulerName(s.scheduler)) {
    notes.push(`scheduler ${s.scheduler} is not modelled (known: rr, wrr, lc, wlc, sed, nq, dh, sh, mh); shares assumed equal over servers with weight > 0`);
    const usable = s.dests.filter((d) => d.weight > 0);
    return {
      ...base,
      kind: usable.length ? 'distribution' : 'none',
      choices: usable.map((d) => ({ dest: d, probability: 1 / usable.length, label: destLabel(d) })),
    };
  }
  if (s.persistent !== undefined) {
    notes.push(
      `persistent ${s.persistent}s: IPVS keeps a template per client address${s.netmask ? ` (mask ${s.netmask})` : ''}; a client with a live template goes back to the same real server, only its first connection is scheduled as below`,
    );
  }
  const usable = s.dests.filter((d) => d.weight > 0);
  if (usable.length === 0) {
    notes.push(
      s.dests.length === 0
        ? 'the virtual service has no real servers: IPVS drops the packet (and answers ICMP port unreachable)'
        : 'every real server has weight 0 (quiesced): no new connection is scheduled; IPVS drops the packet',
    );
    return { ...base, kind: 'none', choices: [] };
  }
  const servers = s.dests.map(toSched);
  const byKey = new Map(s.dests.map((d) => [destKey(d), d]));
  const sched = s.scheduler;
  if (sched === 'sh' || sched === 'dh' || sched === 'mh') {
    const got = createScheduler(sched, s.schedFlags).schedule(servers, { srcIP: client.src, srcPort: client.sport ?? 0, dstIP: client.dst });
    const keyedBy =
      sched === 'dh' ? `destination ${client.dst}` : s.schedFlags.some((f) => f === 'mh-port' || f === 'sh-port' || f === 'flag-2') ? `source ${joinHostPort(client.src, client.sport ?? 0)}` : `source ${client.src}`;
    if (s.dests.length > 1) {
      notes.push(
        `${sched} hashes the ${keyedBy}; the kernel's table follows its real-server list order (newest first), and ipvsadm sorts the list unless dumped with --nosort: exact when the dump was taken with --nosort`,
      );
    }
    if (!got) {
      notes.push(`${sched}: the server this ${keyedBy} hashes to is unavailable and no fallback flag is set: IPVS drops the packet`);
      return { ...base, kind: 'none', choices: [], orderDependent: s.dests.length > 1 };
    }
    const d = byKey.get(got.key)!;
    notes.push(`${sched}: ${keyedBy} → ${destKey(d)}`);
    return { ...base, kind: 'exact', choices: [{ dest: d, probability: 1, label: destLabel(d) }], orderDependent: s.dests.length > 1 };
  }
  const share = shares(s, client);
  const choices = s.dests
    .filter((d) => (share.get(destKey(d)) ?? 0) > 0)
    .map((d) => ({ dest: d, probability: share.get(destKey(d))!, label: destLabel(d) }));
  const dec: IpvsDecision = { ...base, kind: 'distribution', choices };
  if (sched === 'rr' || sched === 'wrr') {
    notes.push(
      sched === 'rr'
        ? `rr: new connections go round the ${usable.length} servers with weight > 0 in turn (equal shares); which one is next depends on the round-robin position, which no dump shows`
        : 'wrr: new connections in proportion to the weights; which one is next depends on the scheduler position, which no dump shows',
    );
  } else {
    const next = createScheduler(sched).schedule(servers, { srcIP: client.src, dstIP: client.dst });
    if (next) dec.next = byKey.get(next.key)!;
    const counters = s.dests.some((d) => d.activeConns !== undefined) ? 'the listing\'s ActiveConn/InActConn counters' : 'idle counters (the save format has none)';
    notes.push(
      `${sched}: with ${counters} the next new connection goes to ${dec.next ? destKey(dec.next) : 'none'}; the shares are over a burst of new connections from there`,
    );
  }
  return dec;
}

export interface IpvsModel {
  table: IpvsTable;
  /** Every virtual address (for the tracer's local-address list: VIPs live on kube-ipvs0, NodePorts on node IPs). */
  addresses: string[];
  /** The decision for a packet, or undefined when no virtual service matches. */
  decide(client: IpvsClient): IpvsDecision | undefined;
}

export function ipvsModel(table: IpvsTable): IpvsModel {
  const addresses = [...new Set(table.services.filter((s) => s.address).map((s) => s.address!))];
  return {
    table,
    addresses,
    decide(client) {
      const s = findIpvsService(table, client.proto, client.dst, client.dport);
      return s ? ipvsDecide(s, client) : undefined;
    },
  };
}

function fmtShare(p: number): string {
  return p === 1 ? '' : ` (${(p * 100).toFixed(p * 100 === Math.round(p * 100) ? 0 : 1)}% of new connections)`;
}

/** One line per choice for the tracer's path, e.g. "IPVS TCP 10.96.0.10:80 rr → 10.244.1.5:8080 (Masq, weight 1) (33.3% …)". */
export function choiceNote(d: IpvsDecision, c: IpvsChoice): string {
  return `IPVS ${d.serviceLabel} → ${c.label}${d.kind === 'distribution' ? fmtShare(c.probability) : ''}`;
}

/**
 * The tracer's local-delivery hook: packets delivered locally to a virtual
 * service are sent on to a real server (one choice per server, with its share),
 * null when no virtual service matches (an ordinary local socket).
 * `onDecision` sees each decision (for notes and for the no-server case).
 */
export function ipvsLocalDelivery(model: IpvsModel, onDecision?: (d: IpvsDecision, pkt: Packet) => void): (pkt: Packet) => LocalDeliveryChoice[] | null {
  return (pkt) => {
    const client: IpvsClient = { proto: pkt.proto, src: pkt.src.text, dst: pkt.dst.text };
    if (pkt.sport !== undefined) client.sport = pkt.sport;
    if (pkt.dport !== undefined) client.dport = pkt.dport;
    const d = model.decide(client);
    if (!d) return null;
    onDecision?.(d, pkt);
    return d.choices.map((c) => {
      const dst = parseAddr(c.dest.address)!;
      return { probability: c.probability, dst, dport: c.dest.port, note: choiceNote(d, c) };
    });
  };
}

/**
 * Wires an ipvsadm dump into a trace request (`kproxy trace --ipvs FILE`): the
 * virtual addresses become local addresses (kube-ipvs0 carries the VIPs,
 * NodePort services sit on node IPs) and locally delivered packets go through
 * the IPVS model. Returns a function giving the model's notes after the trace.
 */
export function withIpvs(req: TraceRequest, rs: Ruleset, text: string, source: string): () => string[] {
  const model = ipvsModel(parseIpvsadm(text, source));
  const given = req.localIps ?? [];
  const known = given.length > 0 ? given : inferLocalAddresses(rs).map((i) => i.addr.text);
  const knownAddrs = new Set(known.map((x) => x.split('@')[0]));
  const extra = model.addresses.filter((a) => (a.includes(':') ? 6 : 4) === rs.family && !knownAddrs.has(a)).map((a) => `${a}@${DUMMY_DEVICE}`);
  req.localIps = [...known, ...extra];
  const notes: string[] = [];
  req.localDelivery = ipvsLocalDelivery(model, (d) => {
    for (const n of [`IPVS ${d.serviceLabel}: ${d.kind === 'distribution' ? 'shares of new connections' : d.kind === 'exact' ? 'the exact real server' : 'no real server'}`, ...d.notes])
      if (!notes.includes(n)) notes.push(n);
  });
  return () => notes;
}
