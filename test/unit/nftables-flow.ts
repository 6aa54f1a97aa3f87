// A test-only tracer for kproxy's nftables transactions (the `nft -f` text
// run and render write), with the same questions and answers as
// iptables-flow.ts's tracePacket: where does a new connection end up (the
// endpoints it can be DNATed to, or REJECT / DROP / ACCEPT) and is it
// masqueraded. It interprets the rule forms layout.ts writes, against the
// elements of the same transaction, so the differential test compares the
// two modes' real output. Not a test file itself.
import { cidrContains } from '../../src/util/ip.js';

interface Parsed {
  rules: Map<string, string[]>;
  sets: Map<string, Map<string, string>>;
}

function splitElements(body: string): string[] {
  return body.split(', ').map((s) => s.trim()).filter(Boolean);
}

export function parseTransaction(text: string): Parsed {
  const rules = new Map<string, string[]>();
  const sets = new Map<string, Map<string, string>>();
  for (const line of text.split('\n')) {
    let m = /^add rule ip6? kproxy (\S+) (.*)$/.exec(line);
    if (m) {
      const a = rules.get(m[1]!) ?? [];
      a.push(m[2]!);
      rules.set(m[1]!, a);
      continue;
    }
    m = /^add element ip6? kproxy (\S+) \{ (.*) \}$/.exec(line);
    if (m) {
      const s = sets.get(m[1]!) ?? new Map<string, string>();
      for (const e of splitElements(m[2]!)) {
        const [k, v] = e.split(' : ');
        s.set(k!, v ?? '');
      }
      sets.set(m[1]!, s);
    }
  }
  return { rules, sets };
}

export interface NftPacket {
  sourceIP: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  destIP: string;
  destPort: number;
}

interface Ctx {
  src: string;
  dst: string;
  proto: string;
  port: number;
  local: Set<string>;
  mark: boolean;
  dnat: string[] | null;
  verdict: string | null;
}

const TERM = '(?:ip6? [sd]addr|meta l4proto|th dport|numgen inc mod 1(?: offset \\d+)?)';
const CONCAT = new RegExp(`^(${TERM}(?: \\. ${TERM})*) (!= )?@(\\S+)(?: |$)`);

function evalTerm(t: string, c: Ctx): string {
  if (/saddr$/.test(t)) return c.src;
  if (/daddr$/.test(t)) return c.dst;
  if (t === 'meta l4proto') return c.proto;
  if (t === 'th dport') return String(c.port);
  const m = /offset (\d+)$/.exec(t);
  return m ? m[1]! : '0';
}

function inSet(p: Parsed, set: string, key: string): boolean {
  const s = p.sets.get(set);
  if (!s) return false;
  if (s.has(key)) return true;
  if (set !== 'fw-allow') return false;
  // Interval set: the last part is a CIDR.
  const cut = key.lastIndexOf(' . ');
  const head = key.slice(0, cut);
  const ip = key.slice(cut + 3);
  for (const k of s.keys()) {
    const kc = k.lastIndexOf(' . ');
    if (k.slice(0, kc) !== head) continue;
    const r = k.slice(kc + 3);
    if (r.includes('/') ? cidrContains(r, ip) : r === ip) return true;
  }
  return false;
}

/** The endpoints of slots 0..n-1 of `key` in an eps map. */
function slots(p: Parsed, map: string, key: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = p.sets.get(map)?.get(`${key} . ${i}`);
    if (v === undefined) throw new Error(`${map} has no slot ${i} of ${key}`);
    const [ip, port] = v.split(' . ');
    out.push(ip!.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
  }
  return out;
}

/** Runs a chain; true when a verdict ended the packet's walk (goto/terminal), false when it returned. */
function run(p: Parsed, chain: string, c: Ctx, depth = 0): boolean {
  if (depth > 20) throw new Error(`chain loop at ${chain}`);
  for (const rule of p.rules.get(chain) ?? []) {
    let r = rule;
    let ok = true;
    let keyOfDnat = '';
    while (ok && r.length > 0) {
      let m = CONCAT.exec(r);
      if (m) {
        const key = m[1]!.split(' . ').map((t) => evalTerm(t, c)).join(' . ');
        const hit = inSet(p, m[3]!, key);
        ok = m[2] ? !hit : hit;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ip6? ([sd]addr) (!= )?([0-9a-f.:]+(?:\/\d+)?)(?: |$)/.exec(r))) {
        const ip = m[1] === 'saddr' ? c.src : c.dst;
        const hit = m[3]!.includes('/') ? cidrContains(m[3]!, ip) : ip === m[3];
        ok = m[2] ? !hit : hit;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^fib ([sd]addr) type local(?: |$)/.exec(r))) {
        ok = c.local.has(m[1] === 'saddr' ? c.src : c.dst);
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ct state (\S+)(?: |$)/.exec(r))) {
        ok = m[1] === 'new';
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^ct status dnat(?: |$)/.exec(r))) {
        ok = c.dnat !== null;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^tcp dport @(\S+)(?: |$)/.exec(r))) {
        ok = c.proto === 'tcp' && inSet(p, m[1]!, String(c.port));
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^meta mark set meta mark \| \S+(?: |$)/.exec(r))) {
        c.mark = true;
        r = r.slice(m[0].length);
        continue;
      }
      if ((m = /^update @\S+ \{ (.*?) numgen random mod (\d+) timeout \d+s \} goto (\S+)$/.exec(r))) {
        // A new affinity client: a random slot is remembered and then taken, so any of the N.
        const d = m[3]!.replace(/-aff$/, '');
        keyOfDnat = d.startsWith('np') ? `${c.proto} . ${c.port}` : `${c.dst} . ${c.proto} . ${c.port}`;
        c.dnat = slots(p, `${d}-eps-${c.proto}`, keyOfDnat, Number(m[2]));
        return true;
      }
      if ((m = /^dnat ip6? to (.*) \. numgen random mod (\d+) map @(\S+)$/.exec(r))) {
        const key = m[1]!.split(' . ').map((t) => evalTerm(t, c)).join(' . ');
        c.dnat = slots(p, m[3]!, key, Number(m[2]));
        return true;
      }
      if ((m = /^(jump|goto) (\S+)$/.exec(r))) {
        const ended = run(p, m[2]!, c, depth + 1);
        if (ended || m[1] === 'goto') return true;
        r = '';
        continue;
      }
      if (r === 'return') return false;
      if (r === 'accept' || r === 'drop' || r === 'reject') {
        c.verdict = r.toUpperCase();
        return true;
      }
      throw new Error(`nftables-flow: cannot read ${JSON.stringify(r)} (chain ${chain})`);
    }
  }
  return false;
}

/**
 * Where a new connection goes: nat (the `services` chain), then the filter
 * chains in iptables mode's order. Masquerade: the mark, or a hairpin pair.
 */
export function traceNft(text: string, localIPs: string[], t: NftPacket): { output: string; masq: boolean } {
  const p = parseTransaction(text);
  const c: Ctx = { src: t.sourceIP, dst: t.destIP, proto: (t.protocol ?? 'TCP').toLowerCase(), port: t.destPort, local: new Set(localIPs), mark: false, dnat: null, verdict: null };
  run(p, 'services', c);
  const outputs: string[] = [];
  if (c.dnat) outputs.push(...c.dnat);
  const dst = c.dnat ? c.dnat[0]!.replace(/^\[?([^\]]+?)\]?:\d+$/, '$1') : c.dst;
  const f: Ctx = { ...c, dst };
  for (const chain of ['service-endpoints', 'external-endpoints']) {
    f.verdict = null;
    run(p, chain, f);
    if (f.verdict) outputs.push(f.verdict);
  }
  f.verdict = null;
  if (f.proto === 'tcp' && inSet(p, 'hc-nodeports', String(f.port))) outputs.push('ACCEPT');
  run(p, 'firewall', f);
  if (f.verdict) outputs.push(f.verdict);
  const hosts = (c.dnat ?? []).map((e) => e.replace(/^\[?([^\]]+?)\]?:\d+$/, '$1'));
  const hairpin = hosts.includes(c.src) && inSet(p, 'hairpin', `${c.src} . ${c.src}`);
  return { output: outputs.join(', '), masq: c.mark || hairpin };
}
