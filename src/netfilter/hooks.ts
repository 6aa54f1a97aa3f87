// The kernel's hook order, table by table, and the conntrack rules for when the
// nat table is consulted (only for a connection's first packet, once per NAT
// direction) and when conntrack itself rewrites (reply packets are un-NATed by
// the connection, never by rules).
//
// Priorities (include/uapi/linux/netfilter_ipv4.h): raw -300, conntrack -200,
// mangle -150, nat DNAT -100, filter 0, security 50, nat SNAT 100.
import { hostPort } from './addr.js';
import type { TableName } from './ruleset.js';
import type { Branch, Env } from './state.js';
import { walkTable } from './walk.js';

export type Hook = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';

export const HOOK_TABLES: Record<Hook, readonly TableName[]> = {
  PREROUTING: ['raw', 'mangle', 'nat'],
  INPUT: ['mangle', 'filter', 'security', 'nat'],
  FORWARD: ['mangle', 'filter', 'security'],
  OUTPUT: ['raw', 'mangle', 'nat', 'filter', 'security'],
  POSTROUTING: ['mangle', 'nat'],
};

/** nat in PREROUTING/OUTPUT sets up the destination binding, in INPUT/POSTROUTING the source binding. */
function natManip(hook: Hook): 'dst' | 'src' {
  return hook === 'PREROUTING' || hook === 'OUTPUT' ? 'dst' : 'src';
}

export interface HookContext {
  env: Env;
  counter: { forks: number };
  /** Branches that ended (DROP, REJECT, LOOP, …). */
  ended: Branch[];
}

function conntrackIn(b: Branch, hook: Hook): void {
  const ct = b.ct;
  if (ct.state === 'UNTRACKED') {
    b.path.push({ kind: 'conntrack', table: null, chain: null, line: null, rule: 'conntrack: untracked (NOTRACK in raw): no connection, no NAT', hook });
    return;
  }
  if (ct.dir === 'REPLY') {
    b.path.push({ kind: 'conntrack', table: null, chain: null, line: null, rule: `conntrack: reply direction of the connection (ctstate ${ct.state})`, hook });
    return;
  }
  if (ct.confirmed) return;
  b.path.push({
    kind: 'conntrack',
    table: null,
    chain: null,
    line: null,
    rule: `conntrack: first packet of a new connection ${hostPort(ct.orig.src, ct.orig.sport)} → ${hostPort(ct.orig.dst, ct.orig.dport)} (ctstate NEW)`,
    hook,
  });
}

/** Reply packets: conntrack reverses the bindings at the nat hooks instead of running rules. */
function unNat(b: Branch, hook: Hook): void {
  const ct = b.ct;
  const pkt = b.pkt;
  if (natManip(hook) === 'dst' && ct.snat && !ct.unSnatDone) {
    const before = hostPort(pkt.dst, pkt.dport);
    pkt.dst = ct.orig.src;
    pkt.dport = ct.orig.sport;
    ct.unSnatDone = true;
    b.path.push({ kind: 'nat', table: 'nat', chain: hook, line: null, rule: `conntrack un-SNAT: destination ${before} → ${hostPort(pkt.dst, pkt.dport)}`, hook });
  }
  if (natManip(hook) === 'src' && ct.dnat && !ct.unDnatDone) {
    const before = hostPort(pkt.src, pkt.sport);
    pkt.src = ct.orig.dst;
    pkt.sport = ct.orig.dport;
    ct.unDnatDone = true;
    b.path.push({ kind: 'nat', table: 'nat', chain: hook, line: null, rule: `conntrack un-DNAT: source ${before} → ${hostPort(pkt.src, pkt.sport)}`, hook });
  }
}

/**
 * Runs every table of one hook over the branches. Returns the branches that go on; the
 * ones that ended are appended to ctx.ended. `skipNat` is for the loopback re-entry,
 * where the connection is already confirmed.
 */
export function runHook(ctx: HookContext, branches: Branch[], hook: Hook): Branch[] {
  let cur = branches;
  for (const table of HOOK_TABLES[hook]) {
    const next: Branch[] = [];
    for (const b of cur) {
      if (table === 'nat') {
        const ct = b.ct;
        if (ct.dir === 'REPLY') {
          unNat(b, hook);
          next.push(b);
          continue;
        }
        const manip = natManip(hook);
        const done = manip === 'dst' ? ct.dstNatDone : ct.srcNatDone;
        if (ct.state !== 'NEW' || ct.confirmed || done) {
          next.push(b);
          continue;
        }
      }
      for (const r of walkTable(ctx.env, b, table, hook, ctx.counter)) {
        if (table === 'nat') {
          if (natManip(hook) === 'dst') r.b.ct.dstNatDone = true;
          else r.b.ct.srcNatDone = true;
        }
        if (r.verdict === 'ACCEPT') next.push(r.b);
        else {
          r.b.verdict = r.verdict;
          r.b.delivery = 'none';
          ctx.ended.push(r.b);
        }
      }
    }
    cur = next;
    // conntrack runs right after raw (PREROUTING/OUTPUT).
    if (table === 'raw') for (const b of cur) conntrackIn(b, hook);
  }
  return cur;
}

/** The connection is confirmed when the first packet leaves POSTROUTING or INPUT. */
export function confirm(branches: Branch[]): void {
  for (const b of branches) b.ct.confirmed = true;
}
