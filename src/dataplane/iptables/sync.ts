// The iptables sync engine for one IP family. It remembers the ruleset it
// last applied and what the kernel holds, and on each sync programs only the
// difference (see sync-diff.ts). A full sync (the first, a periodic one, one
// after a failure or a lost canary) re-reads the kernel with iptables-save,
// so drift is repaired, and ensures the base jump rules.
import type { IptablesRuleset, JumpRule, ServicePortRules, TableName } from './model.js';
import {
  emptyTables,
  fullTables,
  isServiceChain,
  Phase,
  planLines,
  planStages,
  planSync,
  serviceChains,
  serviceGroups,
  sharedChains,
  TABLES,
  type Plan,
  type Stage,
  type Tables,
} from './sync-diff.js';
import { looseKey, parseSave } from './sync-save.js';
import { restore, RestoreError, type IptablesTools } from './apply.js';
import { readKernel, UNREAD_CHAIN } from './sync-read.js';
import { log as rootLog, type Logger } from '../../util/log.js';

export interface SyncOptions {
  /** Re-read the kernel and compare everything. */
  full: boolean;
  /** For a partial sync: the service port keys whose services or endpoints changed. */
  changed?: ReadonlySet<string>;
  /**
   * Full syncs only: compare every rule the kernel holds with the desired one
   * (default: on the first sync, to adopt rules left by an earlier run; later
   * full syncs compare chain sets and rule counts).
   */
  verify?: boolean;
}

export interface SyncResult {
  full: boolean;
  /** iptables-restore runs (0 when nothing differed). */
  restores: number;
  /** Lines sent to iptables-restore. */
  lines: number;
  stats: Plan['stats'];
  /** Rules per table in the kernel afterwards (ours). */
  rulesTotal: Record<TableName, number>;
  /** Base jump rules inserted (full syncs). */
  jumpsInserted: number;
  ms: number;
}

export interface SyncerConfig {
  tools: IptablesTools;
  /**
   * Lines per iptables-restore of service chains and shared-chain edits. The
   * nft backend pays for a restore twice: iptables-nft scans a sorted list of
   * the chain names the restore mentions on every line (quadratic in the
   * restore's size), and every commit walks every chain of the table in the
   * kernel (linear in the table's size). 2,500 lines balances the two at
   * 10,000 services (docs/benchmarks.md); legacy rewrites the whole table per
   * restore, so it gets one (Infinity).
   */
  stageLines?: number;
  /** Lines per restore of endpoint chains, sent in descending name order so the scan stays short (default 30,000). */
  endpointStageLines?: number;
  /**
   * How many restores of the same phase (endpoint chains, or service chains)
   * may run at once (nft only; they are independent of each other). Most of a
   * restore is user-space work in iptables-nft, so a second process uses the
   * second core; the kernel serializes the commits, and iptables-nft retries
   * its transaction when another one landed first. Default 2.
   */
  concurrency?: number;
  log?: Logger;
  /** Replaces the kernel (unit tests): how to run a restore payload and read iptables-save. */
  kernel?: KernelIO;
}

/** How the syncer reaches the kernel (replaced in unit tests). */
export interface KernelIO {
  restore(payload: string): Promise<void>;
  /** The filter and nat tables; `precise(table)` names the non-service chains whose rule text is needed. */
  read(precise: (table: string) => string[]): Promise<ReturnType<typeof parseSave>>;
}

/** Quotes an argument for an iptables-restore line the way upstream's payloads do. */
export function quoteArg(a: string): string {
  return /[\s"]/.test(a) ? `"${a.replace(/"/g, '\\"')}"` : a;
}

export function jumpLine(j: JumpRule): string {
  return `-A ${j.chain} ${j.args.map(quoteArg).join(' ')}`;
}

/** Staged syncs of at least this many lines report progress, every PROGRESS_EVERY_MS. */
const PROGRESS_LINES = 50_000;
const PROGRESS_EVERY_MS = 2_000;

export class IptablesSyncer {
  readonly tools: IptablesTools;
  private readonly stageLines: number;
  private readonly endpointStageLines: number;
  private readonly concurrency: number;
  private readonly log: Logger;
  /** What the kernel holds in our chains, as our own rule text; null when unknown. */
  private current: Tables | null = null;
  private last: IptablesRuleset | null = null;
  private lastByKey = new Map<string, ServicePortRules>();
  /** The non-service chains in `current`, and the rules `current` holds per table. */
  private sharedNames: Record<TableName, Set<string>> = { filter: new Set(), nat: new Set() };
  private ruleCounts: Record<TableName, number> = { filter: 0, nat: 0 };
  /** Our rule text → the kernel's re-serialization, learned on full syncs. */
  private savedForm = new Map<string, string>();
  /** False after a failed restore or a lost canary: `current` is then only what we last believed. */
  private trusted = false;
  private readonly kernel: KernelIO;

  constructor(cfg: SyncerConfig) {
    this.tools = cfg.tools;
    this.kernel = cfg.kernel ?? {
      restore: (p) => restore(cfg.tools, p),
      read: (precise) => readKernel(cfg.tools, ['filter', 'nat'], precise),
    };
    this.stageLines = cfg.stageLines ?? (cfg.tools.backend === 'nft' ? 2_500 : Infinity);
    this.endpointStageLines = cfg.endpointStageLines ?? (Number.isFinite(this.stageLines) ? 30_000 : Infinity);
    // Legacy restores take the xtables lock and rewrite the whole table: never two at once.
    this.concurrency = cfg.tools.backend === 'nft' && Number.isFinite(this.stageLines) ? Math.max(1, cfg.concurrency ?? 2) : 1;
    this.log = cfg.log ?? rootLog.child({ component: 'iptables-sync', family: cfg.tools.family });
  }

  /** True when the next sync must be full (nothing applied yet, or the last one failed). */
  get needsFull(): boolean {
    return this.current === null || this.last === null || !this.trusted;
  }

  /** Forget what the kernel holds: the next sync re-reads it. */
  invalidate(): void {
    this.trusted = false;
  }

  /** The rules we believe the kernel holds (for tests and `doctor`). */
  kernelModel(): Tables | null {
    return this.current;
  }

  async sync(rs: IptablesRuleset, opts: SyncOptions): Promise<SyncResult> {
    const t0 = performance.now();
    const full = opts.full || this.needsFull || !opts.changed;
    let plan: Plan;
    let desired: Tables;
    let jumpLines: string[] = [];
    let targetsCreated = 0;
    let byKeyNew: Map<string, ServicePortRules> | undefined;
    if (full) {
      desired = fullTables(rs);
      const builtins = new Set(rs.jumps.map((j) => `${j.table}/${j.chain}`));
      const parsed = await this.kernel.read((t) => [
        ...[...(desired[t as TableName]?.keys() ?? [])].filter((c) => !isServiceChain(c)),
        ...[...builtins].filter((b) => b.startsWith(t + '/')).map((b) => b.slice(t.length + 1)),
      ]);
      const kernel = this.reconcile(parsed, desired, opts.verify ?? this.last === null);
      const groups = serviceGroups(rs);
      plan = planSync({ current: kernel, desired, key: looseKey, groupOf: (c) => groups.get(c) });
      const targets = missingTargets(rs, parsed);
      targetsCreated = targets.length;
      jumpLines = [...targets, ...missingJumps(rs.jumps, parsed)];
    } else {
      const changed = opts.changed!;
      const cur = this.current!;
      const byKeyOld = this.lastByKey;
      const byKey = new Map(rs.services.map((s) => [s.key, s]));
      byKeyNew = byKey;
      desired = sharedChains(rs);
      const oldOwned = serviceChains([...changed].map((k) => byKeyOld.get(k)));
      const newOwned = serviceChains([...changed].map((k) => byKey.get(k)));
      for (const [n, r] of newOwned) desired.nat.set(n, r);
      const current = emptyTables();
      const names: Record<TableName, Set<string>> = { filter: new Set(), nat: new Set() };
      for (const t of TABLES) {
        for (const n of desired[t].keys()) names[t].add(n);
        // Shared chains that no longer exist in the render (e.g. a fixed chain dropped).
        for (const n of this.sharedNames[t]) names[t].add(n);
        for (const n of names[t]) {
          const r = cur[t].get(n);
          if (r) current[t].set(n, r);
        }
      }
      for (const n of oldOwned.keys()) {
        names.nat.add(n);
        const r = cur.nat.get(n);
        if (r) current.nat.set(n, r);
      }
      const groups = new Map<string, number>();
      let g = 0;
      for (const k of changed) {
        const s = byKey.get(k);
        if (s) for (const name of s.chains.keys()) groups.set(name, g);
        g++;
      }
      plan = planSync({ current, desired, chains: names, groupOf: (c) => groups.get(c) });
    }

    const stages = planStages(plan, this.stageLines, this.endpointStageLines);
    if (jumpLines.length) stages.push({ payload: jumpTables(rs.jumps, jumpLines), phase: Phase.StaleDelete + 1, lines: jumpLines.length });
    let restores = 0;
    try {
      restores = await this.runStages(stages);
    } catch (e) {
      this.trusted = false;
      if (e instanceof RestoreError) {
        this.log.error('iptables-restore failed; the next sync will be full', {
          error: e.stderr,
          lines: e.context,
          stages: stages.length,
        });
      }
      throw e;
    }

    // The kernel now holds `desired` in the chains we looked at.
    this.trusted = true;
    const counts = this.ruleCounts;
    if (full || !this.current) {
      this.current = desired;
      for (const t of TABLES) {
        counts[t] = 0;
        this.sharedNames[t] = new Set();
        for (const [n, r] of desired[t]) {
          counts[t] += r.length;
          if (!isServiceChain(n)) this.sharedNames[t].add(n);
        }
      }
    } else {
      // Bookkeeping in proportion to the change, not to the table.
      const cur = this.current;
      for (const t of TABLES) {
        for (const [n, r] of desired[t]) {
          counts[t] += r.length - (cur[t].get(n)?.length ?? 0);
          cur[t].set(n, r);
          if (!isServiceChain(n)) this.sharedNames[t].add(n);
        }
      }
      for (const k of opts.changed!) {
        const o = this.lastByKey.get(k);
        const n = byKeyNew!.get(k);
        if (!o) continue;
        for (const name of o.chains.keys()) {
          if (n?.chains.has(name)) continue;
          counts.nat -= cur.nat.get(name)?.length ?? 0;
          cur.nat.delete(name);
        }
      }
    }
    this.last = rs;
    this.lastByKey = byKeyNew ?? new Map(rs.services.map((s) => [s.key, s]));
    const rulesTotal = { ...counts };
    const result: SyncResult = {
      full,
      restores,
      lines: planLines(plan) + jumpLines.length,
      stats: plan.stats,
      rulesTotal,
      jumpsInserted: jumpLines.length - targetsCreated,
      ms: performance.now() - t0,
    };
    return result;
  }

  /**
   * Restores the stages in order; consecutive stages of service chains run up
   * to `concurrency` at a time. On a failure, waits for the restores in flight
   * and rethrows the first error. Returns the number of restores run.
   */
  private async runStages(stages: Stage[]): Promise<number> {
    let done = 0;
    // A staged sync of a large cluster takes seconds: say how far it got (info level).
    const total = stages.reduce((n, s) => n + s.lines, 0);
    const report = stages.length > 1 && total >= PROGRESS_LINES;
    let lines = 0;
    let lastReport = performance.now();
    const restore = async (st: Stage): Promise<void> => {
      await this.kernel.restore(st.payload);
      done++;
      lines += st.lines;
      if (report && performance.now() - lastReport >= PROGRESS_EVERY_MS) {
        lastReport = performance.now();
        this.log.info('programming the kernel in stages', { restores: `${done}/${stages.length}`, lines: `${lines}/${total}` });
      }
    };
    if (report) this.log.info('programming the kernel in stages', { restores: `0/${stages.length}`, lines: `0/${total}` });
    for (let i = 0; i < stages.length; ) {
      const parallel = (s: Stage | undefined): boolean => s?.phase === Phase.Endpoints || s?.phase === Phase.ServiceChains;
      if (!parallel(stages[i]) || this.concurrency === 1) {
        await restore(stages[i++]!);
        continue;
      }
      let j = i;
      while (j < stages.length && stages[j]!.phase === stages[i]!.phase) j++;
      const batch = stages.slice(i, j);
      let next = 0;
      let failed: unknown = null;
      const worker = async (): Promise<void> => {
        while (failed === null && next < batch.length) {
          const st = batch[next++]!;
          try {
            await restore(st);
          } catch (e) {
            failed ??= e;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.concurrency, batch.length) }, worker));
      if (failed !== null) throw failed;
      i = j;
    }
    return done;
  }

  /**
   * The kernel's chains, with every chain whose rules match the desired ones
   * replaced by our own text (so it counts as unchanged). A chain that does
   * not match keeps the kernel's text and gets diffed loosely.
   */
  private reconcile(parsed: ReturnType<typeof parseSave>, desired: Tables, verify: boolean): Tables {
    const kernel = emptyTables();
    const learned = new Map<string, string>();
    const believed = this.current;
    for (const t of TABLES) {
      const saved = parsed[t]?.chains ?? new Map<string, string[]>();
      for (const [name, rules] of saved) {
        const want = desired[t].get(name);
        // A service chain is taken on trust (count and learned forms) only when
        // it is what we last applied; anything else is compared rule by rule.
        const trust = !verify && isServiceChain(name) && !!want && sameRules(believed?.[t].get(name), want);
        if (want && this.matches(rules, want, learned, !trust)) kernel[t].set(name, want);
        else kernel[t].set(name, rules);
      }
    }
    this.savedForm = learned;
    return kernel;
  }

  private matches(saved: string[], want: string[], learned: Map<string, string>, verify: boolean): boolean {
    if (saved === UNREAD_CHAIN) return !verify;
    if (saved.length !== want.length) return false;
    if (!verify) {
      // Periodic full syncs trust a service chain whose rule count is right (and
      // whose rules match the forms learned when it was last verified):
      // comparing every rule of a 400k-rule table loosely costs seconds. The
      // shared chains, the entry points, are always compared rule by rule.
      for (let i = 0; i < want.length; i++) {
        const known = this.savedForm.get(want[i]!);
        if (known !== undefined && known !== saved[i]) return false;
      }
      for (let i = 0; i < want.length; i++) learned.set(want[i]!, saved[i]!);
      return true;
    }
    for (let i = 0; i < want.length; i++) {
      const w = want[i]!;
      const s = saved[i]!;
      const known = this.savedForm.get(w);
      if (known !== undefined ? known !== s : w !== s && looseKey(w) !== looseKey(s)) return false;
    }
    for (let i = 0; i < want.length; i++) learned.set(want[i]!, saved[i]!);
    return true;
  }
}

function sameRules(a: string[] | undefined, b: string[]): boolean {
  if (a === b) return true;
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The chains the base jump rules target that the ruleset itself does not
 * declare. Only IPv4 with localhost NodePorts writes KUBE-FIREWALL; elsewhere
 * (IPv6 above all) the INPUT/OUTPUT jumps to it rely on the chain existing.
 */
export function undeclaredJumpTargets(rs: IptablesRuleset): { table: TableName; chain: string }[] {
  const out: { table: TableName; chain: string }[] = [];
  const seen = new Set<string>();
  for (const j of rs.jumps) {
    const i = j.args.lastIndexOf('-j');
    const chain = i >= 0 ? j.args[i + 1] : undefined;
    if (!chain || rs.fixed[j.table].has(chain) || seen.has(`${j.table}/${chain}`)) continue;
    seen.add(`${j.table}/${chain}`);
    out.push({ table: j.table, chain });
  }
  return out;
}

/**
 * Declarations for the undeclared jump targets the kernel lacks (upstream's
 * EnsureChain before each jump). Only missing ones: a declaration flushes a
 * chain that exists, and KUBE-FIREWALL may hold kubelet's rules.
 */
function missingTargets(rs: IptablesRuleset, parsed: ReturnType<typeof parseSave>): string[] {
  return undeclaredJumpTargets(rs)
    .filter(({ table, chain }) => !parsed[table]?.chains.has(chain))
    .map(({ table, chain }) => `${table}\u0000:${chain} - [0:0]`);
}

/** The base jump rules the kernel lacks, as `-I CHAIN 1 …` lines in upstream's EnsureRule order. */
export function missingJumps(jumps: JumpRule[], parsed: ReturnType<typeof parseSave>): string[] {
  const out: string[] = [];
  for (const j of jumps) {
    const have = parsed[j.table]?.chains.get(j.chain) ?? [];
    const k = looseKey(jumpLine(j));
    if (have.some((r) => looseKey(r) === k)) continue;
    out.push(`${j.table}\u0000-I ${j.chain} 1 ${j.args.map(quoteArg).join(' ')}`);
  }
  return out;
}

function jumpTables(jumps: JumpRule[], lines: string[]): string {
  void jumps;
  const by: Record<string, string[]> = {};
  for (const l of lines) {
    const [t, rest] = l.split('\u0000') as [string, string];
    (by[t] ??= []).push(rest);
  }
  return Object.entries(by)
    .map(([t, ls]) => `*${t}\n${ls.join('\n')}\nCOMMIT\n`)
    .join('');
}
