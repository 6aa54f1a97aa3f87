// The rules and user chains of an iptables-save dump (parse-save.ts), made on
// demand. Every rule is parsed when the dump is loaded, so a malformed one is
// an error naming its line before any trace; what is kept is much less than the
// parse produced. A 500,000-line dump holds 360,000 rules in 140,000 chains, and
// a trace reads a few of them: KUBE-SERVICES (indexed by destination) and the
// chains a packet reaches. Making and keeping every Rule cost more time (in
// allocation, GC and fresh memory) than parsing the text did.
import { parseRuleArgs, tokenize, type Tokens } from './parse-rule.js';
import type { Chain, Match, Rule, TableName, Target } from './ruleset.js';

/** "[p:b] -A …": the counters iptables-save -c writes before a rule, and where the command starts. */
export function counterPrefix(line: string, tokens: Tokens): { counters?: [bigint, bigint]; start: number } {
  const cm = line.charCodeAt(0) === 91 ? /^\[(\d+):(\d+)\]$/.exec(tokens.words[0] ?? '') : null;
  return cm ? { counters: [BigInt(cm[1]!), BigInt(cm[2]!)], start: 1 } : { start: 0 };
}

/**
 * A rule: its text and target. Its matches, most of a parsed rule's memory (about 1 KB),
 * are parsed again, once, when first read; the parse cannot fail the second time.
 */
export class SavedRule implements Rule {
  counters?: { packets: bigint; bytes: bigint };

  constructor(
    readonly table: TableName,
    readonly chain: string,
    readonly line: number,
    readonly text: string,
    readonly target: Target | null,
    readonly unmodelled: string[],
    /** Where the rule's arguments start among the words of its line. */
    private readonly argStart: number,
    private parsed?: Match[],
  ) {}

  get spec(): string {
    return this.text;
  }

  get matches(): Match[] {
    return (this.parsed ??= parseRuleArgs(tokenize(this.text), this.argStart).matches);
  }
}

/** True for the rules inferLocalAddresses (infer.ts) reads: a SNAT, or a jump to KUBE-NODEPORTS. */
function namesNodeAddresses(t: Target | null): boolean {
  return t !== null && (t.kind === 'SNAT' || (t.kind === 'jump' && t.chain === 'KUBE-NODEPORTS'));
}

/**
 * A user chain whose rules, appended at load, are made when first asked for. Until then
 * each is three numbers: its line's offset in the dump, its line number and where its
 * arguments start.
 */
export class SavedChain implements Chain {
  readonly builtin = false;
  policy?: 'ACCEPT' | 'DROP';
  counters?: { packets: bigint; bytes: bigint };
  references?: number;
  private made: Rule[] = [];
  private pending: number[] = [];
  private namesAddresses = false;

  constructor(
    readonly table: TableName,
    readonly name: string,
    public line: number,
    private readonly dump: string,
  ) {}

  get rules(): Rule[] {
    if (this.pending.length > 0) this.make();
    return this.made;
  }

  set rules(rules: Rule[]) {
    this.made = rules;
    this.pending = [];
    this.namesAddresses = false;
  }

  get size(): number {
    return this.made.length + this.pending.length / 3;
  }

  /** False when no rule is one inferLocalAddresses reads (known without making the rules); undefined once made. */
  get mayNameNodeAddresses(): boolean | undefined {
    return this.pending.length > 0 ? this.namesAddresses : undefined;
  }

  /** Appends a rule parsed at load, to be made later; false when the chain's rules are made already (append one instead). */
  defer(offset: number, lineNo: number, argStart: number, target: Target | null): boolean {
    if (this.made.length > 0) return false;
    this.pending.push(offset, lineNo, argStart);
    if (namesNodeAddresses(target)) this.namesAddresses = true;
    return true;
  }

  private make(): void {
    const p = this.pending;
    this.pending = [];
    const made: Rule[] = [];
    for (let i = 0; i < p.length; i += 3) made.push(this.ruleAt(p[i]!, p[i + 1]!, p[i + 2]!));
    this.made = made;
  }

  /** The rule on the line at `offset`, exactly as parseSave read it. */
  private ruleAt(offset: number, lineNo: number, argStart: number): Rule {
    let end = this.dump.indexOf('\n', offset);
    if (end < 0) end = this.dump.length;
    if (this.dump.charCodeAt(end - 1) === 13) end--; // \r
    const line = this.dump.slice(offset, end).trim();
    const tokens = tokenize(line);
    const parsed = parseRuleArgs(tokens, argStart);
    const rule = new SavedRule(this.table, this.name, lineNo, line, parsed.target, parsed.unmodelled, argStart, parsed.matches);
    const c = parsed.counters ?? counterPrefix(line, tokens).counters;
    if (c) rule.counters = { packets: c[0], bytes: c[1] };
    return rule;
  }
}
