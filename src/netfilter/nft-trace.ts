// `kproxy trace` for kproxy's nftables table: reads `nft list ruleset` (or
// `nft list table ip kproxy`) output, or the `nft -f` transaction that
// `kproxy render --proxy-mode nftables` prints, and walks a new connection
// through it: the nat `services` chain (DNAT, masquerade mark), then the
// filter chains (REJECT / DROP / the health-check ACCEPT), as the kernel
// would for that table. It reads the rule forms kproxy's layout writes
// (docs/nftables.md); a rule it cannot read is an error naming it, not a
// silent pass. Other tables in a ruleset are listed in the notes and not
// traced. Pure.
import { cidrContains, normalizeIP } from '../util/ip.js';

export interface NftTable {
  family: 'ip' | 'ip6';
  chains: Map<string, string[]>;
  sets: Map<string, Map<string, string>>;
}

export interface NftRuleset {
  /** kproxy's table of each family present. */
  tables: NftTable[];
  /** Other tables seen ("inet filter", …): not traced. */
  others: string[];
}

export class NftParseError extends Error {}

/** Whether a dump is nftables text (a listing or an `nft -f` script) rather than iptables. */
export function looksLikeNft(text: string): boolean {
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (!l || l.startsWith('#')) continue;
    return /^(table|add|flush|delete) (table |chain |set |map |rule |element )?(ip|ip6|inet|arp|bridge|netdev) /.test(l) || /^table (ip|ip6|inet|arp|bridge|netdev) \S+ \{/.test(l);
  }
  return false;
}

function table(out: NftRuleset, fam: string, name: string): NftTable | null {
  if (name !== 'kproxy' || (fam !== 'ip' && fam !== 'ip6')) {
    const id = `${fam} ${name}`;
    if (!out.others.includes(id)) out.others.push(id);
    return null;
  }
  let t = out.tables.find((x) => x.family === fam);
  if (!t) out.tables.push((t = { family: fam, chains: new Map(), sets: new Map() }));
  return t;
}

function addElements(t: NftTable, set: string, body: string): void {
  const s = t.sets.get(set) ?? new Map<string, string>();
  t.sets.set(set, s);
  for (const item of body.split(',')) {
    const e = item.trim().replace(/ (timeout|expires) \S+/g, '');
    if (!e) continue;
    const [k, v] = e.split(' : ');
    s.set(k!.trim(), (v ?? '').trim());
  }
}

/** Parses a listing or a transaction; only kproxy's tables are kept. */
export function parseNft(text: string): NftRuleset {
  const out: NftRuleset = { tables: [], others: [] };
  const lines = text.split('\n');
  let cur: NftTable | null = null;
  let inTable = false;
  let chain: string | null = null;
  let set: string | null = null;
  let elems: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (!l || l.startsWith('#')) continue;
    if (elems !== null) {
      elems += ' ' + l;
      if (l.endsWith('}')) {
        if (cur && set) addElements(cur, set, elems.replace(/\}\s*$/, ''));
        elems = null;
      }
      continue;
    }
    let m: RegExpExecArray | null;
    if (!inTable) {
      if ((m = /^table (\S+) (\S+) \{$/.exec(l))) {
        cur = table(out, m[1]!, m[2]!);
        inTable = true;
        continue;
      }
      if ((m = /^add rule (\S+) (\S+) (\S+) (.*)$/.exec(l))) {
        const t = table(out, m[1]!, m[2]!);
        if (t) (t.chains.get(m[3]!) ?? t.chains.set(m[3]!, []).get(m[3]!)!).push(m[4]!);
        continue;
      }
      if ((m = /^add element (\S+) (\S+) (\S+) \{ (.*) \}$/.exec(l))) {
        const t = table(out, m[1]!, m[2]!);
        if (t) addElements(t, m[3]!, m[4]!);
        continue;
      }
      if ((m = /^add chain (\S+) (\S+) (\S+)/.exec(l))) {
        const t = table(out, m[1]!, m[2]!);
        if (t && !t.chains.has(m[3]!)) t.chains.set(m[3]!, []);
        continue;
      }
      if (/^(add|delete|flush) /.test(l)) continue;
      throw new NftParseError(`line ${i + 1}: not nftables input: ${l.slice(0, 120)}`);
    }
    // Inside `table … {`.
    if (chain !== null || set !== null) {
      if (l === '}') {
        chain = set = null;
        continue;
      }
      if (set !== null) {
        if ((m = /^elements = \{ (.*)$/.exec(l))) {
          if (l.endsWith('}')) {
            if (cur) addElements(cur, set, m[1]!.replace(/\}\s*$/, ''));
          } else elems = m[1]!;
        }
        continue;
      }
      if (/^type \S+ hook /.test(l) || /^(policy|comment) /.test(l)) continue;
      if (cur) cur.chains.get(chain!)!.push(l.replace(/ comment "[^"]*"$/, ''));
      continue;
    }
    if (l === '}') {
      inTable = false;
      cur = null;
      continue;
    }
    if ((m = /^chain (\S+) \{$/.exec(l))) {
      chain = m[1]!;
      if (cur) cur.chains.set(chain, []);
      continue;
    }
    if ((m = /^(?:set|map) (\S+) \{$/.exec(l))) {
      set = m[1]!;
      if (cur && !cur.sets.has(set)) cur.sets.set(set, new Map());
      continue;
    }
    if (/^(comment|flags) /.test(l)) continue;
    throw new NftParseError(`line ${i + 1}: unexpected in a table: ${l.slice(0, 120)}`);
  }
  if (out.tables.length === 0) throw new NftParseError(`no kproxy table in the input${out.others.length ? ` (tables seen: ${out.others.join(', ')})` : ''}`);
  return out;
}

export interface NftPacket {
  proto: 'tcp' | 'udp' | 'sctp';
  src: string;
  dst: string;
  dport: number;
  /** The node's own addresses (`fib … type local`). */
  localIps: string[];
  /** The interface the packet arrives on ("" for a packet from the node itself). Default "eth0". */
  iif?: string;
}

export interface NftOutcome {
  probability: number;
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** "ip:port" after DNAT (the original destination when not DNATed). */
  destination: string;
  dnat: boolean;
  masquerade: boolean;
}

export interface NftTraceResult {
  packet: { proto: string; src: string; dst: string; dport: number; family: 'ip' | 'ip6' };
  /** Rules that matched, "chain: rule", in order (for the first outcome's path). */
  path: string[];
  outcomes: NftOutcome[];
  notes: string[];
}

interface Ctx {
  p: NftPacket;
  dst: string;
  t: NftTable;
  mark: boolean;
  dnat: string[] | null;
  verdict: NftOutcome['verdict'] | null;
  path: string[];
}

const TERM = '(?:ip6? [sd]addr|meta l4proto|(?:th|tcp|udp|sctp) dport|numgen inc mod 1(?: offset \\d+)?)';
const CONCAT = new RegExp(`^(${TERM}(?: \\. ${TERM})*) (!= )?@(\\S+)(?: |$)`);

function term(t: string, c: Ctx): string {
  if (/saddr$/.test(t)) return c.p.src;
  if (/daddr$/.test(t)) return c.dst;
  if (t === 'meta l4proto') return c.p.proto;
  if (/dport$/.test(t)) return String(c.p.dport);
  const m = /offset (\d+)$/.exec(t);
  return m ? m[1]! : '0';
}

/** A `tcp dport`-style term also requires that protocol (nft adds the check). */
function protoOk(expr: string, c: Ctx): boolean {
  for (const m of expr.matchAll(/\b(tcp|udp|sctp) dport/g)) if (m[1] !== c.p.proto) return false;
  return true;
}

function concat(expr: string, c: Ctx): string {
  return expr.split(' . ').map((t) => term(t, c)).join(' . ');
}

function addrEq(a: string, b: string): boolean {
  if (a === b) return true;
  const x = normalizeIP(a);
  return x !== null && x === normalizeIP(b);
}

function inSet(t: NftTable, set: string, key: string): boolean {
  const s = t.sets.get(set);
  if (!s) return false;
  if (s.has(key)) return true;
  // Interval sets (fw-allow): the last part is an address or CIDR.
  const cut = key.lastIndexOf(' . ');
  if (cut < 0) return false;
  const head = key.slice(0, cut);
  const ip = key.slice(cut + 3);
  if (normalizeIP(ip) === null) return false;
  for (const k of s.keys()) {
    const kc = k.lastIndexOf(' . ');
    if (kc < 0 || k.slice(0, kc) !== head) continue;
    const r = k.slice(kc + 3);
    if (r.includes('/') ? cidrContains(r, ip) : addrEq(r, ip)) return true;
  }
  return false;
}

function slotValue(t: NftTable, map: string, key: string): string {
  const v = t.sets.get(map)?.get(key);
  if (v === undefined) throw new NftParseError(`map ${map} has no element ${key} (the dump is inconsistent)`);
  const [ip, port] = v.split(' . ');
  return ip!.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function slots(t: NftTable, map: string, key: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(slotValue(t, map, `${key} . ${i}`));
  return out;
}

/** Records a rule that acted (once, though a rule may mark and then jump). */
function met(c: Ctx, line: string): void {
  if (c.path[c.path.length - 1] !== line) c.path.push(line);
}

/** Runs a chain; true when the walk ended (a goto'd chain finished, a verdict, a DNAT), false when it returned. */
function run(chain: string, c: Ctx, depth = 0): boolean {
  if (depth > 32) throw new NftParseError(`chain loop at ${chain}`);
  for (const rule of c.t.chains.get(chain) ?? []) {
    let r = rule;
    let ok = true;
    while (ok && r.length > 0) {
      let m = CONCAT.exec(r);
      if (m) {
        const hit = protoOk(m[1]!, c) && inSet(c.t, m[3]!, concat(m[1]!, c));
        ok = m[2] ? !hit : hit;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ip6? ([sd]addr) (!= )?([0-9a-fA-F.:]+(?:\/\d+)?)(?: |$)/.exec(r))) {
        const ip = m[1] === 'saddr' ? c.p.src : c.dst;
        const hit = m[3]!.includes('/') ? cidrContains(m[3]!, ip) : addrEq(ip, m[3]!);
        ok = m[2] ? !hit : hit;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^fib ([sd]addr) type local(?: |$)/.exec(r))) {
        const ip = m[1] === 'saddr' ? c.p.src : c.dst;
        ok = c.p.localIps.some((l) => addrEq(l, ip));
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^iifname (!= )?"([^"]+)"(?: |$)/.exec(r))) {
        const iif = c.p.iif ?? 'eth0';
        const want = m[2]!;
        const hit = want.endsWith('*') ? iif.startsWith(want.slice(0, -1)) : iif === want;
        ok = m[1] ? !hit : hit;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ct state (\S+)(?: |$)/.exec(r))) {
        ok = m[1]!.split(',').includes('new');
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ct status dnat(?: |$)/.exec(r))) {
        ok = c.dnat !== null;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^tcp dport @(\S+)(?: |$)/.exec(r))) {
        ok = c.p.proto === 'tcp' && inSet(c.t, m[1]!, String(c.p.dport));
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^meta mark set meta mark \| \S+(?: |$)/.exec(r))) {
        c.mark = true;
        met(c, `${chain}: ${rule}`);
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^update @\S+ \{ .*? numgen random mod (\d+) timeout \S+ \} goto (\S+)$/.exec(r))) {
        // A new ClientIP-affinity client: a random slot is remembered, then taken: any of the N.
        met(c, `${chain}: ${rule}`);
        const d = m[2]!.replace(/-aff$/, '');
        const key = d.startsWith('np') ? `${c.p.proto} . ${c.p.dport}` : `${c.dst} . ${c.p.proto} . ${c.p.dport}`;
        c.dnat = slots(c.t, `${d}-eps-${c.p.proto}`, key, Number(m[1]));
        return true;
      }
      if ((m = /^update @\S+ \{ [^}]*\} dnat ip6? to (.*) map @(\S+)$/.exec(r))) {
        // A client with a remembered slot (affinity entries in the dump): that slot's endpoint.
        met(c, `${chain}: ${rule}`);
        c.dnat = [slotValue(c.t, m[2]!, concat(m[1]!, c))];
        return true;
      }
      if ((m = /^dnat ip6? to (.*) \. numgen random mod (\d+) map @(\S+)$/.exec(r))) {
        if (!protoOk(m[1]!, c)) {
          ok = false;
          break;
        }
        met(c, `${chain}: ${rule}`);
        c.dnat = slots(c.t, m[3]!, concat(m[1]!.replace(/\b(tcp|udp|sctp) dport/g, 'th dport'), c), Number(m[2]));
        return true;
      }
      if ((m = /^(jump|goto) (\S+)$/.exec(r))) {
        met(c, `${chain}: ${rule}`);
        const ended = run(m[2]!, c, depth + 1);
        if (ended || m[1] === 'goto') return true;
        r = '';
        continue;
      }
      if (r === 'return') {
        met(c, `${chain}: ${rule}`);
        return false;
      }
      if (r === 'accept' || r === 'drop' || r === 'reject' || /^reject with /.test(r)) {
        met(c, `${chain}: ${rule}`);
        c.verdict = r === 'accept' ? 'ACCEPT' : r === 'drop' ? 'DROP' : 'REJECT';
        return true;
      }
      throw new NftParseError(`${chain}: cannot read ${JSON.stringify(r.slice(0, 160))}`);
    }
  }
  return false;
}

function hostOf(e: string): string {
  return e.replace(/^\[?([^\]]+?)\]?:\d+$/, '$1');
}

/** Where a new connection goes through kproxy's table of the packet's family. */
export function traceNft(rs: NftRuleset, p: NftPacket): NftTraceResult {
  const family = p.dst.includes(':') ? 'ip6' : 'ip';
  const t = rs.tables.find((x) => x.family === family);
  if (!t) throw new NftParseError(`no table ${family} kproxy in the input`);
  const notes: string[] = [];
  if (p.localIps.length === 0) notes.push("no --local-ip: the node's own addresses are unknown, so NodePorts and traffic from the node are not recognized");
  if (rs.others.length) notes.push(`other tables not traced: ${rs.others.join(', ')}`);
  const c: Ctx = { p, dst: p.dst, t, mark: false, dnat: null, verdict: null, path: [] };
  run('services', c);
  const dests = c.dnat ?? [null];
  const outcomes: NftOutcome[] = [];
  for (const d of dests) {
    // Filter chains after DNAT, as the input/forward/output hooks see the packet.
    const f: Ctx = { ...c, dst: d ? hostOf(d) : p.dst, verdict: null, path: d === dests[0] ? c.path : [] };
    for (const chain of ['service-endpoints', 'external-endpoints']) if (!f.verdict) run(chain, f);
    if (!f.verdict && p.proto === 'tcp' && inSet(t, 'hc-nodeports', String(p.dport)) && p.localIps.some((l) => addrEq(l, f.dst))) {
      f.verdict = 'ACCEPT';
      f.path.push('filter-input: tcp dport @hc-nodeports accept');
    }
    if (!f.verdict) run('firewall', f);
    const hairpin = d !== null && addrEq(hostOf(d), p.src) && inSet(t, 'hairpin', `${p.src} . ${p.src}`);
    outcomes.push({
      probability: 1 / dests.length,
      verdict: f.verdict ?? 'ACCEPT',
      destination: d ?? (p.dst.includes(':') ? `[${p.dst}]:${p.dport}` : `${p.dst}:${p.dport}`),
      dnat: d !== null,
      masquerade: d !== null && (c.mark || hairpin),
    });
  }
  if (!c.dnat && outcomes[0]!.verdict === 'ACCEPT') notes.push('not a service frontend in this table: left alone (other tables and routing decide)');
  return { packet: { proto: p.proto, src: p.src, dst: p.dst, dport: p.dport, family }, path: c.path, outcomes, notes };
}

export function formatNftText(r: NftTraceResult): string {
  const out: string[] = [];
  out.push(`packet: ${r.packet.proto} ${r.packet.src} → ${r.packet.dst}:${r.packet.dport} (table ${r.packet.family} kproxy)`);
  out.push('rules met:');
  for (const s of r.path) out.push(`  ${s}`);
  if (r.path.length === 0) out.push('  (none)');
  out.push('outcomes:');
  for (const o of r.outcomes) {
    const pct = `${(o.probability * 100).toFixed(1)}%`.padStart(6);
    const what = o.dnat ? `DNAT → ${o.destination}` : o.destination;
    out.push(`  ${pct}  ${o.verdict.padEnd(6)} ${what}${o.masquerade ? ', masqueraded' : ''}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
