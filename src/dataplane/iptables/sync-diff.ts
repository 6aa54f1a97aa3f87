// The pure half of the incremental sync: from what the kernel holds (our
// model of it) and what the full render says it should hold, compute the
// smallest list of iptables-restore lines that turns one into the other, in
// an order that never makes a half-built service reachable, split into
// stages small enough for the nft backend (whose restore cost grows with the
// square of the payload size).
//
// Chains are kept as arrays of full restore lines ("-A CHAIN args…"), the same
// text the full payload carries, so the end state equals loading the full
// render, rule for rule, chain for chain.
import type { ChainMap, IptablesRuleset, ServicePortRules, TableName } from './model.js';

export const TABLES: TableName[] = ['filter', 'nat'];

/** Chain name → rule lines, per table. */
export type Tables = Record<TableName, Map<string, string[]>>;

export function emptyTables(): Tables {
  return { filter: new Map(), nat: new Map() };
}

/** Per-service chains kube-proxy creates and deletes (isServiceChainName upstream). */
const OWNED = /^KUBE-(SEP|SVC|SVL|EXT|FW)-/;
export function isServiceChain(name: string): boolean {
  return OWNED.test(name);
}

/** Dependency rank: a chain is filled only after every chain it jumps to exists and is filled. */
function rank(name: string): number {
  if (name.startsWith('KUBE-SEP-')) return 0;
  if (name.startsWith('KUBE-SVC-') || name.startsWith('KUBE-SVL-')) return 1;
  if (name.startsWith('KUBE-EXT-')) return 2;
  if (name.startsWith('KUBE-FW-')) return 3;
  return 4;
}

/**
 * The shared and fixed chains of a ruleset (everything but the per-service
 * chains), in the full payload's order: the fixed chains' own rules, then each
 * service's rules in key order, then the trailing rules (the nodeports jump).
 */
export function sharedChains(rs: IptablesRuleset): Tables {
  const out = emptyTables();
  for (const t of TABLES) {
    const m = out[t];
    for (const [name, rules] of rs.fixed[t]) m.set(name, [...rules]);
    for (const svc of rs.services) appendChains(m, svc.shared[t]);
    appendChains(m, rs.trailing[t]);
  }
  return out;
}

function appendChains(m: Map<string, string[]>, add: ChainMap): void {
  for (const [name, rules] of add) {
    let cur = m.get(name);
    if (!cur) m.set(name, (cur = []));
    for (const r of rules) cur.push(r);
  }
}

/** Every chain of a ruleset: shared/fixed chains plus each service's own nat chains. */
export function fullTables(rs: IptablesRuleset): Tables {
  const out = sharedChains(rs);
  for (const svc of rs.services) for (const [name, rules] of svc.chains) out.nat.set(name, rules);
  return out;
}

/** The service chains of some service ports. */
export function serviceChains(services: Iterable<ServicePortRules | undefined>): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const s of services) if (s) for (const [name, rules] of s.chains) m.set(name, rules);
  return m;
}

/** The chain a restore line appends to. */
export function ruleChain(line: string): string {
  const end = line.indexOf(' ', 3);
  return end < 0 ? line.slice(3) : line.slice(3, end);
}

/** The rule spec after "-A CHAIN ". */
export function ruleSpec(line: string): string {
  const end = line.indexOf(' ', 3);
  return end < 0 ? '' : line.slice(end + 1);
}

// ---------------------------------------------------------------------------
// Sequence diff (Myers, O((N+M)·D)): the deletions and insertions that turn
// `a` into `b`. Returns null when more than maxD edits would be needed, so the
// caller can rewrite the chain instead.

export interface Edits {
  /** Indices in `a` to delete. Ascending. */
  del: number[];
  /** Indices in `b` to insert. Ascending. */
  ins: number[];
}

export function diffSeq(a: readonly string[], b: readonly string[], maxD = 4000): Edits | null {
  // Common prefix and suffix first: the usual change touches one service.
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const n = a.length - pre - suf;
  const m = b.length - pre - suf;
  const del: number[] = [];
  const ins: number[] = [];
  if (n === 0 || m === 0) {
    for (let i = 0; i < n; i++) del.push(pre + i);
    for (let j = 0; j < m; j++) ins.push(pre + j);
    return { del, ins };
  }
  const max = Math.min(n + m, maxD);
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  outer: for (let d = 0; d <= max; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!)) x = v[off + k + 1]!;
      else x = v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[pre + x] === b[pre + y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break outer;
      }
    }
  }
  if (found < 0) return null;
  // Walk back through the saved frontiers.
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const vd = trace[d]!; // frontier before step d, indices k+d+1
    const at = (k: number): number => vd[k + d + 1]!;
    const k = x - y;
    let prevK: number;
    if (k === -d || (k !== d && at(k - 1) < at(k + 1))) prevK = k + 1;
    else prevK = k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      x--;
      y--;
    }
    if (prevK === k + 1) ins.push(pre + y - 1);
    else del.push(pre + x - 1);
    x = prevX;
    y = prevY;
  }
  del.reverse();
  ins.reverse();
  return { del, ins };
}

// ---------------------------------------------------------------------------
// Plans

/** A group of lines for one table that must reach the kernel in the same restore. */
export interface Unit {
  table: TableName;
  /** A chain to declare (create, or flush) before the lines: ":NAME - [0:0]". */
  declare?: string;
  /** Restore lines (shared with the ruleset: never modified). */
  lines: readonly string[];
  /** When units must be applied: every unit of a phase before any of the next. */
  phase: Phase;
  /**
   * Service chains only: the service port they belong to. A stage never splits
   * a group, so each service's chains arrive complete in one restore and the
   * stages of the service-chain phase depend on nothing but the phase before:
   * they may be restored in any order, or concurrently.
   */
  group?: number;
}

/**
 * The phases of a plan, in order: new shared chains declared; endpoint
 * chains (KUBE-SEP-*) created or rewritten; the other service chains, each
 * service's together; shared chains edited in place (positions matter: in
 * order); stale service chains flushed; then deleted. Within the endpoint and
 * service-chain phases nothing depends on anything else in the same phase.
 */
export const enum Phase {
  Declare = 0,
  Endpoints = 1,
  ServiceChains = 2,
  Edits = 3,
  StaleFlush = 4,
  StaleDelete = 5,
}

export interface Plan {
  units: Unit[];
  /** Chains created, rewritten, edited and deleted (for logs). */
  stats: { created: number; rewritten: number; edited: number; deleted: number; ruleDeletes: number; ruleInserts: number };
}

export interface PlanInput {
  /** What the kernel holds now, for the chains under consideration. */
  current: Tables;
  /** What it must hold. */
  desired: Tables;
  /**
   * The chains to compare. A partial sync names the shared/fixed chains and
   * the service chains of the services that changed; a full sync compares all.
   * Chains present in `current` but absent from `desired` are deleted only
   * when they are service chains (we never delete chains we did not create).
   */
  chains?: Record<TableName, Iterable<string>>;
  /**
   * Comparison keys for rules (defaults to the text itself). A full sync after
   * reading iptables-save compares the kernel's re-serialized rules loosely.
   */
  key?: (line: string) => string;
  /** Above this many edits in one shared chain, rewrite it whole. */
  maxEdits?: number;
  /**
   * The service port (its index in the ruleset) a service chain belongs to,
   * so that its chains are planned together (see Unit.group). Without it,
   * service chains are ordered by rank alone.
   */
  groupOf?: (chain: string) => number | undefined;
}

/** Service chain → index of its service port in the ruleset (PlanInput.groupOf). */
export function serviceGroups(rs: IptablesRuleset): Map<string, number> {
  const m = new Map<string, number>();
  rs.services.forEach((s, i) => {
    for (const name of s.chains.keys()) m.set(name, i);
  });
  return m;
}

function decl(name: string): string {
  return `:${name} - [0:0]`;
}

/** The keys of a, then those of b that a lacks (no copy of either). */
function* eitherKeys(a: Map<string, unknown>, b: Map<string, unknown>): Generator<string> {
  yield* a.keys();
  for (const k of b.keys()) if (!a.has(k)) yield k;
}

export function planSync(input: PlanInput): Plan {
  const { current, desired } = input;
  const key = input.key;
  const stats = { created: 0, rewritten: 0, edited: 0, deleted: 0, ruleDeletes: 0, ruleInserts: 0 };
  const declare: Unit[] = [];
  const owned: { g: number; r: number; name: string; unit: Unit }[] = [];
  const edits: Unit[] = [];
  const staleFlush: Unit[] = [];
  const staleDelete: Unit[] = [];

  const same = (a: readonly string[], b: readonly string[]): boolean => {
    if (a === b) return true;
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && (!key || key(a[i]!) !== key(b[i]!))) return false;
    return true;
  };

  for (const t of TABLES) {
    const cur = current[t];
    const want = desired[t];
    const names: Iterable<string> = input.chains ? new Set(input.chains[t]) : eitherKeys(want, cur);
    const newShared: string[] = [];
    const flush: string[] = [];
    const drop: string[] = [];
    for (const name of names) {
      const has = cur.get(name);
      const rules = want.get(name);
      if (!rules) {
        if (has && isServiceChain(name)) {
          flush.push(decl(name));
          drop.push(`-X ${name}`);
          stats.deleted++;
        }
        continue;
      }
      if (isServiceChain(name)) {
        if (has && same(has, rules)) continue;
        if (has) stats.rewritten++;
        else stats.created++;
        const r = rank(name);
        const g = r === 0 ? undefined : input.groupOf?.(name);
        const phase = r === 0 ? Phase.Endpoints : Phase.ServiceChains;
        owned.push({ g: g ?? -1, r, name, unit: { table: t, declare: name, lines: rules, phase, ...(g === undefined ? {} : { group: g }) } });
        continue;
      }
      // A shared or fixed chain: edit it in place.
      if (!has) {
        newShared.push(decl(name));
        stats.created++;
        for (const r of rules) edits.push({ table: t, lines: [r], phase: Phase.Edits });
        stats.ruleInserts += rules.length;
        continue;
      }
      if (same(has, rules)) continue;
      const ka = key ? has.map(key) : has;
      const kb = key ? rules.map(key) : rules;
      const e = diffSeq(ka, kb, input.maxEdits ?? 4000);
      if (!e) {
        edits.push({ table: t, declare: name, lines: rules, phase: Phase.Edits });
        stats.rewritten++;
        continue;
      }
      stats.edited++;
      // Deletions from the bottom up, so the positions of those above hold;
      // a rule spec that occurs once is deleted by spec (a mismatch then fails
      // loudly instead of deleting the wrong rule), a repeated one by number.
      const count = new Map<string, number>();
      for (const k of ka) count.set(k, (count.get(k) ?? 0) + 1);
      for (let i = e.del.length - 1; i >= 0; i--) {
        const idx = e.del[i]!;
        const line = has[idx]!;
        const spec = ruleSpec(line);
        edits.push({
          table: t,
          lines: [count.get(ka[idx]!)! > 1 || !spec ? `-D ${name} ${idx + 1}` : `-D ${name} ${spec}`],
          phase: Phase.Edits,
        });
      }
      stats.ruleDeletes += e.del.length;
      // Insertions top down at their final index: everything above is then in place.
      let len = has.length - e.del.length;
      for (const j of e.ins) {
        const line = rules[j]!;
        edits.push({ table: t, lines: [j >= len ? line : `-I ${name} ${j + 1} ${ruleSpec(line)}`], phase: Phase.Edits });
        len++;
      }
      stats.ruleInserts += e.ins.length;
    }
    if (newShared.length) declare.push({ table: t, lines: newShared, phase: Phase.Declare });
    if (flush.length) staleFlush.push({ table: t, lines: flush, phase: Phase.StaleFlush });
    if (drop.length) staleDelete.push({ table: t, lines: drop, phase: Phase.StaleDelete });
  }
  // Endpoint chains first (they are jumped to), in descending name order:
  // iptables-nft (1.8.x) collects the chain names of a restore in a sorted
  // linked list, scanned from the head on every line, so ascending names make
  // each restore quadratic in its size and descending ones linear. Then each
  // service's other chains together, by rank (a chain before those jumping to it).
  const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const endpoints = owned.filter((o) => o.r === 0).sort((a, b) => byName(b, a));
  const rest = owned.filter((o) => o.r !== 0).sort((a, b) => a.g - b.g || a.r - b.r || byName(a, b));
  return {
    units: [...declare, ...endpoints.map((o) => o.unit), ...rest.map((o) => o.unit), ...edits, ...staleFlush, ...staleDelete],
    stats,
  };
}

export function planLines(p: Plan): number {
  let n = 0;
  for (const u of p.units) n += unitLines(u);
  return n;
}

function unitLines(u: Unit): number {
  return u.lines.length + (u.declare === undefined ? 0 : 1);
}

/** One iptables-restore run. */
export interface Stage {
  /** The restore input (built on first use, so that building later stages overlaps earlier restores). */
  readonly payload: string;
  phase: Phase;
  lines: number;
}

function stage(units: readonly Unit[], phase: Phase, lines: number): Stage {
  let text: string | undefined;
  return {
    phase,
    lines,
    get payload(): string {
      if (text !== undefined) return text;
      let s = '';
      for (const t of TABLES) {
        const out: string[] = [];
        for (const u of units) {
          if (u.table !== t) continue;
          if (u.declare !== undefined) out.push(decl(u.declare));
          for (const l of u.lines) out.push(l);
        }
        if (out.length) s += `*${t}\n${out.join('\n')}\nCOMMIT\n`;
      }
      return (text = s);
    },
  };
}

/**
 * The restores of a plan: one when maxLines is Infinity (legacy: every restore
 * rewrites the whole table, so fewer is cheaper), else stages of about
 * maxLines each, in plan order. A unit is never split, nor a group of service
 * chains, and a plan larger than one stage is split at every phase boundary
 * too, so that the stages of service chains can run concurrently. A plan that
 * fits in one stage stays one restore: a small change is one transaction.
 */
export function planStages(p: Plan, maxLines = Infinity, endpointLines = maxLines): Stage[] {
  if (planLines(p) <= maxLines) maxLines = endpointLines = Infinity;
  const out: Stage[] = [];
  let cur: Unit[] = [];
  let n = 0;
  let phase = Phase.Declare;
  const flush = (): void => {
    if (n === 0) return;
    out.push(stage(cur, phase, n));
    cur = [];
    n = 0;
  };
  const units = p.units;
  for (let i = 0; i < units.length; ) {
    // A block: one unit, or every consecutive unit of the same group.
    const u = units[i]!;
    let j = i + 1;
    let size = unitLines(u);
    if (u.group !== undefined) {
      while (j < units.length && units[j]!.group === u.group && units[j]!.phase === u.phase) size += unitLines(units[j++]!);
    }
    const max = u.phase === Phase.Endpoints ? endpointLines : maxLines;
    if (n > 0 && Number.isFinite(max) && (u.phase !== phase || n + size > max)) flush();
    phase = u.phase;
    for (; i < j; i++) cur.push(units[i]!);
    n += size;
  }
  flush();
  return out;
}

/** The payloads of planStages, in order (applied one after the other, they reach the desired state). */
export function stagePayloads(p: Plan, maxLines = Infinity): string[] {
  return planStages(p, maxLines).map((s) => s.payload);
}

/** Applies a plan to an in-memory model of the tables exactly as iptables-restore would (for tests and self-checks). */
export function applyToModel(tables: Tables, payload: string): void {
  let table: TableName | null = null;
  for (const raw of payload.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = line.slice(1) as TableName;
      continue;
    }
    if (line === 'COMMIT') {
      table = null;
      continue;
    }
    if (!table) throw new Error(`line outside a table: ${line}`);
    const m = tables[table];
    if (line.startsWith(':')) {
      m.set(line.slice(1).split(' ')[0]!, []);
      continue;
    }
    const [op, chain] = line.split(' ', 2) as [string, string];
    const rest = line.slice(op.length + chain.length + 2);
    const rules = m.get(chain);
    if (op === '-X') {
      if (!rules) throw new Error(`-X of missing chain ${chain}`);
      for (const [other, rs] of m) for (const r of rs) if (r.endsWith(` -j ${chain}`) || r.includes(` -j ${chain} `)) throw new Error(`-X ${chain}: still referenced from ${other}`);
      m.delete(chain);
      continue;
    }
    if (!rules) throw new Error(`${op} on missing chain ${chain}`);
    if (op === '-A') rules.push(line);
    else if (op === '-D') {
      if (/^\d+$/.test(rest)) {
        const i = Number(rest) - 1;
        if (i < 0 || i >= rules.length) throw new Error(`-D ${chain} ${rest}: no such rule`);
        rules.splice(i, 1);
      } else {
        const i = rules.indexOf(`-A ${chain} ${rest}`);
        if (i < 0) throw new Error(`-D ${chain}: no rule ${rest}`);
        rules.splice(i, 1);
      }
    } else if (op === '-I') {
      const sp = rest.indexOf(' ');
      const pos = Number(rest.slice(0, sp)) - 1;
      if (pos < 0 || pos > rules.length) throw new Error(`-I ${chain} ${pos + 1}: index out of range`);
      rules.splice(pos, 0, `-A ${chain} ${rest.slice(sp + 1)}`);
    } else throw new Error(`unsupported line ${line}`);
  }
}
