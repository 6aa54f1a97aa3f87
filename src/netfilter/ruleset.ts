// The one model both parsers produce: tables → chains (policy, counters) →
// rules. Every rule keeps its source line number and original text so every
// step of a trace can point back at the dump, and its matches and target are
// parsed once, at load time, so tracing never re-reads text.
import type { Addr, Cidr } from './addr.js';

export type TableName = 'raw' | 'mangle' | 'nat' | 'filter' | 'security';
export const TABLES: readonly TableName[] = ['raw', 'mangle', 'nat', 'filter', 'security'];

export const BUILTIN_CHAINS: Record<TableName, readonly string[]> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export type PortRange = readonly [number, number];

export type Match =
  | { kind: 'addr'; dir: 'src' | 'dst'; neg: boolean; cidr: Cidr }
  | { kind: 'proto'; neg: boolean; proto: string }
  | { kind: 'iface'; dir: 'in' | 'out'; neg: boolean; name: string; wildcard: boolean }
  /** --sport/--dport of tcp/udp/sctp and multiport (dir "any" is multiport --ports). */
  | { kind: 'port'; dir: 'sport' | 'dport' | 'any'; neg: boolean; ranges: PortRange[] }
  | { kind: 'iprange'; dir: 'src' | 'dst'; neg: boolean; from: Addr; to: Addr }
  | { kind: 'addrtype'; dir: 'src' | 'dst'; neg: boolean; types: string[]; limitIface?: 'in' | 'out' }
  | { kind: 'ctstate'; neg: boolean; states: string[] }
  | { kind: 'ctstatus'; neg: boolean; statuses: string[] }
  | { kind: 'ctdir'; dir: 'ORIGINAL' | 'REPLY' }
  | { kind: 'ctorig'; field: 'src' | 'dst'; neg: boolean; cidr: Cidr }
  | { kind: 'ctorigport'; field: 'src' | 'dst'; neg: boolean; ranges: PortRange[] }
  | { kind: 'mark'; neg: boolean; value: number; mask: number }
  | { kind: 'connmark'; neg: boolean; value: number; mask: number }
  | { kind: 'comment'; text: string }
  | { kind: 'statistic'; neg: boolean; mode: 'random'; probability: number }
  | { kind: 'statistic'; neg: boolean; mode: 'nth'; every: number; packet: number }
  | {
      kind: 'recent';
      neg: boolean;
      op: 'set' | 'rcheck' | 'update' | 'remove';
      name: string;
      seconds?: number;
      hitcount?: number;
      reap: boolean;
      side: 'source' | 'dest';
      mask?: Addr;
    }
  | { kind: 'set'; neg: boolean; name: string; flags: ('src' | 'dst')[] }
  | { kind: 'tcpflags'; neg: boolean; mask: string[]; comp: string[] }
  | { kind: 'icmptype'; neg: boolean; type: string }
  | { kind: 'fragment'; neg: boolean }
  /** A module that only counts or annotates (nfacct): it always matches. */
  | { kind: 'always'; text: string }
  /** Anything the simulator does not model: kept verbatim, and the trace says so. */
  | { kind: 'unknown'; text: string };

export interface NatRange {
  from?: Addr;
  to?: Addr;
  portFrom?: number;
  portTo?: number;
  text: string;
}

export type Target =
  | { kind: 'jump'; chain: string }
  | { kind: 'goto'; chain: string }
  | { kind: 'ACCEPT' }
  | { kind: 'DROP' }
  | { kind: 'REJECT'; with: string }
  | { kind: 'RETURN' }
  | { kind: 'DNAT'; to: NatRange[] }
  | { kind: 'SNAT'; to: NatRange[] }
  | { kind: 'MASQUERADE'; ports?: PortRange; random: boolean; randomFully: boolean }
  | { kind: 'REDIRECT'; ports?: PortRange }
  /** mark = (mark & ~mask) ^ value: every MARK form reduces to this (iptables-save prints --set-xmark). */
  | { kind: 'MARK'; value: number; mask: number }
  | { kind: 'CONNMARK'; op: 'xset'; value: number; mask: number }
  | { kind: 'CONNMARK'; op: 'save' | 'restore'; nfmask: number; ctmask: number }
  | { kind: 'LOG'; name: string; prefix?: string }
  | { kind: 'NOTRACK' }
  | { kind: 'unknown'; name: string; text: string };

export interface Rule {
  table: TableName;
  chain: string;
  /** 1-based line in the source text. */
  line: number;
  /** The original line, trimmed. For listings, the reconstructed `-A` form is in `spec`. */
  text: string;
  /** The rule in iptables-save form (for save input, the same as text). */
  spec: string;
  matches: Match[];
  /** null: a rule with no target (it only counts). */
  target: Target | null;
  /** Options the simulator does not model, verbatim. */
  unmodelled: string[];
  counters?: { packets: bigint; bytes: bigint };
}

export interface Chain {
  table: TableName;
  name: string;
  builtin: boolean;
  /** ACCEPT or DROP for built-in chains; undefined for user chains. */
  policy?: 'ACCEPT' | 'DROP';
  counters?: { packets: bigint; bytes: bigint };
  /** Line that declared the chain (0 when implied). */
  line: number;
  rules: Rule[];
  references?: number;
  /** Chains of a dump whose rules are made when first read (saved.ts): how many rules, without making them. */
  readonly size?: number;
  /** Such a chain, its rules not made yet: false when none is a SNAT or a jump to KUBE-NODEPORTS (what infer.ts reads). */
  readonly mayNameNodeAddresses?: boolean;
}

export interface Table {
  name: TableName;
  line: number;
  chains: Map<string, Chain>;
}

export interface RulesetWarning {
  line: number;
  message: string;
}

export interface Ruleset {
  family: 4 | 6;
  format: 'save' | 'listing';
  tables: Map<TableName, Table>;
  warnings: RulesetWarning[];
  /** Source lines, for error messages. */
  lineCount: number;
}

export class RulesetParseError extends Error {
  constructor(
    readonly line: number,
    readonly detail: string,
    readonly source?: string,
  ) {
    super(`${source ? `${source}: ` : ""}line ${line}: ${detail}`);
  }
}

export function emptyTable(name: TableName, line: number): Table {
  const chains = new Map<string, Chain>();
  for (const c of BUILTIN_CHAINS[name]) chains.set(c, { table: name, name: c, builtin: true, policy: 'ACCEPT', line: 0, rules: [] });
  return { name, line, chains };
}

export function isTableName(s: string): s is TableName {
  return (TABLES as readonly string[]).includes(s);
}

export function ruleCount(rs: Ruleset): number {
  let n = 0;
  for (const t of rs.tables.values()) for (const c of t.chains.values()) n += c.size ?? c.rules.length;
  return n;
}
