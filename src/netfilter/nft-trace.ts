// `kproxy trace` for nftables: reads `nft list ruleset` (or `nft list table`)
// output, or an `nft -f` transaction (what `kproxy render --proxy-mode
// nftables` prints, or kube-proxy's own in its test form), and walks a new
// connection through the service table of the packet's family: kproxy's
// `kproxy` table, or upstream kube-proxy's `kube-proxy` table (its nftables
// mode). kproxy's table is walked in the order its layout runs (the nat
// `services` chain, then the filter chains; docs/nftables.md); kube-proxy's
// is walked hook by hook, its base chains in priority order, as the kernel
// runs them: prerouting (or output, from the node), then input or forward,
// then postrouting, where its `masquerade` decides the masquerade. A random
// choice (`numgen random mod N`) forks the walk: every outcome comes with
// its probability. A rule the walker cannot read is an error naming it, not
// a silent pass. Other tables are listed in the notes and not traced. Pure.
import { cidrContains, joinHostPort, normalizeIP, splitHostPort } from '../util/ip.js';

/** Whose service table: kproxy's layout or upstream kube-proxy's nftables mode. */
export type NftLayout = 'kproxy' | 'kube-proxy';

export interface NftBaseChain {
  chain: string;
  type: string;
  hook: string;
  priority: number;
}

export interface NftTable {
  family: 'ip' | 'ip6';
  layout: NftLayout;
  chains: Map<string, string[]>;
  sets: Map<string, Map<string, string>>;
  /** Base chains and their hooks (kube-proxy's table is walked by them). */
  base: NftBaseChain[];
}

export interface NftRuleset {
  /** The service tables present (kproxy's or kube-proxy's, one per family and layout). */
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
  if ((name !== 'kproxy' && name !== 'kube-proxy') || (fam !== 'ip' && fam !== 'ip6')) {
    const id = `${fam} ${name}`;
    if (!out.others.includes(id)) out.others.push(id);
    return null;
  }
  let t = out.tables.find((x) => x.family === fam && x.layout === name);
  if (!t) out.tables.push((t = { family: fam, layout: name, chains: new Map(), sets: new Map(), base: [] }));
  return t;
}

const PRIORITY_NAMES: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };

/** `type nat hook output priority dstnat - 10` (a listing) or `… priority -110` (a transaction). */
function addBase(t: NftTable, chain: string, spec: string): void {
  const m = /type (\S+) hook (\S+) priority (-?\d+|[a-z]+)(?: ([+-]) (\d+))?/.exec(spec);
  if (!m) return;
  const base = /^-?\d+$/.test(m[3]!) ? Number(m[3]) : PRIORITY_NAMES[m[3]!];
  if (base === undefined) throw new NftParseError(`chain ${chain}: unknown priority ${m[3]}`);
  const priority = base + (m[4] ? (m[4] === '-' ? -1 : 1) * Number(m[5]) : 0);
  t.base = t.base.filter((b) => b.chain !== chain);
  t.base.push({ chain, type: m[1]!, hook: m[2]!, priority });
}

function addElements(t: NftTable, set: string, body: string): void {
  const s = t.sets.get(set) ?? new Map<string, string>();
  t.sets.set(set, s);
  for (const item of body.split(',')) {
    const e = item.trim().replace(/ (timeout|expires) \S+/g, '').replace(/ comment "[^"]*"/, '');
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
        if (t) (t.chains.get(m[3]!) ?? t.chains.set(m[3]!, []).get(m[3]!)!).push(m[4]!.replace(/ comment "[^"]*"$/, ''));
        continue;
      }
      if ((m = /^add element (\S+) (\S+) (\S+) \{ (.*) \}$/.exec(l))) {
        const t = table(out, m[1]!, m[2]!);
        if (t) addElements(t, m[3]!, m[4]!);
        continue;
      }
      if ((m = /^add chain (\S+) (\S+) (\S+)(.*)$/.exec(l))) {
        const t = table(out, m[1]!, m[2]!);
        if (t && !t.chains.has(m[3]!)) t.chains.set(m[3]!, []);
        if (t) addBase(t, m[3]!, m[4]!);
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
      if (/^type \S+ hook /.test(l)) {
        if (cur) addBase(cur, chain!, l);
        continue;
      }
      if (/^(policy|comment) /.test(l)) continue;
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
  if (out.tables.length === 0) throw new NftParseError(`no kproxy or kube-proxy table in the input${out.others.length ? ` (tables seen: ${out.others.join(', ')})` : ''}`);
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
  /** Rules that acted on the way to this outcome, "chain: rule", in order. */
  path: string[];
}

export interface NftTraceResult {
  packet: { proto: string; src: string; dst: string; dport: number; family: 'ip' | 'ip6' };
  /** The table traced: "ip kproxy", "ip6 kube-proxy", … */
  table: string;
  /** Rules that acted on the way to the first outcome (each outcome has its own). */
  path: string[];
  outcomes: NftOutcome[];
  notes: string[];
}

/** One branch of the walk: the packet as rewritten so far, and how it got here. */
interface Ctx {
  p: NftPacket;
  t: NftTable;
  dst: string;
  dport: number;
  /** The packet mark (kube-proxy's masquerade bit is 0x4000; kproxy's one mark means masquerade). */
  mark: number;
  /** "ip:port" once DNATed. */
  dnat: string | null;
  masquerade: boolean;
  verdict: NftOutcome['verdict'] | null;
  path: string[];
  probability: number;
}

/** How a rule or chain left a branch: go on with the next rule, return to the caller, or stop (a verdict, a NAT). */
type Flow = 'next' | 'return' | 'end';
interface Leaf {
  c: Ctx;
  flow: Flow;
}

function clone(c: Ctx, share = 1): Ctx {
  return { ...c, path: [...c.path], probability: c.probability * share };
}

const TERM = '(?:ip6? [sd]addr|meta l4proto|(?:th|tcp|udp|sctp) dport|numgen inc mod 1(?: offset \\d+)?)';
const CONCAT = new RegExp(`^(${TERM}(?: \\. ${TERM})*) (!= )?@(\\S+)(?: |$)`);
const VMAP = new RegExp(`^(${TERM}(?: \\. ${TERM})*) vmap (?:@(\\S+)|\\{ ([^}]*) \\})(?: |$)`);
/** An address, a CIDR, or an anonymous set of them (`{ 10.0.0.0/8, 10.1.2.3 }`). */
const ADDRS = '(?:\\{ [^}]* \\}|[0-9a-fA-F.:]+(?:\\/\\d+)?)';
const ADDR_MATCH = new RegExp(`^ip6? ([sd]addr) (!= )?(${ADDRS})(?: |$)`);

function term(t: string, c: Ctx): string {
  if (/saddr$/.test(t)) return c.p.src;
  if (/daddr$/.test(t)) return c.dst;
  if (t === 'meta l4proto') return c.p.proto;
  if (/dport$/.test(t)) return String(c.dport);
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

function addrIn(spec: string, ip: string): boolean {
  const items = spec.startsWith('{') ? spec.slice(1, -1).split(',').map((x) => x.trim()).filter(Boolean) : [spec];
  return items.some((r) => (r.includes('/') ? cidrContains(r, ip) : addrEq(r, ip)));
}

function inSet(t: NftTable, set: string, key: string): boolean {
  const s = t.sets.get(set);
  if (!s) return false;
  if (s.has(key)) return true;
  // Interval sets (fw-allow, or a set of addresses): the last part is an address or CIDR.
  const cut = key.lastIndexOf(' . ');
  const head = cut < 0 ? '' : key.slice(0, cut);
  const ip = cut < 0 ? key : key.slice(cut + 3);
  if (normalizeIP(ip) === null) return false;
  for (const k of s.keys()) {
    const kc = k.lastIndexOf(' . ');
    if ((kc < 0 ? '' : k.slice(0, kc)) !== head) continue;
    if (addrIn(kc < 0 ? k : k.slice(kc + 3), ip)) return true;
  }
  return false;
}

/** "a . b : v, c . d : w" → key → value. */
function anonMap(body: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const item of body.split(',')) {
    const [k, v] = item.split(' : ');
    if (k !== undefined && v !== undefined) m.set(k.trim(), v.trim());
  }
  return m;
}

/** "10.1.0.5 . 8080" (a map's value) or "10.1.0.5:8080" (a dnat target) → "ip:port". */
function endpoint(v: string): string {
  const cat = /^(\S+) \. (\d+)$/.exec(v.trim());
  if (cat) return joinHostPort(cat[1]!, cat[2]!);
  const { host, port } = splitHostPort(v.trim());
  return joinHostPort(host, port ?? '');
}

function dnatTo(c: Ctx, ep: string): void {
  const { host, port } = splitHostPort(ep);
  c.dnat = ep;
  c.dst = host;
  c.dport = port ?? c.dport;
}

function slotValue(t: NftTable, map: string, key: string): string {
  const v = t.sets.get(map)?.get(key);
  if (v === undefined) throw new NftParseError(`map ${map} has no element ${key} (the dump is inconsistent)`);
  return endpoint(v);
}

/** The N branches of a random choice, each with its share. */
function forkDnat(c: Ctx, eps: string[]): Leaf[] {
  return eps.map((ep) => {
    const b = clone(c, 1 / eps.length);
    dnatTo(b, ep);
    return { c: b, flow: 'end' as const };
  });
}

/** Records a rule that acted (once, though a rule may mark and then jump). */
function met(c: Ctx, line: string): void {
  if (c.path[c.path.length - 1] !== line) c.path.push(line);
}

/** A verdict (from a rule, or a verdict map's value) applied to a branch. */
function verdict(v: string, chain: string, c: Ctx, depth: number): Leaf[] {
  let m: RegExpExecArray | null;
  if ((m = /^(jump|goto) (\S+)$/.exec(v))) {
    const kind = m[1];
    return run(m[2]!, c, depth + 1).map((l) => (l.flow === 'end' ? l : { c: l.c, flow: kind === 'jump' ? 'next' : 'return' }));
  }
  if (v === 'return') return [{ c, flow: 'return' }];
  if (v === 'continue') return [{ c, flow: 'next' }];
  if (v === 'accept' || v === 'drop' || v === 'reject' || /^reject with /.test(v)) {
    c.verdict = v === 'accept' ? 'ACCEPT' : v === 'drop' ? 'DROP' : 'REJECT';
    return [{ c, flow: 'end' }];
  }
  throw new NftParseError(`${chain}: cannot read the verdict ${JSON.stringify(v)}`);
}

/** Runs one rule on a branch: null when it does not match, else the branches it leaves. */
function rule(chain: string, text: string, c: Ctx, depth: number): Leaf[] | null {
  const line = `${chain}: ${text}`;
  let r = text;
  while (r.length > 0) {
    let m: RegExpExecArray | null;
    const eat = (): void => {
      r = r.slice(m![0].length);
    };
    if ((m = VMAP.exec(r))) {
      if (!protoOk(m[1]!, c)) return null;
      const key = concat(m[1]!, c);
      const v = m[2] ? c.t.sets.get(m[2])?.get(key) : anonMap(m[3]!).get(key);
      if (v === undefined) return null;
      met(c, line);
      return verdict(v, chain, c, depth);
    }
    if ((m = /^numgen random mod (\d+) vmap \{ ([^}]*) \}$/.exec(r))) {
      // One of N chains at random: every branch, each with its share.
      const n = Number(m[1]);
      const vm = anonMap(m[2]!);
      met(c, line);
      const out: Leaf[] = [];
      for (let i = 0; i < n; i++) {
        const v = vm.get(String(i));
        if (v === undefined) throw new NftParseError(`${line}: no branch ${i}`);
        out.push(...verdict(v, chain, clone(c, 1 / n), depth));
      }
      return out;
    }
    if ((m = CONCAT.exec(r))) {
      const hit = protoOk(m[1]!, c) && inSet(c.t, m[3]!, concat(m[1]!, c));
      if (m[2] ? hit : !hit) return null;
      eat();
      continue;
    }
    if ((m = ADDR_MATCH.exec(r))) {
      const hit = addrIn(m[3]!, m[1] === 'saddr' ? c.p.src : c.dst);
      if (m[2] ? hit : !hit) return null;
      eat();
      continue;
    }
    if ((m = /^fib ([sd]addr) type local(?: |$)/.exec(r))) {
      const ip = m[1] === 'saddr' ? c.p.src : c.dst;
      if (!c.p.localIps.some((l) => addrEq(l, ip))) return null;
      eat();
      continue;
    }
    if ((m = /^iifname (!= )?"([^"]+)"(?: |$)/.exec(r))) {
      const iif = c.p.iif ?? 'eth0';
      const want = m[2]!;
      const hit = want.endsWith('*') ? iif.startsWith(want.slice(0, -1)) : iif === want;
      if (m[1] ? hit : !hit) return null;
      eat();
      continue;
    }
    if ((m = /^ct state (\S+)(?: |$)/.exec(r))) {
      if (!m[1]!.split(',').includes('new')) return null;
      eat();
      continue;
    }
    if ((m = /^ct status dnat(?: |$)/.exec(r))) {
      if (c.dnat === null) return null;
      eat();
      continue;
    }
    if ((m = /^meta l4proto (tcp|udp|sctp)(?: |$)/.exec(r))) {
      if (m[1] !== c.p.proto) return null;
      eat();
      continue;
    }
    if ((m = /^(tcp|udp|sctp) dport (\d+)(?: |$)/.exec(r))) {
      if (m[1] !== c.p.proto || Number(m[2]) !== c.dport) return null;
      eat();
      continue;
    }
    if ((m = /^tcp dport @(\S+)(?: |$)/.exec(r))) {
      if (c.p.proto !== 'tcp' || !inSet(c.t, m[1]!, String(c.dport))) return null;
      eat();
      continue;
    }
    if ((m = /^(?:meta )?mark (?:&|and) (0x[0-9a-fA-F]+|\d+) (==|!=) (0x[0-9a-fA-F]+|\d+)(?: |$)/.exec(r))) {
      const hit = (c.mark & Number(m[1])) === Number(m[3]);
      if (m[2] === '!=' ? hit : !hit) return null;
      eat();
      continue;
    }
    if ((m = /^(?:meta )?mark set (?:meta )?mark (\||or|\^|xor) (0x[0-9a-fA-F]+|\d+)(?: |$)/.exec(r))) {
      c.mark = m[1] === '|' || m[1] === 'or' ? c.mark | Number(m[2]) : c.mark ^ Number(m[2]);
      met(c, line);
      eat();
      continue;
    }
    if ((m = /^update @\S+ \{ .*? numgen random mod (\d+) timeout \S+ \} goto (\S+)$/.exec(r))) {
      // kproxy: a new ClientIP-affinity client: a random slot is remembered, then taken: any of the N.
      met(c, line);
      const d = m[2]!.replace(/-aff$/, '');
      const key = d.startsWith('np') ? `${c.p.proto} . ${c.dport}` : `${c.dst} . ${c.p.proto} . ${c.dport}`;
      const eps = Array.from({ length: Number(m[1]) }, (_, i) => slotValue(c.t, `${d}-eps-${c.p.proto}`, `${key} . ${i}`));
      return forkDnat(c, eps);
    }
    if ((m = /^update @\S+ \{ [^}]*\} dnat ip6? to (.*) map @(\S+)$/.exec(r))) {
      // kproxy: a client with a remembered slot (affinity entries in the dump): that slot's endpoint.
      met(c, line);
      return forkDnat(c, [slotValue(c.t, m[2]!, concat(m[1]!, c))]);
    }
    if ((m = /^update @\S+ \{ [^}]* \}(?: |$)/.exec(r))) {
      // kube-proxy: the client is remembered for affinity; the packet goes on.
      eat();
      continue;
    }
    if ((m = /^dnat ip6? to (.*) \. numgen random mod (\d+) map @(\S+)$/.exec(r))) {
      // kproxy: the endpoint slot map.
      if (!protoOk(m[1]!, c)) return null;
      met(c, line);
      const key = concat(m[1]!.replace(/\b(tcp|udp|sctp) dport/g, 'th dport'), c);
      return forkDnat(c, Array.from({ length: Number(m[2]) }, (_, i) => slotValue(c.t, m![3]!, `${key} . ${i}`)));
    }
    if ((m = /^dnat (?:ip6? )?(?:addr \. port )?to numgen random mod (\d+) map \{ ([^}]*) \}$/.exec(r))) {
      // kube-proxy (newer): the endpoints in an anonymous map.
      met(c, line);
      const vm = anonMap(m[2]!);
      return forkDnat(c, Array.from({ length: Number(m[1]) }, (_, i) => {
        const v = vm.get(String(i));
        if (v === undefined) throw new NftParseError(`${line}: no endpoint ${i}`);
        return endpoint(v);
      }));
    }
    if ((m = /^dnat (?:ip6? )?to (\S+)$/.exec(r))) {
      met(c, line);
      return forkDnat(c, [endpoint(m[1]!)]);
    }
    if ((m = /^masquerade(?: (?:fully-random|random|persistent),?)*$/.exec(r))) {
      met(c, line);
      c.masquerade = true;
      return [{ c, flow: 'end' }];
    }
    break;
  }
  if (r.length === 0) return [{ c, flow: 'next' }];
  const v = /^(jump \S+|goto \S+|return|continue|accept|drop|reject(?: with .*)?)$/.exec(r);
  if (!v) throw new NftParseError(`${chain}: cannot read ${JSON.stringify(r.slice(0, 160))}`);
  met(c, line);
  return verdict(v[1]!, chain, c, depth);
}

/** Runs a chain on a branch: the branches that leave it, each returned ('return') or stopped ('end'). */
function run(chain: string, c: Ctx, depth = 0): Leaf[] {
  if (depth > 32) throw new NftParseError(`chain loop at ${chain}`);
  const rules = c.t.chains.get(chain);
  if (rules === undefined && depth > 0) throw new NftParseError(`no chain ${chain} in the table`);
  const from = (i: number, b: Ctx): Leaf[] => {
    for (; i < (rules?.length ?? 0); i++) {
      const out = rule(chain, rules![i]!, b, depth);
      if (out === null) continue;
      // The common case, a rule that matched and went on with the same branch: loop, do not recurse.
      if (out.length === 1 && out[0]!.flow === 'next' && out[0]!.c === b) continue;
      return out.flatMap((l) => (l.flow === 'next' ? from(i + 1, l.c) : [l]));
    }
    return [{ c: b, flow: 'return' }];
  };
  return from(0, c);
}

function isLocal(c: Ctx): boolean {
  return c.p.localIps.some((l) => addrEq(l, c.dst)) || /^127\./.test(c.dst) || c.dst === '::1';
}

/** Runs a hook's base chains, lowest priority first; a DROP or REJECT stops the branch. */
function hook(name: string, branches: Ctx[]): Ctx[] {
  let out = branches;
  for (const b of [...(branches[0]?.t.base ?? [])].filter((x) => x.hook === name).sort((x, y) => x.priority - y.priority)) {
    out = out.flatMap((c) => (c.verdict === 'DROP' || c.verdict === 'REJECT' ? [c] : run(b.chain, c).map((l) => l.c)));
    for (const c of out) if (c.verdict === 'ACCEPT') c.verdict = null;
  }
  return out;
}

/** kube-proxy's table: the hooks a new connection passes, in the kernel's order. */
function walkHooks(c: Ctx): Ctx[] {
  const fromNode = (c.p.iif ?? 'eth0') === '';
  let bs = hook(fromNode ? 'output' : 'prerouting', [c]);
  if (!fromNode) {
    const local = bs.filter((b) => isLocal(b));
    bs = [...hook('input', local), ...hook('forward', bs.filter((b) => !isLocal(b)))];
  }
  const live = bs.filter((b) => b.verdict !== 'DROP' && b.verdict !== 'REJECT');
  return [...bs.filter((b) => !live.includes(b)), ...hook('postrouting', live)];
}

/** kproxy's table, in its layout's order: nat `services`, then the filter chains of the path taken. */
function walkKproxy(c: Ctx): Ctx[] {
  const t = c.t;
  const p = c.p;
  return run('services', c).map(({ c: b }) => {
    // Filter chains after DNAT, as the input/forward/output hooks see the packet.
    b.verdict = null;
    for (const chain of ['service-endpoints', 'external-endpoints']) if (!b.verdict) run(chain, b);
    if (!b.verdict && p.proto === 'tcp' && inSet(t, 'hc-nodeports', String(p.dport)) && p.localIps.some((l) => addrEq(l, b.dst))) {
      b.verdict = 'ACCEPT';
      b.path.push('filter-input: tcp dport @hc-nodeports accept');
    }
    if (!b.verdict) run('firewall', b);
    const hairpin = b.dnat !== null && addrEq(b.dst, p.src) && inSet(t, 'hairpin', `${p.src} . ${p.src}`);
    b.masquerade = b.dnat !== null && (b.mark !== 0 || hairpin);
    return b;
  });
}

/** Where a new connection goes through the service table of the packet's family. */
export function traceNft(rs: NftRuleset, p: NftPacket): NftTraceResult {
  const family = p.dst.includes(':') ? 'ip6' : 'ip';
  const t = rs.tables.find((x) => x.family === family && x.layout === 'kproxy') ?? rs.tables.find((x) => x.family === family);
  if (!t) throw new NftParseError(`no table ${family} kproxy or ${family} kube-proxy in the input`);
  const notes: string[] = [];
  if (p.localIps.length === 0) notes.push("no --local-ip: the node's own addresses are unknown, so NodePorts and traffic from the node are not recognized");
  const others = [...rs.others, ...rs.tables.filter((x) => x !== t).map((x) => `${x.family} ${x.layout}`)];
  if (others.length) notes.push(`other tables not traced: ${others.join(', ')}`);
  if (t.layout === 'kube-proxy' && t.base.length === 0) throw new NftParseError(`table ${family} kube-proxy has no base chains (no "type … hook …" in the input)`);
  const c: Ctx = { p, t, dst: p.dst, dport: p.dport, mark: 0, dnat: null, masquerade: false, verdict: null, path: [], probability: 1 };
  const leaves = t.layout === 'kproxy' ? walkKproxy(c) : walkHooks(c);
  const outcomes: NftOutcome[] = leaves.map((b) => ({
    probability: b.probability,
    verdict: b.verdict ?? 'ACCEPT',
    destination: b.dnat ?? joinHostPort(p.dst, p.dport),
    dnat: b.dnat !== null,
    masquerade: b.masquerade,
    path: b.path,
  }));
  if (!outcomes.some((o) => o.dnat) && outcomes[0]!.verdict === 'ACCEPT') notes.push('not a service frontend in this table: left alone (other tables and routing decide)');
  return { packet: { proto: p.proto, src: p.src, dst: p.dst, dport: p.dport, family }, table: `${t.family} ${t.layout}`, path: outcomes[0]!.path, outcomes, notes };
}

export function formatNftText(r: NftTraceResult): string {
  const out: string[] = [];
  out.push(`packet: ${r.packet.proto} ${r.packet.src} → ${r.packet.dst}:${r.packet.dport} (table ${r.table})`);
  const shared = r.outcomes.length > 1 ? commonPrefix(r.outcomes.map((o) => o.path)) : r.path.length;
  out.push('rules met:');
  for (const s of r.path.slice(0, shared)) out.push(`  ${s}`);
  if (r.path.length === 0) out.push('  (none)');
  out.push('outcomes:');
  for (const o of r.outcomes) {
    const pct = `${(o.probability * 100).toFixed(1)}%`.padStart(6);
    const what = o.dnat ? `DNAT → ${o.destination}` : o.destination;
    out.push(`  ${pct}  ${o.verdict.padEnd(6)} ${what}${o.masquerade ? ', masqueraded' : ''}`);
    if (r.outcomes.length > 1) for (const s of o.path.slice(shared)) out.push(`           ${s}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}

function commonPrefix(paths: string[][]): number {
  let n = 0;
  while (paths.every((x) => n < x.length && x[n] === paths[0]![n])) n++;
  return n;
}
