// `iptables [-t T] -L [-n] [-v] [--line-numbers]` listings → Ruleset.
//
// Each row's columns (num, pkts, bytes, target, prot, opt, in, out, source,
// destination) and trailing extras ("/* comment */ tcp dpt:80 statistic mode
// random probability 0.33333333349 …") are turned back into iptables-save
// arguments, which then go through the same rule parser as a dump. Extras the
// parser does not recognise are kept verbatim and make the rule un-modelled.
// The table comes from --table, else from a pasted command line ("iptables -nL
// -t nat"), else from what the chains contain.
import { parseCidr } from './addr.js';
import { parseRuleArgs, quoteIfNeeded, tokenize } from './parse-rule.js';
import {
  BUILTIN_CHAINS,
  emptyTable,
  isTableName,
  RulesetParseError,
  type Chain,
  type Rule,
  type Ruleset,
  type Table,
  type TableName,
} from './ruleset.js';

export interface ListingOptions {
  source?: string;
  /** The table the listing shows, when it cannot tell (iptables -L defaults to filter). */
  table?: TableName;
  family?: 4 | 6;
}

const PROTO_RE = /^!?(all|tcp|udp|udplite|icmp|icmpv6|ipv6-icmp|sctp|esp|ah|gre|dccp|\d+)$/;
const OPT_RE = /^(--|-f|!f|-!|!-)$/;
const COUNT_RE = /^\d+[KMGTP]?$/;

export function looksLikeListing(text: string): boolean {
  return /^\s*Chain\s+\S+\s+\((policy|\d+\s+reference)/m.test(text);
}

interface PendingRow {
  line: number;
  text: string;
  chain: string;
  tableHint: TableName | null;
  spec: string;
  counters?: { packets: bigint; bytes: bigint };
  extraUnknown: string[];
  hostMatches: { dir: 'src' | 'dst'; neg: boolean; name: string }[];
}

function parseCount(s: string): bigint {
  const m = /^(\d+)([KMGTP]?)$/.exec(s);
  if (!m) return 0n;
  const mult = { '': 1n, K: 1000n, M: 1000n ** 2n, G: 1000n ** 3n, T: 1000n ** 4n, P: 1000n ** 5n }[m[2] as '' | 'K'];
  return BigInt(m[1]!) * mult;
}

/** The table a pasted command names (`iptables -t nat -nL`, `iptables -nvL --table mangle`), and the chain after -L. */
function commandHints(line: string): { table: TableName | null; chain: string | null } | null {
  const m = /\b(?:ip6?tables)(?:-legacy|-nft)?\s+(.*)$/.exec(line);
  if (!m) return null;
  const words = m[1]!.split('|')[0]!.trim().split(/\s+/);
  let table: TableName | null = null;
  let chain: string | null = null;
  let listing = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-t' || w === '--table') {
      const t = words[i + 1];
      if (t && isTableName(t)) table = t;
      i++;
    } else if (/^-t\w+$/.test(w) && isTableName(w.slice(2))) table = w.slice(2) as TableName;
    else if (/^-[a-zA-Z]*L[a-zA-Z]*$/.test(w) || w === '--list') {
      listing = true;
      const t = /t$/.test(w) ? words[i + 1] : undefined;
      if (t && isTableName(t)) {
        table = t;
        i++;
      } else {
        const next = words[i + 1];
        if (next && !next.startsWith('-')) {
          chain = next;
          i++;
        }
      }
    }
  }
  if (!listing) return null;
  return { table: table ?? 'filter', chain };
}

/** Turns a row's extras into iptables-save arguments. */
function extrasToArgs(extras: string, target: string, protoCol: string): { match: string[]; target: string[]; unknown: string[]; goto: boolean } {
  const match: string[] = [];
  const tgt: string[] = [];
  const unknown: string[] = [];
  let goto = false;
  let s = extras;
  const neg = (x: string | undefined): string => (x && x.includes('!') ? '! ' : '');
  const rules: [RegExp, (m: RegExpExecArray) => void][] = [
    [/\/\*\s?(.*?)\s?\*\//y, (m) => match.push(`-m comment --comment ${quoteIfNeeded(m[1]!)}`)],
    [
      /(tcp|udp|sctp|udplite|dccp)((?:\s+(?:spts?|dpts?):!?\S+|\s+flags:!?\S+|\s+option=!?\d+)*)(?=\s|$)/y,
      (m) => {
        const parts: string[] = [`-m ${m[1]}`];
        for (const p of (m[2] ?? '').trim().split(/\s+/).filter(Boolean)) {
          const pm = /^(spts?|dpts?|flags|option=?):?(!?)(.*)$/.exec(p)!;
          const n = pm[2] ? '! ' : '';
          if (pm[1]!.startsWith('spt')) parts.push(`${n}--sport ${pm[3]}`);
          else if (pm[1]!.startsWith('dpt')) parts.push(`${n}--dport ${pm[3]}`);
          else if (pm[1] === 'flags') {
            const [mask, comp] = pm[3]!.split('/');
            parts.push(`${n}--tcp-flags ${flagNames(mask!)} ${flagNames(comp ?? '0')}`);
          } else unknown.push(p);
        }
        match.push(parts.join(' '));
      },
    ],
    [/multiport\s+(dports|sports|ports)\s+(!\s*)?(\S+)/y, (m) => match.push(`-m multiport ${neg(m[2])}--${m[1]} ${m[3]}`)],
    [/(!\s+)?statistic\s+mode\s+random\s+(!\s+)?probability\s+([\d.]+)/y, (m) => match.push(`-m statistic --mode random ${neg((m[1] ?? '') + (m[2] ?? ''))}--probability ${m[3]}`)],
    [/statistic\s+mode\s+nth\s+(!\s+)?every\s+(\d+)(?:\s+packet\s+(\d+))?/y, (m) => match.push(`-m statistic --mode nth ${neg(m[1])}--every ${m[2]} --packet ${m[3] ?? '0'}`)],
    [/(!\s+)?(ctstate|state|ctstatus)\s+(!\s*)?(\S+)/y, (m) => match.push(`-m ${m[2] === 'state' ? 'state' : 'conntrack'} ${neg((m[1] ?? '') + (m[3] ?? ''))}--${m[2]} ${m[4]}`)],
    [/ctdir\s+(\S+)/y, (m) => match.push(`-m conntrack --ctdir ${m[1]}`)],
    [/(!\s+)?ctorig(src|dst)(port)?\s+(!\s*)?(\S+)/y, (m) => match.push(`-m conntrack ${neg((m[1] ?? '') + (m[4] ?? ''))}--ctorig${m[2]}${m[3] ?? ''} ${m[5]}`)],
    [/(mark|connmark)\s+match\s+(!\s*)?(\S+)/y, (m) => match.push(`-m ${m[1]} ${neg(m[2])}--mark ${m[3]}`)],
    [
      /ADDRTYPE\s+match((?:\s+(?:src|dst)-type\s+!?\s?[A-Z,]+)+)(\s+limit-(?:in|out))?/y,
      (m) => {
        const parts = ['-m addrtype'];
        for (const tm of (m[1] ?? '').matchAll(/(src|dst)-type\s+(!?)\s?([A-Z,]+)/g)) parts.push(`${tm[2] ? '! ' : ''}--${tm[1]}-type ${tm[3]}`);
        if (m[2]) parts.push(`--limit-iface-${m[2].trim().slice(6)}`);
        match.push(parts.join(' '));
      },
    ],
    [
      /(!\s+)?recent:\s+(SET|CHECK|UPDATE|REMOVE)((?:\s+(?:seconds:\s+\d+|hit_count:\s+\d+|reap|TTL-Match|name:\s+\S+|side:\s+\S+|mask:\s+\S+))*)/y,
      (m) => {
        const op = { SET: 'set', CHECK: 'rcheck', UPDATE: 'update', REMOVE: 'remove' }[m[2] as 'SET'];
        const parts = [`-m recent ${neg(m[1])}--${op}`];
        const rest = m[3] ?? '';
        const sec = /seconds:\s+(\d+)/.exec(rest);
        if (sec) parts.push(`--seconds ${sec[1]}`);
        const hc = /hit_count:\s+(\d+)/.exec(rest);
        if (hc) parts.push(`--hitcount ${hc[1]}`);
        if (/\breap\b/.test(rest)) parts.push('--reap');
        const nm = /name:\s+(\S+)/.exec(rest);
        parts.push(`--name ${nm ? nm[1] : 'DEFAULT'}`);
        const side = /side:\s+(\S+)/.exec(rest);
        parts.push(side && side[1] === 'dest' ? '--rdest' : '--rsource');
        const mask = /mask:\s+(\S+)/.exec(rest);
        if (mask && mask[1] !== '255.255.255.255' && mask[1] !== 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff') parts.push(`--mask ${mask[1]}`);
        match.push(parts.join(' '));
      },
    ],
    [/(!\s+)?match-set\s+(\S+)\s+(\S+)/y, (m) => match.push(`-m set ${neg(m[1])}--match-set ${m[2]} ${m[3]}`)],
    [/(!\s+)?(source|destination)\s+IP\s+range\s+(\S+)/y, (m) => match.push(`-m iprange ${neg(m[1])}--${m[2] === 'source' ? 'src' : 'dst'}-range ${m[3]}`)],
    [/nfacct-name\s+(\S+)/y, (m) => match.push(`-m nfacct --nfacct-name ${m[1]}`)],
    [/icmptype\s+(!\s*)?(\d+)(?:\s+code\s+(\d+))?/y, (m) => match.push(`-m icmp ${neg(m[1])}--icmp-type ${m[2]}${m[3] ? '/' + m[3] : ''}`)],
    [/icmp\s+(!\s*)?([a-z-]+)/y, (m) => match.push(`-m icmp ${neg(m[1])}--icmp-type ${m[2]}`)],
    [/\[goto\]/y, () => (goto = true)],
    // Target extras.
    [/MARK\s+(or|xor|and|set|xset)\s+(\S+)/y, (m) => tgt.push(m[1] === 'xset' ? `--set-xmark ${m[2]}` : `--${m[1]}-mark ${m[2]}`)],
    [/CONNMARK\s+(save|restore)(?:\s+nfmask\s+(\S+))?(?:\s+ctmask\s+~?(\S+))?/y, (m) => tgt.push(`--${m[1]}-mark${m[2] ? ` --nfmask ${m[2]}` : ''}${m[3] ? ` --ctmask ${m[3]}` : ''}`)],
    [/CONNMARK\s+(or|xor|and|set|xset)\s+(\S+)/y, (m) => tgt.push(m[1] === 'xset' ? `--set-xmark ${m[2]}` : `--${m[1]}-mark ${m[2]}`)],
    [/to:(\S+)/y, (m) => tgt.push(`${target === 'SNAT' ? '--to-source' : '--to-destination'} ${m[1]}`)],
    [/masq\s+ports:\s+(\S+)/y, (m) => tgt.push(`--to-ports ${m[1]}`)],
    [/redir\s+ports\s+(\S+)/y, (m) => tgt.push(`--to-ports ${m[1]}`)],
    [/random-fully/y, () => tgt.push('--random-fully')],
    [/random/y, () => tgt.push('--random')],
    [/persistent/y, () => tgt.push('--persistent')],
    [/reject-with\s+(\S+)/y, (m) => tgt.push(`--reject-with ${m[1]}`)],
    [/LOG\s+flags\s+\d+\s+level\s+\d+(?:\s+prefix\s+"(.*?)")?/y, (m) => (m[1] ? tgt.push(`--log-prefix ${quoteIfNeeded(m[1])}`) : undefined)],
  ];
  let pos = 0;
  outer: while (pos < s.length) {
    while (pos < s.length && (s[pos] === ' ' || s[pos] === '\t')) pos++;
    if (pos >= s.length) break;
    for (const [re, fn] of rules) {
      re.lastIndex = pos;
      const m = re.exec(s);
      if (m && m[0].length > 0) {
        fn(m);
        pos = re.lastIndex;
        continue outer;
      }
    }
    const end = s.indexOf(' ', pos);
    unknown.push(s.slice(pos, end < 0 ? s.length : end));
    pos = end < 0 ? s.length : end;
  }
  void protoCol;
  s = '';
  return { match, target: tgt, unknown, goto };
}

const FLAG_BITS: [number, string][] = [
  [0x01, 'FIN'],
  [0x02, 'SYN'],
  [0x04, 'RST'],
  [0x08, 'PSH'],
  [0x10, 'ACK'],
  [0x20, 'URG'],
];

function flagNames(hexs: string): string {
  const v = Number.parseInt(hexs, 16);
  const names = FLAG_BITS.filter(([b]) => v & b).map(([, n]) => n);
  return names.length ? names.join(',') : 'NONE';
}

function addrArg(flag: '-s' | '-d', col: string, hosts: PendingRow['hostMatches']): string | null {
  const neg = col.startsWith('!');
  const v = neg ? col.slice(1) : col;
  if (v === 'anywhere' || v === '0.0.0.0/0' || v === '::/0') return neg ? `! ${flag} 0.0.0.0/0` : null;
  const local = v === 'localhost' ? '127.0.0.1' : v;
  if (parseCidr(local)) return `${neg ? '! ' : ''}${flag} ${local}`;
  hosts.push({ dir: flag === '-s' ? 'src' : 'dst', neg, name: v });
  return null;
}

export function parseListing(text: string, opts: ListingOptions = {}): Ruleset {
  const lines = text.split('\n');
  const err = (line: number, msg: string): never => {
    throw new RulesetParseError(line, msg, opts.source);
  };
  const rows: PendingRow[] = [];
  const chainDecls: { name: string; line: number; policy?: string; counters?: { packets: bigint; bytes: bigint }; references?: number; tableHint: TableName | null }[] = [];
  let tableHint: TableName | null = null;
  let chain: string | null = null;
  let hasNum = false;
  let hasV = false;
  let family: 4 | 6 | undefined = opts.family;

  for (let idx = 0; idx < lines.length; idx++) {
    const lineNo = idx + 1;
    const raw = lines[idx]!.replace(/\r$/, '');
    const line = raw.trim();
    if (line === '') continue;
    const hints = commandHints(line);
    if (hints) {
      tableHint = hints.table;
      chain = hints.chain;
      continue;
    }
    if (line.startsWith('#')) continue;
    const cm = /^Chain\s+(\S+)\s+\((?:policy\s+(\w+)(?:\s+(\d+[KMGTP]?)\s+packets,\s+(\d+[KMGTP]?)\s+bytes)?|(\d+)\s+references?)\)/.exec(line);
    if (cm) {
      chain = cm[1]!;
      chainDecls.push({
        name: chain,
        line: lineNo,
        policy: cm[2],
        counters: cm[3] ? { packets: parseCount(cm[3]), bytes: parseCount(cm[4]!) } : undefined,
        references: cm[5] ? Number(cm[5]) : undefined,
        tableHint,
      });
      continue;
    }
    if (/^(num\s+)?(pkts\s+bytes\s+)?target\s+prot\s+opt/.test(line)) {
      hasNum = /^num\b/.test(line);
      hasV = /\bpkts\b/.test(line);
      continue;
    }
    if (!chain) err(lineNo, `a rule row before any "Chain" line: "${line.slice(0, 60)}"`);
    // Columns.
    const toks: { t: string; end: number }[] = [];
    for (const m of raw.matchAll(/\S+/g)) toks.push({ t: m[0], end: m.index! + m[0].length });
    let i = 0;
    let num = hasNum;
    let v = hasV;
    // A header-less row (pasted from grep): tell the format by the leading counters.
    if (!hasNum && !hasV && COUNT_RE.test(toks[0]?.t ?? '') && COUNT_RE.test(toks[1]?.t ?? '')) {
      v = true;
      num = COUNT_RE.test(toks[2]?.t ?? '');
    }
    if (num) i++;
    let counters: PendingRow['counters'];
    if (v) {
      counters = { packets: parseCount(toks[i]?.t ?? ''), bytes: parseCount(toks[i + 1]?.t ?? '') };
      i += 2;
    }
    let target = '';
    if (!PROTO_RE.test(toks[i]?.t ?? '') || PROTO_RE.test(toks[i + 1]?.t ?? '')) target = toks[i++]?.t ?? '';
    const prot = toks[i++]?.t;
    if (!prot || !PROTO_RE.test(prot)) err(lineNo, `cannot read the rule row "${line.slice(0, 80)}" (no protocol column)`);
    if (OPT_RE.test(toks[i]?.t ?? '')) i++;
    let inIf = '*';
    let outIf = '*';
    if (v) {
      inIf = toks[i++]?.t ?? '*';
      outIf = toks[i++]?.t ?? '*';
    }
    const srcTok = toks[i++];
    const dstTok = toks[i++];
    if (!srcTok || !dstTok) err(lineNo, `cannot read the rule row "${line.slice(0, 80)}" (source/destination columns missing)`);
    const extras = raw.slice(dstTok!.end).trim();
    const hostMatches: PendingRow['hostMatches'] = [];
    const parts: string[] = [`-A ${chain}`];
    const s = addrArg('-s', srcTok!.t, hostMatches);
    const d = addrArg('-d', dstTok!.t, hostMatches);
    if (s) parts.push(s);
    if (d) parts.push(d);
    if (srcTok!.t.includes(':') || dstTok!.t.includes(':')) family ??= 6;
    if (inIf !== '*') parts.push(inIf.startsWith('!') ? `! -i ${inIf.slice(1)}` : `-i ${inIf}`);
    if (outIf !== '*') parts.push(outIf.startsWith('!') ? `! -o ${outIf.slice(1)}` : `-o ${outIf}`);
    const p = prot!.replace(/^!/, '');
    if (p !== 'all' && p !== '0') parts.push(`${prot!.startsWith('!') ? '! ' : ''}-p ${p}`);
    let ex;
    try {
      ex = extrasToArgs(extras, target, p);
    } catch (e) {
      return err(lineNo, (e as Error).message);
    }
    parts.push(...ex.match);
    if (target) parts.push(`${ex.goto ? '-g' : '-j'} ${target}`, ...ex.target);
    rows.push({ line: lineNo, text: line.replace(/\s+/g, ' '), chain: chain!, tableHint, spec: parts.join(' '), counters, extraUnknown: ex.unknown, hostMatches });
  }

  // Decide each chain's table.
  const declared = new Map<string, (typeof chainDecls)[number]>();
  for (const c of chainDecls) declared.set(`${c.tableHint ?? ''}/${c.name}`, c);
  const inferred = opts.table ?? inferTable(chainDecls.map((c) => c.name), rows);
  const tables = new Map<TableName, Table>();
  const tableOf = (hint: TableName | null): Table => {
    const name = opts.table ?? hint ?? inferred;
    let t = tables.get(name);
    if (!t) {
      t = emptyTable(name, 0);
      tables.set(name, t);
    }
    return t;
  };
  const warnings: Ruleset['warnings'] = [];
  for (const c of chainDecls) {
    const t = tableOf(c.tableHint);
    const builtin = BUILTIN_CHAINS[t.name].includes(c.name);
    const existing = t.chains.get(c.name);
    if (existing && existing.line > 0) warnings.push({ line: c.line, message: `chain ${c.name} listed again (line ${existing.line}); the later listing wins` });
    const chain: Chain = { table: t.name, name: c.name, builtin, line: c.line, rules: [], references: c.references };
    if (builtin) chain.policy = c.policy === 'DROP' ? 'DROP' : 'ACCEPT';
    if (c.counters) chain.counters = c.counters;
    t.chains.set(c.name, chain);
  }
  for (const r of rows) {
    const t = tableOf(r.tableHint);
    let chain = t.chains.get(r.chain);
    if (!chain) {
      // Rows pasted without their "Chain" line (iptables -L CHAIN | grep …).
      chain = { table: t.name, name: r.chain, builtin: BUILTIN_CHAINS[t.name].includes(r.chain), line: 0, rules: [] };
      if (chain.builtin) chain.policy = 'ACCEPT';
      t.chains.set(r.chain, chain);
      warnings.push({ line: r.line, message: `rows for chain ${r.chain} without its "Chain" line: the chain may be incomplete` });
    }
    let parsed;
    try {
      parsed = parseRuleArgs(tokenize(r.spec), 2);
    } catch (e) {
      return err(r.line, `${(e as Error).message} (in "${r.text.slice(0, 80)}")`);
    }
    if (r.extraUnknown.length || r.hostMatches.length) parsed.unmodelled = [...parsed.unmodelled];
    for (const u of r.extraUnknown.length ? [r.extraUnknown.join(' ')] : []) {
      parsed.matches.push({ kind: 'unknown', text: u });
      parsed.unmodelled.push(u);
    }
    for (const h of r.hostMatches) {
      const txt = `${h.neg ? '! ' : ''}${h.dir === 'src' ? '-s' : '-d'} ${h.name} (a host name: the listing was made without -n)`;
      parsed.matches.push({ kind: 'unknown', text: txt });
      parsed.unmodelled.push(txt);
    }
    const rule: Rule = {
      table: t.name,
      chain: r.chain,
      line: r.line,
      text: r.text,
      spec: r.spec,
      matches: parsed.matches,
      target: parsed.target,
      unmodelled: parsed.unmodelled,
    };
    if (r.counters) rule.counters = r.counters;
    chain.rules.push(rule);
  }
  if (tables.size === 0) err(1, 'no "Chain" lines: this is not an iptables -L listing');
  for (const t of tables.values())
    for (const c of t.chains.values())
      for (const r of c.rules)
        if (r.target?.kind === 'jump' && !t.chains.has(r.target.chain))
          warnings.push({ line: r.line, message: `jump to ${r.target.chain}, which is not in the listing` });
  return { family: family ?? 4, format: 'listing', tables, warnings, lineCount: lines.length };
}

/** A listing of one table: nat if it NATs or has kube-proxy's nat chains, else filter. */
function inferTable(chains: string[], rows: PendingRow[]): TableName {
  const natTargets = /-j (DNAT|SNAT|MASQUERADE|REDIRECT|KUBE-MARK-MASQ|KUBE-SVC-\S+|KUBE-SEP-\S+|KUBE-POSTROUTING)\b/;
  if (rows.some((r) => natTargets.test(r.spec))) return 'nat';
  if (chains.some((c) => /^KUBE-(SVC|SEP|POSTROUTING|MARK-MASQ)/.test(c))) return 'nat';
  if (chains.includes('PREROUTING') && chains.includes('POSTROUTING') && !chains.includes('FORWARD')) return 'nat';
  return 'filter';
}
