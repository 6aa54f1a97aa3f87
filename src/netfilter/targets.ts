// What a target does to the packet, its connection and the walk: verdicts end
// the branch (ACCEPT only ends the table), NAT rewrites and records the binding
// in the connection, MARK/CONNMARK change marks, LOG just continues.
import { addrFromV4, addrFromV6, hostPort, isLoopback, type Addr } from './addr.js';
import type { NatRange, Rule, TableName, Target } from './ruleset.js';
import { findRoute } from './routing.js';
import type { Branch, Env, Verdict } from './state.js';

export interface TargetResult {
  effect: string;
  verdict?: Verdict;
}

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function pickRange(b: Branch, to: NatRange[], what: string): NatRange {
  const r = to[0]!;
  const ranged = to.length > 1 || (r.from && r.to && (r.from.v4 !== r.to.v4 || r.from.v6 !== r.to.v6)) || (r.portFrom !== undefined && r.portFrom !== r.portTo);
  if (ranged) b.notes.push(`${what} ${to.map((x) => x.text).join(' ')}: a range; the kernel picks one member per connection (shown: the first)`);
  return r;
}

/** The address MASQUERADE uses: the preferred source of the route out, else the outgoing interface's address. */
export function masqueradeAddress(env: Env, b: Branch): { addr: Addr | null; how: string } {
  const route = findRoute(env, b.pkt.dst);
  if (route?.src) return { addr: route.src, how: `src of route ${route.cidr.text}` };
  const oif = b.pkt.oif;
  const onIface = env.locals.find((l) => l.iface && l.iface === oif && l.addr.family === b.pkt.family && !isLoopback(l.addr));
  if (onIface) return { addr: onIface.addr, how: `address of ${oif}` };
  const candidates = env.locals.filter((l) => l.addr.family === b.pkt.family && !isLoopback(l.addr));
  if (candidates.length >= 1)
    return { addr: candidates[0]!.addr, how: candidates.length === 1 ? 'the node address' : `assumed: the first node address (${oif ?? 'the outgoing interface'}'s address is not known; give --local-ip IP@IFACE)` };
  return { addr: null, how: 'the outgoing interface address is not known (give --local-ip)' };
}

export function applyTarget(env: Env, b: Branch, t: Target, table: TableName, hook: string, rule: Rule): TargetResult {
  const pkt = b.pkt;
  switch (t.kind) {
    case 'ACCEPT':
      return { effect: 'ACCEPT', verdict: 'ACCEPT' };
    case 'DROP':
      return { effect: 'DROP', verdict: 'DROP' };
    case 'REJECT':
      b.rejectWith = t.with;
      return { effect: `REJECT (${t.with})`, verdict: 'REJECT' };
    case 'DNAT': {
      const r = pickRange(b, t.to, 'DNAT');
      const before = hostPort(pkt.dst, pkt.dport);
      if (r.from) pkt.dst = r.from;
      if (r.portFrom !== undefined) pkt.dport = r.portFrom;
      b.ct.dnat = true;
      b.ct.dstNatDone = true;
      return { effect: `DNAT ${before} → ${hostPort(pkt.dst, pkt.dport)}`, verdict: 'ACCEPT' };
    }
    case 'REDIRECT': {
      const before = hostPort(pkt.dst, pkt.dport);
      let to: Addr | null;
      if (hook === 'OUTPUT') to = pkt.family === 4 ? addrFromV4(0x7f000001) : addrFromV6(1n);
      else {
        const l = env.locals.find((x) => x.iface === pkt.iif && x.addr.family === pkt.family) ?? env.locals.find((x) => x.addr.family === pkt.family && !isLoopback(x.addr));
        to = l?.addr ?? null;
        if (!to) b.uncertain.push({ line: rule.line, table, chain: rule.chain, rule: rule.text, reason: `REDIRECT: the address of ${pkt.iif} is not known (give --local-ip IP@IFACE)` });
      }
      if (to) pkt.dst = to;
      if (t.ports) pkt.dport = t.ports[0];
      b.ct.dnat = true;
      b.ct.dstNatDone = true;
      return { effect: `REDIRECT ${before} → ${hostPort(pkt.dst, pkt.dport)}`, verdict: 'ACCEPT' };
    }
    case 'SNAT': {
      const r = pickRange(b, t.to, 'SNAT');
      const before = hostPort(pkt.src, pkt.sport);
      if (r.from) pkt.src = r.from;
      if (r.portFrom !== undefined) pkt.sport = r.portFrom;
      b.ct.snat = true;
      b.ct.srcNatDone = true;
      return { effect: `SNAT ${before} → ${hostPort(pkt.src, pkt.sport)}`, verdict: 'ACCEPT' };
    }
    case 'MASQUERADE': {
      const before = hostPort(pkt.src, pkt.sport);
      const { addr, how } = masqueradeAddress(env, b);
      if (addr) pkt.src = addr;
      else b.uncertain.push({ line: rule.line, table, chain: rule.chain, rule: rule.text, reason: `MASQUERADE: ${how}` });
      if (t.ports) pkt.sport = t.ports[0];
      if (t.randomFully || t.random) b.notes.push('MASQUERADE --random-fully: the kernel picks a random source port (the original port is shown)');
      b.ct.snat = true;
      b.ct.masquerade = true;
      b.ct.srcNatDone = true;
      return { effect: `MASQUERADE ${before} → ${hostPort(pkt.src, pkt.sport)} (${how})`, verdict: 'ACCEPT' };
    }
    case 'MARK': {
      const before = pkt.mark;
      pkt.mark = ((pkt.mark & ~t.mask) ^ t.value) >>> 0;
      return { effect: `MARK ${hex(before)} → ${hex(pkt.mark)}` };
    }
    case 'CONNMARK': {
      const ct = b.ct;
      if (t.op === 'xset') {
        ct.mark = ((ct.mark & ~t.mask) ^ t.value) >>> 0;
        return { effect: `CONNMARK → ${hex(ct.mark)}` };
      }
      if (t.op === 'save') {
        ct.mark = ((ct.mark & ~t.ctmask) ^ (pkt.mark & t.nfmask)) >>> 0;
        return { effect: `CONNMARK save → ctmark ${hex(ct.mark)}` };
      }
      pkt.mark = ((pkt.mark & ~t.nfmask) ^ (ct.mark & t.ctmask)) >>> 0;
      return { effect: `CONNMARK restore → mark ${hex(pkt.mark)}` };
    }
    case 'LOG':
      return { effect: `${t.name}${t.prefix ? ` "${t.prefix}"` : ''} (continues)` };
    case 'NOTRACK':
      b.ct.state = 'UNTRACKED';
      return { effect: 'NOTRACK: connection tracking (and so NAT) skipped' };
    case 'unknown':
      b.uncertain.push({ line: rule.line, table, chain: rule.chain, rule: rule.text, reason: `un-modelled target ${t.name}; assumed it continues without effect` });
      return { effect: `${t.name} (not modelled; assumed to continue)` };
    case 'jump':
    case 'goto':
    case 'RETURN':
      throw new Error('jumps are handled by the walk');
  }
}
