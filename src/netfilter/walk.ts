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
  const work: Item[] = [{ b: b0, stack: [{ chain: base, idx: 0, gotos: null }] }];
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
        if (t.kind === 'jump') stack.push({ chain: next, idx: 0, gotos: null });
        else {
          const gotos = new Set(frame.gotos ?? []);
          gotos.add(chain.name);
          stack[stack.length - 1] = { chain: next, idx: 0, gotos };
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
