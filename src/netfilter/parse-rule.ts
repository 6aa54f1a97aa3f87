// One rule's arguments ("-s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j DNAT …")
// → matches and target. Shared by both parsers: the listing parser rebuilds
// iptables-save arguments from its columns and extras, then comes here.
import { parseAddr, parseCidr } from './addr.js';
import type { Match, NatRange, PortRange, Target } from './ruleset.js';

/** A line's words; `quoted` holds the indexes of words that were quoted (never options, never "!"). */
export interface Tokens {
  words: string[];
  quoted: Set<number> | null;
}

/** Splits a line into words; "double" and 'single' quotes group, backslash escapes inside double quotes. */
export function tokenize(line: string): Tokens {
  const out: string[] = [];
  let quotedIdx: Set<number> | null = null;
  const n = line.length;
  let i = 0;
  while (i < n) {
    let c = line.charCodeAt(i);
    if (c === 32 || c === 9) {
      i++;
      continue;
    }
    let text = '';
    let quoted = false;
    while (i < n) {
      c = line.charCodeAt(i);
      if (c === 32 || c === 9) break;
      if (c === 34 /* " */) {
        quoted = true;
        const end = line.indexOf('"', i + 1);
        const bs = line.indexOf('\\', i + 1);
        if (end >= 0 && (bs < 0 || bs > end)) {
          // No escapes inside: one slice.
          text += line.slice(i + 1, end);
          i = end + 1;
          continue;
        }
        i++;
        while (i < n && line.charCodeAt(i) !== 34) {
          if (line.charCodeAt(i) === 92 /* \ */ && i + 1 < n) i++;
          text += line[i];
          i++;
        }
        if (i >= n) throw new Error('unterminated double quote');
        i++;
      } else if (c === 39 /* ' */) {
        quoted = true;
        const end = line.indexOf("'", i + 1);
        if (end < 0) throw new Error('unterminated single quote');
        text += line.slice(i + 1, end);
        i = end + 1;
      } else {
        // Fast path: copy a run of plain characters.
        let j = i + 1;
        while (j < n) {
          const d = line.charCodeAt(j);
          if (d === 32 || d === 9 || d === 34 || d === 39) break;
          j++;
        }
        text += line.slice(i, j);
        i = j;
      }
    }
    if (quoted) (quotedIdx ??= new Set()).add(out.length);
    out.push(text);
  }
  return { words: out, quoted: quotedIdx };
}

interface Opt {
  name: string;
  neg: boolean;
  args: string[];
}

interface Block {
  module: string;
  opts: Opt[];
}

function blockText(b: Block): string {
  return [`-m ${b.module}`, ...b.opts.map(optText)].join(' ');
}

const NONE: string[] = [];
Object.freeze(NONE);

export interface ParsedRule {
  matches: Match[];
  target: Target | null;
  unmodelled: string[];
}

const SHORT_OBJ: Record<string, string> = {
  '-p': 'protocol',
  '--protocol': 'protocol',
  '-s': 'source',
  '--source': 'source',
  '--src': 'source',
  '-d': 'destination',
  '--destination': 'destination',
  '--dst': 'destination',
  '-i': 'in',
  '--in-interface': 'in',
  '-o': 'out',
  '--out-interface': 'out',
  '-f': 'fragment',
  '--fragment': 'fragment',
  '-m': 'match',
  '--match': 'match',
  '-j': 'jump',
  '--jump': 'jump',
  '-g': 'goto',
  '--goto': 'goto',
  '-c': 'counters',
  '--set-counters': 'counters',
};

// A Map: words sliced out of a line are not internalized, and object lookups would internalize each.
const SHORT = new Map(Object.entries(SHORT_OBJ));

// Indexed by the letter of a one-letter option: "-p" → SHORT2['p'.charCodeAt(0)].
const SHORT2: (string | undefined)[] = [];
for (const [k, v] of SHORT) if (k.length === 2) SHORT2[k.charCodeAt(1)] = v;

/** Options that take no argument. */
const FLAGS = new Set([
  'syn', 'set', 'rcheck', 'update', 'remove', 'reap', 'rsource', 'rdest', 'rttl', 'random', 'random-fully',
  'persistent', 'save-mark', 'restore-mark', 'notrack', 'log-uid', 'log-tcp-sequence', 'log-tcp-options',
  'log-ip-options', 'log-macdecode', 'return-nomatch', 'ipv4', 'ipv6', 'checksum-fill', 'clamp-mss-to-pmtu',
  'physdev-is-in', 'physdev-is-out', 'physdev-is-bridged',
]);
/** Options that take two arguments. */
const TWO_ARGS = new Set(['tcp-flags', 'match-set', 'to']);

const PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'ipv6-icmp', 'esp', 'ah', 'gre', 'all']);
const PROTO_NUM_MAP = new Map<string, string>([['6', 'tcp'], ['17', 'udp'], ['132', 'sctp'], ['1', 'icmp'], ['58', 'icmpv6'], ['0', 'all']]);

function hasPortProto(p: string | undefined): boolean {
  return p === 'tcp' || p === 'udp' || p === 'sctp' || p === 'dccp' || p === 'udplite';
}

export function normalizeProto(p: string): string {
  if (p === 'tcp' || p === 'udp') return p === 'tcp' ? 'tcp' : 'udp';
  const l = p.toLowerCase();
  const num = PROTO_NUM_MAP.get(l);
  if (num) return num;
  if (l === 'ipv6-icmp' || l === 'icmp6') return 'icmpv6';
  return l;
}

function isOptionWord(w: string, quoted: boolean): boolean {
  if (quoted || w.length < 2 || w.charCodeAt(0) !== 45) return false;
  const c = w.charCodeAt(1);
  return c < 48 || c > 57;
}

export function parseNumber(s: string): number {
  const v = /^0x[0-9a-f]+$/i.test(s) ? Number.parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(v) || v > 0xffffffff) throw new Error(`not a number: "${s}"`);
  return v >>> 0;
}

/** "value[/mask]" as iptables prints marks. */
export function parseMarkMask(s: string, defaultMask = 0xffffffff): [number, number] {
  const slash = s.indexOf('/');
  if (slash < 0) return [parseNumber(s), defaultMask];
  return [parseNumber(s.slice(0, slash)), parseNumber(s.slice(slash + 1))];
}

const SERVICES: Record<string, number> = {
  http: 80, https: 443, domain: 53, ssh: 22, smtp: 25, ntp: 123, 'http-alt': 8080, webcache: 8080, ftp: 21,
  telnet: 23, pop3: 110, imap: 143, snmp: 161, ldap: 389, 'sun-rpc': 111, sunrpc: 111, bootps: 67, bootpc: 68,
  tftp: 69, microsoft_ds: 445, 'microsoft-ds': 445, mysql: 3306, postgresql: 5432, 'x11': 6000, 'kerberos': 88,
};

function digitsOnly(s: string): boolean {
  if (s.length === 0 || s.length > 10) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

export function parsePort(s: string): number {
  if (digitsOnly(s)) {
    const v = Number(s);
    if (v > 65535) throw new Error(`port out of range: ${s}`);
    return v;
  }
  const v = SERVICES[s.toLowerCase()];
  if (v === undefined) throw new Error(`unknown port or service name "${s}"`);
  return v;
}

/** "80", "1000:2000", ":1024", "1024:" and multiport lists "80,443,8000:8080". */
export function parsePortList(s: string): PortRange[] {
  if (digitsOnly(s)) {
    const p = parsePort(s);
    return [[p, p]];
  }
  return s.split(',').map((part): PortRange => {
    const c = part.indexOf(':');
    if (c < 0) {
      const p = parsePort(part);
      return [p, p];
    }
    const a = part.slice(0, c);
    const b = part.slice(c + 1);
    return [a === '' ? 0 : parsePort(a), b === '' ? 65535 : parsePort(b)];
  });
}

/** DNAT/SNAT --to-destination / --to-source: "ip[-ip][:port[-port]]", "[ip6]:port", ":port". */
export function parseNatRange(s: string): NatRange {
  // Fast path: "a.b.c.d:port".
  const colon = s.indexOf(':');
  if (colon > 0 && s.indexOf(':', colon + 1) < 0 && s.indexOf('-') < 0 && s[0] !== '[') {
    const from = parseAddr(s.slice(0, colon));
    const port = s.slice(colon + 1);
    if (from && digitsOnly(port)) {
      const p = parsePort(port);
      return { text: s, from, to: from, portFrom: p, portTo: p };
    }
  }
  let addrPart = s;
  let portPart = '';
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) throw new Error(`bad address "${s}"`);
    addrPart = s.slice(1, end);
    portPart = s.slice(end + 1).replace(/^:/, '');
  } else if ((s.match(/:/g) ?? []).length === 1) {
    const c = s.indexOf(':');
    addrPart = s.slice(0, c);
    portPart = s.slice(c + 1);
  }
  const r: NatRange = { text: s };
  if (addrPart) {
    const [a, b] = addrPart.split('-');
    const from = parseAddr(a!);
    const to = b !== undefined ? parseAddr(b) : from;
    if (!from || !to) throw new Error(`bad address "${addrPart}"`);
    r.from = from;
    r.to = to;
  }
  if (portPart) {
    const [a, b] = portPart.split('-');
    r.portFrom = parsePort(a!);
    r.portTo = b !== undefined ? parsePort(b) : r.portFrom;
  }
  return r;
}

function parsePortRangeDash(s: string): PortRange {
  const [a, b] = s.split('-');
  const from = parsePort(a!);
  return [from, b !== undefined ? parsePort(b) : from];
}

function optText(o: Opt): string {
  return `${o.neg ? '! ' : ''}--${o.name}${o.args.length ? ' ' + o.args.map(quoteIfNeeded).join(' ') : ''}`;
}

export function quoteIfNeeded(s: string): string {
  return s === '' || /[\s"'\\]/.test(s) ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s;
}

/**
 * Parses the arguments of one rule (everything after "-A CHAIN"). Throws Error with a
 * plain message on malformed input; the caller adds the line number.
 */
export function parseRuleArgs(toks: Tokens, start = 0): ParsedRule & { counters?: [bigint, bigint] } {
  const matches: Match[] = [];
  // Shared while empty: most rules have nothing un-modelled.
  let unmodelled: string[] = NONE;
  let target: Target | null = null;
  let counters: [bigint, bigint] | undefined;
  let proto: string | undefined;
  const blocks: Block[] = [];
  let current: Block | null = null;
  let targetName: string | null = null;
  let targetOpts: Opt[] = [];
  let isGoto = false;
  let neg = false;

  const words = toks.words;
  const qs = toks.quoted;
  const isQ = (i: number): boolean => qs !== null && qs.has(i);
  const take = (i: number, what: string): string => {
    const t = words[i];
    if (t === undefined) throw new Error(`option ${what} needs a value`);
    return t;
  };

  let i = start;
  while (i < words.length) {
    const w = words[i]!;
    if (w === '!' && !isQ(i)) {
      neg = !neg;
      i++;
      continue;
    }
    if (!isOptionWord(w, isQ(i))) throw new Error(`unexpected word "${w}"`);
    const short = w.length === 2 ? SHORT2[w.charCodeAt(1)] : w.length <= 16 && w.charCodeAt(2) >= 100 && w.charCodeAt(2) <= 115 ? SHORT.get(w) : undefined;
    if (short) {
      // Basic options.
      let v = take(i + 1, w);
      let j = i + 2;
      if (v === '!' && short !== 'fragment' && short !== 'counters') {
        neg = !neg;
        v = take(i + 2, w);
        j = i + 3;
      }
      switch (short) {
        case 'protocol': {
          proto = normalizeProto(v);
          matches.push({ kind: 'proto', neg, proto });
          break;
        }
        case 'source':
        case 'destination': {
          const cidr = parseCidr(v);
          if (!cidr) throw new Error(`bad address "${v}" for ${w}`);
          matches.push({ kind: 'addr', dir: short === 'source' ? 'src' : 'dst', neg, cidr });
          break;
        }
        case 'in':
        case 'out': {
          const wildcard = v.endsWith('+');
          matches.push({ kind: 'iface', dir: short, neg, name: wildcard ? v.slice(0, -1) : v, wildcard });
          break;
        }
        case 'fragment':
          matches.push({ kind: 'fragment', neg });
          j = i + 1;
          break;
        case 'match':
          current = { module: v.toLowerCase(), opts: [] };
          blocks.push(current);
          if (neg) throw new Error('"!" before -m');
          break;
        case 'jump':
        case 'goto':
          if (targetName) throw new Error('more than one -j/-g');
          targetName = v;
          isGoto = short === 'goto';
          current = null;
          break;
        case 'counters': {
          const b = take(i + 2, w);
          counters = [BigInt(v), BigInt(b)];
          j = i + 3;
          break;
        }
      }
      neg = false;
      i = j;
      continue;
    }
    // A long option of a module or of the target.
    const name = w.charCodeAt(1) === 45 ? w.slice(2) : w.slice(1);
    const args: string[] = [];
    let j = i + 1;
    let optNeg = neg;
    neg = false;
    if (!FLAGS.has(name)) {
      const want = TWO_ARGS.has(name) ? 2 : 1;
      if (words[j] === '!' && !isQ(j) && name !== 'set') {
        optNeg = !optNeg;
        j++;
      }
      for (let k = 0; k < want; k++) {
        const t = words[j];
        if (t === undefined || (isOptionWord(t, isQ(j)) && !(name === 'log-prefix' || name === 'comment'))) {
          if (k === 0) throw new Error(`option --${name} needs a value`);
          break;
        }
        args.push(t);
        j++;
      }
    }
    const opt: Opt = { name, neg: optNeg, args };
    if (targetName) targetOpts.push(opt);
    else {
      if (!current) {
        // "-p tcp --dport 80" without "-m tcp": iptables loads the protocol's match implicitly.
        if (proto && ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'udplite', 'dccp'].includes(proto)) {
          current = { module: proto, opts: [] };
          blocks.push(current);
        } else throw new Error(`option --${name} outside any match module`);
      }
      current.opts.push(opt);
    }
    i = j;
  }
  if (neg) throw new Error('"!" at the end of the rule');

  const um: string[] = [];
  for (const b of blocks) interpretBlock(b, matches, um);
  if (targetName) target = interpretTarget(targetName, isGoto, targetOpts, um);
  if (um.length) unmodelled = um;
  // As iptables does: NAT to a port needs a protocol that has ports.
  if (target && (target.kind === 'DNAT' || target.kind === 'SNAT') && target.to.some((r) => r.portFrom !== undefined) && !hasPortProto(proto))
    throw new Error(`${target.kind} to a port needs -p tcp, udp, sctp or dccp`);
  if (target && (target.kind === 'MASQUERADE' || target.kind === 'REDIRECT') && target.ports && !hasPortProto(proto))
    throw new Error(`${target.kind} --to-ports needs -p tcp, udp, sctp or dccp`);
  return { matches, target, unmodelled, counters };
}

function interpretBlock(b: Block, matches: Match[], unmodelled: string[]): void {
  const unknown = (o?: Opt): void => {
    const text = o ? `-m ${b.module} ${optText(o)}` : blockText(b);
    matches.push({ kind: 'unknown', text });
    unmodelled.push(text);
  };
  const m = b.module;
  switch (m) {
    case 'tcp':
    case 'udp':
    case 'sctp':
    case 'udplite':
    case 'dccp':
      for (const o of b.opts) {
        if (o.name === 'dport' || o.name === 'destination-port' || o.name === 'sport' || o.name === 'source-port') {
          const dir = o.name.startsWith('d') ? 'dport' : 'sport';
          matches.push({ kind: 'port', dir, neg: o.neg, ranges: parsePortList(o.args[0]!) });
        } else if (o.name === 'syn') {
          matches.push({ kind: 'tcpflags', neg: o.neg, mask: ['SYN', 'RST', 'ACK', 'FIN'], comp: ['SYN'] });
        } else if (o.name === 'tcp-flags') {
          const split = (s: string): string[] => (s.toUpperCase() === 'NONE' ? [] : s.toUpperCase().split(','));
          const all = ['SYN', 'ACK', 'FIN', 'RST', 'URG', 'PSH'];
          const mask = split(o.args[0]!);
          const comp = split(o.args[1] ?? '');
          matches.push({ kind: 'tcpflags', neg: o.neg, mask: mask.includes('ALL') ? all : mask, comp: comp.includes('ALL') ? all : comp });
        } else unknown(o);
      }
      return;
    case 'multiport':
      for (const o of b.opts) {
        const dir = /^(dports|destination-ports)$/.test(o.name) ? 'dport' : /^(sports|source-ports)$/.test(o.name) ? 'sport' : o.name === 'ports' ? 'any' : null;
        if (!dir) unknown(o);
        else matches.push({ kind: 'port', dir, neg: o.neg, ranges: parsePortList(o.args[0]!) });
      }
      return;
    case 'iprange':
      for (const o of b.opts) {
        if (o.name !== 'src-range' && o.name !== 'dst-range') {
          unknown(o);
          continue;
        }
        const [a, z] = o.args[0]!.split('-');
        const from = parseAddr(a!);
        const to = parseAddr(z ?? a!);
        if (!from || !to) throw new Error(`bad range "${o.args[0]}"`);
        matches.push({ kind: 'iprange', dir: o.name === 'src-range' ? 'src' : 'dst', neg: o.neg, from, to });
      }
      return;
    case 'addrtype': {
      let limit: 'in' | 'out' | undefined;
      for (const o of b.opts) if (o.name === 'limit-iface-in') limit = 'in';
      for (const o of b.opts) if (o.name === 'limit-iface-out') limit = 'out';
      for (const o of b.opts) {
        if (o.name === 'src-type' || o.name === 'dst-type')
          matches.push({ kind: 'addrtype', dir: o.name === 'src-type' ? 'src' : 'dst', neg: o.neg, types: o.args[0]!.toUpperCase().split(','), limitIface: limit });
        else if (o.name !== 'limit-iface-in' && o.name !== 'limit-iface-out') unknown(o);
      }
      return;
    }
    case 'conntrack':
    case 'state':
      for (const o of b.opts) {
        if (o.name === 'ctstate' || o.name === 'state') matches.push({ kind: 'ctstate', neg: o.neg, states: o.args[0]!.toUpperCase().split(',') });
        else if (o.name === 'ctstatus') matches.push({ kind: 'ctstatus', neg: o.neg, statuses: o.args[0]!.toUpperCase().split(',') });
        else if (o.name === 'ctdir') matches.push({ kind: 'ctdir', dir: o.args[0]!.toUpperCase() === 'REPLY' ? 'REPLY' : 'ORIGINAL' });
        else if (o.name === 'ctorigsrc' || o.name === 'ctorigdst') {
          const cidr = parseCidr(o.args[0]!);
          if (!cidr) throw new Error(`bad address "${o.args[0]}"`);
          matches.push({ kind: 'ctorig', field: o.name === 'ctorigsrc' ? 'src' : 'dst', neg: o.neg, cidr });
        } else if (o.name === 'ctorigsrcport' || o.name === 'ctorigdstport')
          matches.push({ kind: 'ctorigport', field: o.name === 'ctorigsrcport' ? 'src' : 'dst', neg: o.neg, ranges: parsePortList(o.args[0]!) });
        else unknown(o);
      }
      return;
    case 'mark':
    case 'connmark':
      for (const o of b.opts) {
        if (o.name !== 'mark') {
          unknown(o);
          continue;
        }
        const [value, mask] = parseMarkMask(o.args[0]!);
        matches.push({ kind: m, neg: o.neg, value, mask });
      }
      return;
    case 'comment': {
      const c = b.opts.find((o) => o.name === 'comment');
      matches.push({ kind: 'comment', text: c?.args[0] ?? '' });
      return;
    }
    case 'nfacct':
      matches.push({ kind: 'always', text: blockText(b) });
      return;
    case 'statistic': {
      const get = (n: string): Opt | undefined => b.opts.find((o) => o.name === n);
      const mode = get('mode')?.args[0];
      const negAll = b.opts.some((o) => o.neg);
      if (mode === 'random') {
        const p = Number(get('probability')?.args[0]);
        if (!Number.isFinite(p) || p < 0 || p > 1) throw new Error(`bad statistic probability "${get('probability')?.args[0]}"`);
        matches.push({ kind: 'statistic', neg: negAll, mode: 'random', probability: p });
      } else if (mode === 'nth') {
        const every = Number(get('every')?.args[0]);
        const packet = Number(get('packet')?.args[0] ?? 0);
        if (!Number.isInteger(every) || every < 1) throw new Error('statistic nth needs --every N');
        matches.push({ kind: 'statistic', neg: negAll, mode: 'nth', every, packet });
      } else unknown();
      return;
    }
    case 'recent': {
      let op: 'set' | 'rcheck' | 'update' | 'remove' | undefined;
      let name = 'DEFAULT';
      let seconds: number | undefined;
      let hitcount: number | undefined;
      let reap = false;
      let side: 'source' | 'dest' = 'source';
      let mask: ReturnType<typeof parseAddr> | undefined;
      let negR = false;
      for (const o of b.opts) {
        if (o.neg) negR = true;
        switch (o.name) {
          case 'set':
          case 'rcheck':
          case 'update':
          case 'remove':
            op = o.name;
            break;
          case 'name':
            name = o.args[0]!;
            break;
          case 'seconds':
            seconds = Number(o.args[0]);
            break;
          case 'hitcount':
            hitcount = Number(o.args[0]);
            break;
          case 'reap':
            reap = true;
            break;
          case 'rsource':
            side = 'source';
            break;
          case 'rdest':
            side = 'dest';
            break;
          case 'mask':
            mask = parseAddr(o.args[0]!) ?? undefined;
            break;
          default:
            unknown(o);
        }
      }
      if (!op) throw new Error('recent needs one of --set, --rcheck, --update, --remove');
      matches.push({ kind: 'recent', neg: negR, op, name, seconds, hitcount, reap, side, mask: mask ?? undefined });
      return;
    }
    case 'set':
      for (const o of b.opts) {
        if (o.name !== 'match-set') {
          unknown(o);
          continue;
        }
        const flags = (o.args[1] ?? 'src').split(',').map((f) => (f === 'dst' ? 'dst' : 'src')) as ('src' | 'dst')[];
        matches.push({ kind: 'set', neg: o.neg, name: o.args[0]!, flags });
      }
      return;
    case 'icmp':
    case 'icmp6':
    case 'icmpv6':
      for (const o of b.opts) {
        if (o.name === 'icmp-type' || o.name === 'icmpv6-type') matches.push({ kind: 'icmptype', neg: o.neg, type: o.args[0]! });
        else unknown(o);
      }
      if (b.opts.length === 0) return;
      return;
    default:
      unknown();
  }
}

const TERMINAL_TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN']);

function interpretTarget(name: string, isGoto: boolean, opts: Opt[], unmodelled: string[]): Target {
  if (isGoto) return { kind: 'goto', chain: name };
  if (opts.length === 0) {
    if (name === 'ACCEPT' || name === 'DROP' || name === 'RETURN') return { kind: name };
    if (!KNOWN_EXTENSION_TARGETS.has(name) && !KNOWN_TARGETS_WITH_OPTIONS.has(name)) return { kind: 'jump', chain: name };
  }
  const get = (n: string): Opt | undefined => opts.find((o) => o.name === n);
  const text = `-j ${name}${opts.length ? ' ' + opts.map(optText).join(' ') : ''}`;
  const unknownOpts = (known: string[]): void => {
    for (const o of opts) if (!known.includes(o.name)) unmodelled.push(optText(o));
  };
  if (TERMINAL_TARGETS.has(name)) {
    unknownOpts([]);
    return { kind: name as 'ACCEPT' | 'DROP' | 'RETURN' };
  }
  switch (name) {
    case 'REJECT':
      unknownOpts(['reject-with']);
      return { kind: 'REJECT', with: get('reject-with')?.args[0] ?? 'icmp-port-unreachable' };
    case 'DNAT':
    case 'SNAT': {
      const key = name === 'DNAT' ? 'to-destination' : 'to-source';
      const to = opts.filter((o) => o.name === key || o.name === 'to').map((o) => parseNatRange(o.args[0]!));
      if (to.length === 0) throw new Error(`${name} needs --${key}`);
      unknownOpts([key, 'to', 'random', 'persistent', 'random-fully']);
      return { kind: name, to };
    }
    case 'MASQUERADE': {
      const p = get('to-ports')?.args[0];
      unknownOpts(['to-ports', 'random', 'random-fully']);
      return { kind: 'MASQUERADE', ports: p ? parsePortRangeDash(p) : undefined, random: !!get('random'), randomFully: !!get('random-fully') };
    }
    case 'REDIRECT': {
      const p = get('to-ports')?.args[0];
      unknownOpts(['to-ports', 'random']);
      return { kind: 'REDIRECT', ports: p ? parsePortRangeDash(p) : undefined };
    }
    case 'MARK': {
      const o = opts[0];
      if (!o || opts.length !== 1) throw new Error('MARK needs exactly one of --set-xmark/--set-mark/--or-mark/--and-mark/--xor-mark');
      const v = o.args[0]!;
      switch (o.name) {
        case 'set-xmark': {
          const [value, mask] = parseMarkMask(v);
          return { kind: 'MARK', value, mask };
        }
        case 'set-mark': {
          // --set-mark V/M: mark = (mark & ~M) | V  ==  (mark & ~(M|V)) ^ V
          const [value, mask] = parseMarkMask(v);
          return { kind: 'MARK', value, mask: (mask | value) >>> 0 };
        }
        case 'or-mark': {
          const x = parseNumber(v);
          return { kind: 'MARK', value: x, mask: x };
        }
        case 'and-mark':
          return { kind: 'MARK', value: 0, mask: ~parseNumber(v) >>> 0 };
        case 'xor-mark':
          return { kind: 'MARK', value: parseNumber(v), mask: 0 };
        default:
          throw new Error(`MARK: unknown option --${o.name}`);
      }
    }
    case 'CONNMARK': {
      const nf = get('nfmask')?.args[0] ?? get('mask')?.args[0];
      const ct = get('ctmask')?.args[0] ?? get('mask')?.args[0];
      if (get('save-mark') || get('restore-mark'))
        return { kind: 'CONNMARK', op: get('save-mark') ? 'save' : 'restore', nfmask: nf ? parseNumber(nf) : 0xffffffff, ctmask: ct ? parseNumber(ct) : 0xffffffff };
      const o = opts[0];
      if (!o) throw new Error('CONNMARK needs an option');
      const v = o.args[0] ?? '';
      if (o.name === 'set-xmark') {
        const [value, mask] = parseMarkMask(v);
        return { kind: 'CONNMARK', op: 'xset', value, mask };
      }
      if (o.name === 'set-mark') {
        const [value, mask] = parseMarkMask(v);
        return { kind: 'CONNMARK', op: 'xset', value, mask: (mask | value) >>> 0 };
      }
      if (o.name === 'or-mark') return { kind: 'CONNMARK', op: 'xset', value: parseNumber(v), mask: parseNumber(v) };
      if (o.name === 'xor-mark') return { kind: 'CONNMARK', op: 'xset', value: parseNumber(v), mask: 0 };
      if (o.name === 'and-mark') return { kind: 'CONNMARK', op: 'xset', value: 0, mask: ~parseNumber(v) >>> 0 };
      unmodelled.push(text);
      return { kind: 'unknown', name, text };
    }
    case 'LOG':
    case 'NFLOG':
    case 'ULOG':
    case 'TRACE':
      return { kind: 'LOG', name, prefix: get('log-prefix')?.args[0] ?? get('nflog-prefix')?.args[0] };
    case 'NOTRACK':
      return { kind: 'NOTRACK' };
    case 'CT':
      if (get('notrack')) return { kind: 'NOTRACK' };
      unmodelled.push(text);
      return { kind: 'unknown', name, text };
    default:
      if (opts.length > 0 || /^[A-Z][A-Z0-9]*$/.test(name) && KNOWN_EXTENSION_TARGETS.has(name)) {
        unmodelled.push(text);
        return { kind: 'unknown', name, text };
      }
      return { kind: 'jump', chain: name };
  }
}

const KNOWN_TARGETS_WITH_OPTIONS = new Set(['REJECT', 'DNAT', 'SNAT', 'MASQUERADE', 'REDIRECT', 'MARK', 'CONNMARK', 'LOG', 'NFLOG', 'ULOG', 'TRACE', 'NOTRACK', 'CT']);

/** Targets that are kernel extensions, not chains, which the simulator does not model. */
const KNOWN_EXTENSION_TARGETS = new Set([
  'QUEUE', 'NFQUEUE', 'TPROXY', 'TCPMSS', 'TOS', 'DSCP', 'TTL', 'HL', 'CLASSIFY', 'CHECKSUM', 'SET', 'AUDIT', 'SECMARK',
  'CONNSECMARK', 'NETMAP', 'CLUSTERIP', 'IDLETIMER', 'LED', 'SYNPROXY', 'TEE', 'HMARK', 'RATEEST', 'CONNTRACK',
]);
