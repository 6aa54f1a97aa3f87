// Reading what the kernel holds: iptables-save parsed into chains, a
// canonical form for comparing whole tables, and a loose key for comparing
// one of our rule lines with the kernel's re-serialization of it
// (iptables-save reorders nothing in kube-proxy's rules, but adds "-m tcp",
// reprints probabilities with 11 decimals and host addresses with /32).
import type { TableName } from './model.js';
import { emptyTables, TABLES, type Tables } from './sync-diff.js';

export interface SavedTable {
  /** Every chain with its rules ("-A CHAIN …", counters stripped), built-in chains included. */
  chains: Map<string, string[]>;
  /** Built-in chains and their policies. */
  policies: Map<string, string>;
}

export function parseSave(text: string): Record<string, SavedTable> {
  const out: Record<string, SavedTable> = {};
  let cur: SavedTable | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      cur = { chains: new Map(), policies: new Map() };
      out[line.slice(1)] = cur;
      continue;
    }
    if (line === 'COMMIT' || !cur) continue;
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ') as [string, string];
      cur.chains.set(name, []);
      if (policy !== '-') cur.policies.set(name, policy);
      continue;
    }
    const rule = line.startsWith('[') ? line.slice(line.indexOf(']') + 2) : line;
    if (!rule.startsWith('-A ')) continue;
    const chain = rule.slice(3, rule.indexOf(' ', 3) < 0 ? undefined : rule.indexOf(' ', 3));
    let rules = cur.chains.get(chain);
    if (!rules) cur.chains.set(chain, (rules = []));
    rules.push(rule);
  }
  return out;
}

/** The filter and nat tables of a save, as Tables (all chains, built-in ones too). */
export function savedTables(text: string): Tables {
  const parsed = parseSave(text);
  const t = emptyTables();
  for (const name of TABLES) if (parsed[name]) t[name] = parsed[name].chains;
  return t;
}

/** Shell-like split honouring double quotes, as iptables-restore does. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQ = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length && line[i + 1] === '"') {
      cur += '"';
      i++;
      has = true;
    } else if (c === '"') {
      inQ = !inQ;
      has = true;
    } else if (c === ' ' && !inQ) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

const HOST32 = /^(\d+\.\d+\.\d+\.\d+)\/32$/;
const HOST128 = /^([0-9a-f:]+)\/128$/i;
const DECIMAL = /^\d*\.\d+$/;
/** Options iptables-save prints although nobody wrote them (their defaults). */
const DEFAULTS = new Set([
  '--rsource',
  '--mask 255.255.255.255',
  '--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  '--reject-with icmp-port-unreachable',
  '--reject-with icmp6-port-unreachable',
]);

/**
 * A comparison key insensitive to how iptables-save re-prints a rule:
 * quoting, implicit protocol modules, /32 host masks, decimal precision and
 * option order. Two lines with the same key are the same rule for kproxy's
 * purposes; a false "different" only costs a rewrite of that chain.
 */
export function looseKey(line: string): string {
  const toks = tokenize(line);
  const out: string[] = [];
  for (let i = 0; i < toks.length; i++) {
    let t = toks[i]!;
    if (t === '-m' && (toks[i + 1] === 'tcp' || toks[i + 1] === 'udp' || toks[i + 1] === 'sctp')) {
      i++;
      continue;
    }
    if (t === '--protocol') t = '-p';
    let m = HOST32.exec(t) ?? HOST128.exec(t);
    if (m) t = m[1]!;
    if (DECIMAL.test(t)) t = Number(t).toFixed(4);
    if (t.includes('0x')) t = t.replace(/0x0*([0-9a-f]+)/gi, (_, h: string) => `0x${h.toLowerCase()}`);
    out.push(t);
  }
  // Keep "-A CHAIN" first; the rest as a multiset of option groups
  // ("! -s X" stays one group), so option order does not matter but
  // which value belongs to which option does.
  const groups: string[] = [];
  let g: string[] = [];
  for (const t of out.slice(2)) {
    const starts = (t.startsWith('-') && !/^-\d/.test(t)) || t === '!';
    if (starts && g.length && !(g.length === 1 && g[0] === '!')) {
      groups.push(g.join(' '));
      g = [];
    }
    g.push(t);
  }
  if (g.length) groups.push(g.join(' '));
  const norm: string[] = [];
  for (const gr of groups) {
    if (DEFAULTS.has(gr)) continue;
    const m = /^--(or|xor)-mark (\S+)$/.exec(gr);
    norm.push(m ? `--set-xmark ${m[2]}/${m[1] === 'or' ? m[2] : '0x0'}` : gr);
  }
  return out.slice(0, 2).concat(norm.sort()).join('\u0001');
}

/** Canonical text of some tables: chains sorted by name, rules in order, no counters. */
export function canonical(text: string, tables: string[] = ['filter', 'nat']): string {
  const parsed = parseSave(text);
  let s = '';
  for (const t of tables) {
    const tb = parsed[t];
    if (!tb) continue;
    s += `*${t}\n`;
    for (const name of [...tb.chains.keys()].sort()) {
      s += `:${name} ${tb.policies.get(name) ?? '-'}\n`;
      for (const r of tb.chains.get(name)!) s += r + '\n';
    }
  }
  return s;
}

export type { TableName };
