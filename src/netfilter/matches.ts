// One match against the current packet and connection. Each returns the
// probability that the match holds: 1 or 0 for ordinary matches, a fraction for
// statistic, and UNKNOWN when the answer depends on something the simulator
// cannot know (an un-modelled module, a set it was not given, an interface it
// was not told).
import { addrCompare, cidrHas, isLoopback, type Addr } from './addr.js';
import type { Match, PortRange } from './ruleset.js';
import { setHas } from './ipset.js';
import type { Branch, Env } from './state.js';

export const UNKNOWN = -1;
/** The outgoing interface when the routes given do not say which. */
export const UNKNOWN_IFACE = '?';

export interface MatchResult {
  p: number;
  /** Why it is unknown (when p is UNKNOWN), or a note for a fractional match. */
  why?: string;
}

const YES: MatchResult = { p: 1 };
const NO: MatchResult = { p: 0 };
const bool = (v: boolean, neg: boolean): MatchResult => (v !== neg ? YES : NO);

function inRanges(port: number | undefined, ranges: readonly PortRange[]): boolean {
  if (port === undefined) return false;
  for (const [a, b] of ranges) if (port >= a && port <= b) return true;
  return false;
}

function ifaceMatches(actual: string, name: string, wildcard: boolean): boolean {
  return wildcard ? actual.startsWith(name) : actual === name;
}

const ICMP_TYPES: Record<string, number> = {
  'echo-reply': 0, pong: 0, 'destination-unreachable': 3, 'echo-request': 8, ping: 8, 'time-exceeded': 11,
  'port-unreachable': 3, 'parameter-problem': 12, 'timestamp-request': 13,
};

export function isLocal(env: Env, a: Addr): boolean | undefined {
  if (isLoopback(a)) return true;
  for (const l of env.locals) if (l.addr.family === a.family && l.addr.v4 === a.v4 && l.addr.v6 === a.v6) return true;
  return env.localKnowledge === 'none' ? undefined : false;
}

function addrType(env: Env, a: Addr): Set<string> | undefined {
  const local = isLocal(env, a);
  if (a.family === 4) {
    if (a.v4 === 0) return new Set(['UNSPEC']);
    if (a.v4 === 0xffffffff) return new Set(['BROADCAST']);
    if (a.v4 >>> 28 === 0xe) return new Set(['MULTICAST']);
  } else {
    if (a.v6 === 0n) return new Set(['UNSPEC']);
    if (a.v6 >> 120n === 0xffn) return new Set(['MULTICAST']);
  }
  if (local === undefined) return undefined;
  return new Set([local ? 'LOCAL' : 'UNICAST']);
}

const ROUTE_TYPES = new Set(['LOCAL', 'UNICAST', 'MULTICAST', 'BROADCAST', 'UNSPEC']);

export function evalMatch(m: Match, b: Branch, env: Env, hook: string): MatchResult {
  const pkt = b.pkt;
  switch (m.kind) {
    case 'addr':
      return bool(cidrHas(m.cidr, m.dir === 'src' ? pkt.src : pkt.dst), m.neg);
    case 'proto':
      return bool(m.proto === 'all' || m.proto === pkt.proto, m.neg);
    case 'iface': {
      // -i is only defined before routing (PREROUTING, INPUT, FORWARD), -o only after it.
      const defined = m.dir === 'in' ? hook === 'PREROUTING' || hook === 'INPUT' || hook === 'FORWARD' : hook === 'FORWARD' || hook === 'OUTPUT' || hook === 'POSTROUTING';
      const actual = m.dir === 'in' ? pkt.iif : pkt.oif;
      if (!defined || actual === null) return bool(false, m.neg);
      if (actual === UNKNOWN_IFACE) return { p: UNKNOWN, why: 'the outgoing interface is not known (give --route CIDR=IFACE)' };
      return bool(ifaceMatches(actual, m.name, m.wildcard), m.neg);
    }
    case 'port': {
      if (pkt.proto !== 'tcp' && pkt.proto !== 'udp' && pkt.proto !== 'sctp' && pkt.proto !== 'udplite' && pkt.proto !== 'dccp') return NO;
      if (m.dir === 'any') return bool(inRanges(pkt.sport, m.ranges) || inRanges(pkt.dport, m.ranges), m.neg);
      return bool(inRanges(m.dir === 'sport' ? pkt.sport : pkt.dport, m.ranges), m.neg);
    }
    case 'iprange': {
      const a = m.dir === 'src' ? pkt.src : pkt.dst;
      if (a.family !== m.from.family) return NO;
      return bool(addrCompare(a, m.from) >= 0 && addrCompare(a, m.to) <= 0, m.neg);
    }
    case 'addrtype': {
      const types = addrType(env, m.dir === 'src' ? pkt.src : pkt.dst);
      const unsupported = m.types.find((t) => !ROUTE_TYPES.has(t));
      if (unsupported) return { p: UNKNOWN, why: `address type ${unsupported} depends on routes the simulator does not have` };
      if (!types) return { p: UNKNOWN, why: `whether ${(m.dir === 'src' ? pkt.src : pkt.dst).text} is a local address is not known (give --local-ip)` };
      return bool(
        m.types.some((t) => types.has(t)),
        m.neg,
      );
    }
    case 'ctstate': {
      const ct = b.ct;
      const has = (s: string): boolean => {
        switch (s) {
          case 'DNAT':
            return ct.dnat;
          case 'SNAT':
            return ct.snat;
          default:
            return s === ct.state;
        }
      };
      return bool(m.states.some(has), m.neg);
    }
    case 'ctstatus': {
      const ct = b.ct;
      const has = (s: string): boolean =>
        s === 'CONFIRMED' ? ct.confirmed : s === 'SEEN_REPLY' ? ct.seenReply : s === 'NONE' ? !ct.confirmed && !ct.seenReply : false;
      if (m.statuses.includes('ASSURED') || m.statuses.includes('EXPECTED'))
        return { p: UNKNOWN, why: 'conntrack status ASSURED/EXPECTED depends on the packets exchanged so far' };
      return bool(m.statuses.some(has), m.neg);
    }
    case 'ctdir':
      return bool(b.ct.dir === m.dir, false);
    case 'ctorig':
      return bool(cidrHas(m.cidr, m.field === 'src' ? b.ct.orig.src : b.ct.orig.dst), m.neg);
    case 'ctorigport':
      return bool(inRanges(m.field === 'src' ? b.ct.orig.sport : b.ct.orig.dport, m.ranges), m.neg);
    case 'mark':
      return bool(((pkt.mark & m.mask) >>> 0) === m.value, m.neg);
    case 'connmark':
      return bool(((b.ct.mark & m.mask) >>> 0) === m.value, m.neg);
    case 'comment':
    case 'always':
      return YES;
    case 'statistic':
      if (m.mode === 'random') return { p: m.neg ? 1 - m.probability : m.probability };
      return { p: m.neg ? 1 - 1 / m.every : 1 / m.every, why: `nth every ${m.every}: long-run share` };
    case 'recent': {
      const a = m.side === 'source' ? pkt.src : pkt.dst;
      const key = a.text;
      const list = b.recent.get(m.name);
      if (m.op === 'set') {
        const l = list ?? new Set<string>();
        l.add(key);
        b.recent.set(m.name, l);
        return bool(true, m.neg);
      }
      const present = !!list && list.has(key);
      if (m.op === 'remove') {
        if (present) list!.delete(key);
        return bool(present, m.neg);
      }
      if (present && m.hitcount !== undefined && m.hitcount > 1)
        return { p: UNKNOWN, why: `recent --hitcount ${m.hitcount}: the seeded entry's hit count is not known` };
      // A seeded entry counts as seen just now, so --seconds holds.
      return bool(present, m.neg);
    }
    case 'set': {
      if (!env.ipsets) return { p: UNKNOWN, why: `ipset ${m.name}: no ipset contents given (--ipset FILE)` };
      const has = setHas(env.ipsets, m.name, m.flags, pkt);
      if (has === undefined) return { p: UNKNOWN, why: `ipset ${m.name} is not in the --ipset file` };
      return bool(has, m.neg);
    }
    case 'tcpflags': {
      if (pkt.proto !== 'tcp') return NO;
      const on = m.mask.filter((f) => pkt.tcpFlags.includes(f));
      const ok = on.length === m.comp.length && m.comp.every((f) => on.includes(f));
      return bool(ok, m.neg);
    }
    case 'icmptype': {
      if (pkt.proto !== 'icmp' && pkt.proto !== 'icmpv6') return NO;
      if (m.type === 'any') return bool(true, m.neg);
      const want = /^\d+/.test(m.type) ? Number(m.type.split('/')[0]) : ICMP_TYPES[m.type];
      if (want === undefined) return { p: UNKNOWN, why: `icmp type ${m.type} is not modelled` };
      return bool(pkt.icmpType === want, m.neg);
    }
    case 'fragment':
      // The traced packet is never a non-first fragment.
      return bool(false, m.neg);
    case 'unknown':
      return { p: UNKNOWN, why: `un-modelled match: ${m.text}` };
  }
}
