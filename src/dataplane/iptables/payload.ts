// Turning an IptablesRuleset into iptables-restore text: the raw order upstream
// writes (restorePayload), and the canonical order upstream's tests compare
// (canonicalPayload: sortIPTablesRules + ParseIPTablesDump(...).String()).
import { sortByName } from './chain-names.js';
import type { ChainMap, IptablesRuleset } from './model.js';

export interface PayloadOptions {
  /** Stale per-service nat chains to flush and delete (`:NAME - [0:0]` then `-X NAME`). */
  deleteNatChains?: string[];
}

function chainLine(name: string): string {
  return `:${name} - [0:0]`;
}

function pushRules(out: string[], m: ChainMap): void {
  for (const rules of m.values()) for (const r of rules) out.push(r);
}

/**
 * The payload in upstream's write order: *filter (chains; KUBE-FIREWALL, the
 * per-service rules, KUBE-FORWARD) COMMIT, *nat (chains; KUBE-POSTROUTING,
 * KUBE-MARK-MASQ, per-service rules, -X of stale chains, the nodeports jump last) COMMIT.
 * Services come in key order rather than Go's map order.
 */
export function restorePayload(rs: IptablesRuleset, opts: PayloadOptions = {}): string {
  const out: string[] = ['*filter'];
  for (const name of rs.fixed.filter.keys()) out.push(chainLine(name));
  for (const [name, rules] of rs.fixed.filter) if (name !== 'KUBE-FORWARD') for (const r of rules) out.push(r);
  for (const s of rs.services) pushRules(out, s.shared.filter);
  for (const r of rs.fixed.filter.get('KUBE-FORWARD') ?? []) out.push(r);
  pushRules(out, rs.trailing.filter);
  out.push('COMMIT', '*nat');
  for (const name of rs.fixed.nat.keys()) out.push(chainLine(name));
  for (const s of rs.services) for (const name of s.chains.keys()) out.push(chainLine(name));
  const deletes = opts.deleteNatChains ?? [];
  for (const name of deletes) out.push(chainLine(name));
  pushRules(out, rs.fixed.nat);
  for (const s of rs.services) {
    pushRules(out, s.shared.nat);
    pushRules(out, s.chains);
  }
  for (const name of deletes) out.push(`-X ${name}`);
  pushRules(out, rs.trailing.nat);
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

interface Table {
  name: string;
  chainLines: Map<string, string>;
  rules: Map<string, string[]>;
  deleted: string[];
}

/** Splits "--comment X" out of a rule: the value, unquoted. */
function commentOf(rule: string): string | null {
  const i = rule.indexOf(' --comment ');
  if (i < 0) return null;
  const rest = rule.slice(i + 11);
  if (rest.startsWith('"')) {
    const end = rest.indexOf('"', 1);
    return end < 0 ? rest.slice(1) : rest.slice(1, end);
  }
  const sp = rest.indexOf(' ');
  return sp < 0 ? rest : rest.slice(0, sp);
}

/** orderByCommentServiceName's key: the comment up to the first space or colon. */
function serviceNameOf(rule: string): string | null {
  const c = commentOf(rule);
  if (c === null) return null;
  const m = /[ :]/.exec(c);
  return m ? c.slice(0, m.index) : c;
}

function chainRank(name: string): number {
  if (name === 'KUBE-NODEPORTS') return 0;
  if (name === 'KUBE-SERVICES') return 1;
  return name.startsWith('KUBE-') ? 2 : 3;
}

function compareChains(a: string, b: string): number {
  const ra = chainRank(a);
  const rb = chainRank(b);
  if (ra !== rb) return ra - rb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Stable sort by service name; rules without a comment keep their place relative to each other. */
function sortByService(rules: string[], lastOnes: boolean): string[] {
  const keyed = rules.map((r, i) => {
    const last = lastOnes && (commentOf(r) ?? '').includes('must be the last rule');
    return { r, i, last, name: serviceNameOf(r) ?? '' };
  });
  keyed.sort((x, y) => {
    if (x.last !== y.last) return x.last ? 1 : -1;
    if (x.name !== y.name) return x.name < y.name ? -1 : 1;
    return x.i - y.i;
  });
  return keyed.map((k) => k.r);
}

/**
 * Parses an iptables-restore/iptables-save text and prints it in the canonical
 * order of upstream's tests: tables by name; chains KUBE-NODEPORTS, KUBE-SERVICES,
 * other KUBE-* alphabetically, then the rest; rules grouped by chain in that order
 * (KUBE-NODEPORTS and KUBE-SERVICES stably sorted by service name, the nat nodeports
 * jump last); then one -X per deleted chain; COMMIT. Counters ([p:b]) are reset.
 */
export function canonicalPayload(text: string): string {
  const tables: Table[] = [];
  let cur: Table | null = null;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      cur = { name: line.slice(1).trim(), chainLines: new Map(), rules: new Map(), deleted: [] };
      tables.push(cur);
      continue;
    }
    if (!cur) throw new Error(`line ${n + 1}: ${JSON.stringify(line)} outside a table`);
    if (line === 'COMMIT') {
      cur = null;
      continue;
    }
    if (line.startsWith(':')) {
      const parts = line.slice(1).split(' ');
      const name = parts[0]!;
      const policy = parts[1] ?? '-';
      cur.chainLines.set(name, `:${name} ${policy} [0:0]`);
      continue;
    }
    if (line.startsWith('[')) {
      // iptables-save -c prefixes counters: "[p:b] -A ...".
      const close = line.indexOf('] ');
      if (close > 0) {
        lines[n] = line.slice(close + 2);
        n--;
        continue;
      }
    }
    const m = /^(-A|-X|-I|-N) (\S+)/.exec(line);
    if (!m) throw new Error(`line ${n + 1}: cannot parse ${JSON.stringify(line)}`);
    const chain = m[2]!;
    if (m[1] === '-X') {
      cur.deleted.push(chain);
      continue;
    }
    if (m[1] === '-N') {
      if (!cur.chainLines.has(chain)) cur.chainLines.set(chain, `:${chain} - [0:0]`);
      continue;
    }
    let arr = cur.rules.get(chain);
    if (!arr) cur.rules.set(chain, (arr = []));
    arr.push(line);
  }
  if (cur) throw new Error(`table *${cur.name} has no COMMIT`);
  tables.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const t of tables) {
    out.push(`*${t.name}`);
    const names = new Set<string>([...t.chainLines.keys()]);
    for (const c of t.rules.keys()) names.add(c);
    const order = [...names].sort(compareChains);
    for (const c of order) if (t.chainLines.has(c)) out.push(t.chainLines.get(c)!);
    for (const c of order) {
      let rules = t.rules.get(c);
      if (!rules) continue;
      if (c === 'KUBE-NODEPORTS' || c === 'KUBE-SERVICES') rules = sortByService(rules, t.name === 'nat' && c === 'KUBE-SERVICES');
      for (const r of rules) out.push(r);
    }
    const deleted = [...new Set(t.deleted)].sort(compareChains);
    for (const c of deleted) out.push(`-X ${c}`);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** orderByCommentServiceName's key for a service port: its "ns/name" (the key up to the first ':'). */
function serviceNameOfKey(key: string): string {
  const i = key.indexOf(':');
  return i < 0 ? key : key.slice(0, i);
}

/**
 * Collects lines into pieces of about CHUNK_CHARS characters, each '\n'-terminated: the
 * output of a 10k-service render is 33 MB, and one string of it (then one Buffer of it
 * to write) costs more in fresh memory than building it did. Pieces stay below V8's
 * large-object size, so they are made in (and die in) the young generation.
 */
const CHUNK_CHARS = 48 * 1024;
/** Chain declarations per piece: ":KUBE-SEP-… - [0:0]" is 32 characters. */
const DECLARATIONS_PER_PIECE = 1024;

class Chunker {
  private readonly lines: string[] = [];
  private size = 0;

  /** Adds a line; true when a piece is full (take it). */
  add(line: string): boolean {
    this.lines.push(line);
    this.size += line.length + 1;
    return this.size >= CHUNK_CHARS;
  }

  /**
   * Adds a chain's rules; true when a piece is full. Joined first (natively): a push per
   * rule is most of the cost of printing 400k rules.
   */
  addAll(lines: string[]): boolean {
    if (lines.length === 0) return false;
    return this.add(lines.length === 1 ? lines[0]! : lines.join('\n'));
  }

  take(): string {
    this.lines.push('');
    const chunk = this.lines.join('\n');
    this.lines.length = 0;
    this.size = 0;
    return chunk;
  }
}

function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** orderByCommentServiceName over service ports already in key order: stable by "ns/name". */
function servicesByName(services: IptablesRuleset['services']): IptablesRuleset['services'] {
  const names = services.map((s) => serviceNameOfKey(s.key));
  // Key order is name order unless a port-suffixed key sorts apart from its name ("a/b:x" > "a/b-c", "a/b" < "a/b-c").
  let sorted = true;
  for (let i = 1; i < names.length && sorted; i++) sorted = names[i - 1]! <= names[i]!;
  if (sorted) return services;
  const idx = names.map((name, i) => ({ name, i }));
  idx.sort((a, b) => byName(a, b) || a.i - b.i);
  return idx.map((x) => services[x.i]!);
}

/**
 * The canonical text of a ruleset: what `kproxy render` prints. Equal to
 * canonicalPayload(restorePayload(rs, opts)) (a unit test holds them together)
 * but built straight from the model, without re-parsing a 100 MB text at 30k services.
 */
export function canonicalRuleset(rs: IptablesRuleset, opts: PayloadOptions = {}): string {
  return [...canonicalChunks(rs, opts)].join('');
}

/** canonicalRuleset in pieces, in order (so a writer can wait for its reader between them). */
export function* canonicalChunks(rs: IptablesRuleset, opts: PayloadOptions = {}): Generator<string> {
  for (const t of ['filter', 'nat'] as const) {
    for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS']) {
      // The direct path assumes these chains get rules only from services (and the trailing jump).
      if ((rs.fixed[t].get(c) ?? []).length > 0) {
        yield canonicalPayload(restorePayload(rs, opts));
        return;
      }
    }
  }
  const sortedServices = servicesByName(rs.services);
  const deletes = opts.deleteNatChains ?? [];
  const out = new Chunker();
  for (const table of ['filter', 'nat'] as const) {
    if (out.add(`*${table}`)) yield out.take();
    // The few chains that several parties write to (fixed, shared, trailing, deleted), with their rules in write order.
    const common = new Map<string, string[][]>();
    const addCommon = (c: string, rules?: string[]): void => {
      let l = common.get(c);
      if (!l) common.set(c, (l = []));
      if (rules) l.push(rules);
    };
    for (const [c, rules] of rs.fixed[table]) addCommon(c, rules);
    const sharedNames = new Set<string>();
    for (const s of rs.services) for (const c of s.shared[table].keys()) sharedNames.add(c);
    for (const c of sharedNames) {
      addCommon(c);
      if (c === 'KUBE-NODEPORTS' || c === 'KUBE-SERVICES') continue; // sorted by service name below
      for (const s of rs.services) {
        const r = s.shared[table].get(c);
        if (r) addCommon(c, r);
      }
    }
    if (table === 'nat') for (const c of deletes) addCommon(c);
    for (const c of rs.trailing[table].keys()) addCommon(c);
    // Chain order: KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-* by name, the rest by name. The
    // per-service chains (150k at 10k services) are each one entry, sorted once by plain name.
    const first: { name: string; rules: string[] | null }[] = [];
    const kube: { name: string; rules: string[] | null }[] = [];
    const other: { name: string; rules: string[] | null }[] = [];
    const place = (name: string, rules: string[] | null): void => {
      if (name === 'KUBE-NODEPORTS' || name === 'KUBE-SERVICES') first.push({ name, rules });
      else (name.startsWith('KUBE-') ? kube : other).push({ name, rules });
    };
    for (const name of common.keys()) place(name, null);
    if (table === 'nat') {
      for (const s of rs.services) {
        for (const [name, rules] of s.chains) {
          const c = common.get(name);
          if (c) c.push(rules);
          else place(name, rules);
        }
      }
    }
    first.sort(byName); // KUBE-NODEPORTS, then KUBE-SERVICES
    const entries = first.concat(sortByName(kube), sortByName(other));
    // The declarations, ":NAME - [0:0]", a block of names per join.
    for (let i = 0; i < entries.length; i += DECLARATIONS_PER_PIECE) {
      const block = entries.slice(i, i + DECLARATIONS_PER_PIECE).map((e) => e.name);
      if (out.add(`:${block.join(' - [0:0]\n:')} - [0:0]`)) yield out.take();
    }
    for (const e of entries) {
      if (e.rules) {
        if (out.addAll(e.rules)) yield out.take();
      } else if (e.name === 'KUBE-NODEPORTS' || e.name === 'KUBE-SERVICES') {
        for (const s of sortedServices) {
          const rules = s.shared[table].get(e.name);
          if (rules && out.addAll(rules)) yield out.take();
        }
      } else {
        for (const rules of common.get(e.name)!) if (out.addAll(rules)) yield out.take();
      }
      // Trailing rules go to chains in `common` only (addCommon above), never to a service's own.
      const trailing = e.rules ? undefined : rs.trailing[table].get(e.name);
      if (trailing && out.addAll(trailing)) yield out.take();
    }
    if (table === 'nat') {
      const del = [...new Set(deletes)].sort(compareChains);
      for (const c of del) if (out.add(`-X ${c}`)) yield out.take();
    }
    if (out.add('COMMIT')) yield out.take();
  }
  const last = out.take();
  if (last) yield last;
}
