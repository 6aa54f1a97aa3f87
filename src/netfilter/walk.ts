// Walking one table's chain for one hook: rules in order, jumps and gotos on an
// explicit stack (never the JS stack), statistic branches forked with their
// probabilities, un-modelled matches forked both ways and flagged. Loops stop
// with a LOOP verdict; a step budget bounds everything else.
import { hostPort, type Addr } from './addr.js';
import { evalMatch, UNKNOWN, UNKNOWN_IFACE } from './matches.js';
import type { Chain, Rule, Table, TableName } from './ruleset.js';
import { applyTarget } from './targets.js';
import { cloneBranch, type Branch, type Env, type Verdict } from './state.js';

export interface TableResult {
  b: Branch;
  /** ACCEPT: go on to the next table/hook. Anything else ends the branch. */
  verdict: Verdict;
}

interface Frame {
  chain: Chain;
  idx: number;
  /** Chains entered by -g from this frame's level (a goto loop never grows the stack). */
  gotos: Set<string> | null;
  /** For long chains: the indexes of the only rules that can match this destination, in order. */
  cand: number[] | null;
  ci: number;
}

const INDEX_MIN_RULES = 64;

interface DstIndex {
  byDst: Map<number, number[]>;
  /** Rules without a positive host -d match: they must always be evaluated. */
  others: number[];
}

const indexes = new WeakMap<Chain, DstIndex | null>();

/** Long chains (KUBE-SERVICES) are indexed by the IPv4 host of a positive -d match, so a trace need not scan them. */
function dstIndex(chain: Chain): DstIndex | null {
  let ix = indexes.get(chain);
  if (ix !== undefined) return ix;
  ix = null;
  if (chain.rules.length >= INDEX_MIN_RULES) {
    ix = { byDst: new Map(), others: [] };
    chain.rules.forEach((r, i) => {
      const m = r.matches.find((x) => x.kind === 'addr' && x.dir === 'dst' && !x.neg && x.cidr.family === 4 && x.cidr.prefix === 32);
      if (m && m.kind === 'addr') {
        const l = ix!.byDst.get(m.cidr.v4net);
        if (l) l.push(i);
        else ix!.byDst.set(m.cidr.v4net, [i]);
      } else ix!.others.push(i);
    });
  }
  indexes.set(chain, ix);
  return ix;
}

function frameFor(chain: Chain, b: Branch): Frame {
  const ix = dstIndex(chain);
  if (!ix || b.pkt.family !== 4) return { chain, idx: 0, gotos: null, cand: null, ci: 0 };
  const hits = ix.byDst.get(b.pkt.dst.v4);
  let cand: number[];
  if (!hits) cand = ix.others;
  else {
    // Merge two sorted lists.
    cand = [];
    let a = 0;
    let o = 0;
    while (a < hits.length || o < ix.others.length) {
      if (o >= ix.others.length || (a < hits.length && hits[a]! < ix.others[o]!)) cand.push(hits[a++]!);
      else cand.push(ix.others[o++]!);
    }
  }
  return { chain, idx: 0, gotos: null, cand, ci: 0 };
}

interface Item {
  b: Branch;
  stack: Frame[];
}

export class TraceLimitError extends Error {}

/** The kernel refuses jump depths beyond this on load; we stop there too. */
const MAX_DEPTH = 256;

export function ruleLabel(r: Rule): string {
  return r.text;
}

export function uncertainty(b: Branch, table: TableName, chain: string, rule: Rule | null, reason: string): void {
  b.uncertain.push({ line: rule?.line ?? null, table, chain, rule: rule?.text ?? '', reason });
}

export function walkTable(env: Env, b0: Branch, tableName: TableName, hook: string, counter: { forks: number }): TableResult[] {
  const table: Table | undefined = env.rs.tables.get(tableName);
  const base = table?.chains.get(hook);
  if (!base) return [{ b: b0, verdict: 'ACCEPT' }];
  const results: TableResult[] = [];
  const work: Item[] = [{ b: b0, stack: [frameFor(base, b0)] }];
  const fork = (b: Branch): Branch => {
    if (++counter.forks > env.maxBranches)
      throw new TraceLimitError(`more than ${env.maxBranches} branches: the trace was stopped (raise the limit or narrow the packet)`);
    return cloneBranch(b);
  };

  while (work.length > 0) {
    const item = work.pop()!;
    const { b, stack } = item;
    let done = false;
    while (!done) {
      const frame = stack[stack.length - 1]!;
      const chain = frame.chain;
      if (frame.cand) frame.idx = frame.ci < frame.cand.length ? frame.cand[frame.ci++]! : chain.rules.length;
      if (frame.idx >= chain.rules.length) {
        // End of chain: a user chain returns to its caller, a built-in chain applies its policy.
        if (stack.length > 1 && !chain.builtin) {
          stack.pop();
          continue;
        }
        const policy = chain.policy ?? 'ACCEPT';
        if (chain.rules.length > 0 || policy !== 'ACCEPT')
          b.path.push({ kind: 'policy', table: tableName, chain: chain.name, line: chain.line || null, rule: `policy ${policy}`, effect: policy, hook });
        results.push({ b, verdict: policy });
        done = true;
        continue;
      }
      const rule = chain.rules[frame.idx++]!;
      if (--b.budget <= 0) {
        b.notes.push('the step budget ran out: the rules loop or are too deep');
        b.path.push({ kind: 'note', table: tableName, chain: chain.name, line: rule.line, rule: 'stopped: step budget exhausted (loop?)', hook });
        results.push({ b, verdict: 'LOOP' });
        done = true;
        continue;
      }
      // Evaluate the matches in order; a definite "no" anywhere wins over an unknown.
      let p = 1;
      let unknownWhy: string | null = null;
      let noteWhy: string | null = null;
      let no = false;
      const ms = rule.matches;
      for (let k = 0; k < ms.length; k++) {
        const r = evalMatch(ms[k]!, b, env, hook);
        if (r.p === 0) {
          no = true;
          break;
        }
        if (r.p === UNKNOWN) unknownWhy ??= r.why ?? 'un-modelled match';
        else if (r.p < 1) {
          p *= r.p;
          if (r.why) noteWhy = r.why;
        }
      }
      if (no) continue;
      let taken = b;
      if (unknownWhy) {
        // Follow both: the rule matched, and it did not.
        const other = fork(b);
        uncertainty(other, tableName, chain.name, rule, `${unknownWhy}; assumed it does not match`);
        other.path.push({ kind: 'not-taken', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: 'assumed not to match (un-modelled)', hook });
        work.push({ b: other, stack: stack.map((f) => ({ ...f })) });
        uncertainty(b, tableName, chain.name, rule, `${unknownWhy}; assumed it matches`);
      }
      if (p < 1) {
        const miss = fork(b);
        miss.prob *= 1 - p;
        miss.path.push({ kind: 'not-taken', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: `not chosen (p=${fmtP(1 - p)})`, hook });
        if (noteWhy && !miss.notes.includes(noteWhy)) miss.notes.push(noteWhy);
        work.push({ b: miss, stack: stack.map((f) => ({ ...f })) });
        taken.prob *= p;
        if (noteWhy && !taken.notes.includes(noteWhy)) taken.notes.push(noteWhy);
      }
      const t = rule.target;
      if (!t) {
        taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: p < 1 ? `matched (p=${fmtP(p)}), no target` : 'matched, no target', hook });
        continue;
      }
      const pTxt = p < 1 ? ` (p=${fmtP(p)})` : '';
      if (t.kind === 'jump' || t.kind === 'goto') {
        const next = table!.chains.get(t.chain);
        if (!next) {
          uncertainty(taken, tableName, chain.name, rule, `chain ${t.chain} is not in the dump; assumed it returns without effect`);
          taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: `${t.kind} ${t.chain} (missing)${pTxt}`, hook });
          continue;
        }
        const inStack = stack.some((f) => f.chain.name === t.chain) || (frame.gotos?.has(t.chain) ?? false);
        if (inStack || stack.length >= MAX_DEPTH) {
          taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: `${t.kind} ${t.chain}: LOOP`, hook });
          taken.notes.push(`loop: ${tableName} ${t.chain} is already being traversed (line ${rule.line}); the kernel would refuse this ruleset (ELOOP)`);
          results.push({ b: taken, verdict: 'LOOP' });
          done = true;
          continue;
        }
        taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: `${t.kind === 'jump' ? 'jump' : 'goto'} ${t.chain}${pTxt}`, hook });
        if (t.kind === 'jump') stack.push(frameFor(next, taken));
        else {
          const gotos = new Set(frame.gotos ?? []);
          gotos.add(chain.name);
          stack[stack.length - 1] = { ...frameFor(next, taken), gotos };
        }
        continue;
      }
      if (t.kind === 'RETURN') {
        taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: `RETURN${pTxt}`, hook });
        if (stack.length > 1) {
          stack.pop();
          continue;
        }
        // RETURN from a built-in chain: its policy decides.
        frame.idx = chain.rules.length;
        frame.cand = null;
        continue;
      }
      const res = applyTarget(env, taken, t, tableName, hook, rule);
      taken.path.push({ kind: 'rule', table: tableName, chain: chain.name, line: rule.line, rule: rule.text, effect: res.effect + pTxt, hook });
      if (res.verdict) {
        results.push({ b: taken, verdict: res.verdict });
        done = true;
      }
    }
  }
  return results;
}

export function fmtP(p: number): string {
  return Number(p.toPrecision(6)).toString();
}

export function fmtHostPort(a: Addr, port: number | undefined): string {
  return hostPort(a, port);
}

export { UNKNOWN_IFACE };
