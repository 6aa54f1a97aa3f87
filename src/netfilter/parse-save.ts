// iptables-save / ip6tables-save output (and iptables-restore payloads, which
// are the same language plus -I/-N/-X/-F/-P) → Ruleset. Errors name the line.
import { parseRuleArgs, tokenize } from './parse-rule.js';
import { emptyTable, isTableName, RulesetParseError, type Chain, type Rule, type Ruleset, type Table, type TableName } from './ruleset.js';
import { counterPrefix, SavedChain, SavedRule } from './saved.js';

export interface ParseOptions {
  /** A name for the input in error messages (a file name, "stdin"). */
  source?: string;
  /** Force the family; otherwise taken from the header or the first address. */
  family?: 4 | 6;
}

/** "[0:0]", what most chain lines carry: one shared (frozen) object instead of two bigints each. */
const ZERO_COUNTERS = Object.freeze({ packets: 0n, bytes: 0n });

export function looksLikeSave(text: string): boolean {
  return /^\s*\*(raw|mangle|nat|filter|security)\s*$/m.test(text);
}

export function parseSave(text: string, opts: ParseOptions = {}): Ruleset {
  const tables = new Map<TableName, Table>();
  const warnings: Ruleset['warnings'] = [];
  let family: 4 | 6 | undefined = opts.family;
  if (!family && /^#.*ip6tables-save/m.test(text.slice(0, 2000))) family = 6;
  let table: Table | null = null;
  let lastChain: Chain | null = null;
  /** Jumps to chains not declared yet (a restore payload may -N them later), checked at COMMIT: [chain, line]. */
  let pendingJumps: [string, number][] = [];
  const err = (line: number, msg: string): never => {
    throw new RulesetParseError(line, msg, opts.source);
  };

  const commit = (line: number): void => {
    const t = table!;
    for (const [name, l] of pendingJumps)
      if (!t.chains.has(name)) err(l, `jump to chain "${name}", which does not exist in table ${t.name}`);
    pendingJumps = [];
    table = null;
    void line;
  };

  // Line by line without split(): no array of 500,000 lines held through the whole parse.
  let lineNo = 0;
  for (let pos = 0; pos <= text.length; ) {
    lineNo++;
    const lineStart = pos;
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    let raw = text.slice(pos, nl);
    pos = nl + 1;
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    const line = raw.trim();
    if (line === '' || line[0] === '#') continue;
    const c0 = line[0];
    if (c0 === '*') {
      if (table) err(lineNo, `table ${(table as Table).name} (line ${(table as Table).line}) has no COMMIT before "${line}"`);
      const name = line.slice(1).trim();
      if (!isTableName(name)) err(lineNo, `unknown table "${name}"`);
      const t = tables.get(name as TableName) ?? emptyTable(name as TableName, lineNo);
      tables.set(t.name, t);
      table = t;
      continue;
    }
    if (line === 'COMMIT') {
      if (!table) err(lineNo, 'COMMIT outside a table');
      commit(lineNo);
      continue;
    }
    if (!table) err(lineNo, `"${line.slice(0, 40)}" before any *table line`);
    const t = table as Table;
    if (c0 === ':') {
      // :NAME POLICY [packets:bytes]
      // Fast path for ":NAME POLICY [p:b]" with single spaces (what iptables-save writes).
      const sp1 = line.indexOf(' ');
      const sp2 = sp1 > 0 ? line.indexOf(' ', sp1 + 1) : -1;
      const simple = sp2 > sp1 + 1 && line.indexOf(' ', sp2 + 1) < 0 && line.charCodeAt(sp2 + 1) === 91 && line.endsWith(']');
      // "[0:0]" (nearly every line of a large dump) needs no split and no digit checks.
      const zero = simple && line.length === sp2 + 6 && line.endsWith('[0:0]');
      const m = zero
        ? [line, line.slice(1, sp1), line.slice(sp1 + 1, sp2), '0', '0']
        : simple
          ? ([line, line.slice(1, sp1), line.slice(sp1 + 1, sp2), ...line.slice(sp2 + 2, -1).split(':')] as (string | undefined)[])
          : /^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$/.exec(line);
      if (!m || (simple && !zero && ((!/^\d+$/.test(m[3] ?? '') && m[3] !== undefined) || (m[4] !== undefined && !/^\d+$/.test(m[4])))))
        err(lineNo, `malformed chain line "${line}"`);
      const [, name, policy, pk, by] = m!;
      const existing = t.chains.get(name!);
      const builtin = existing?.builtin ?? false;
      if (!builtin && policy !== '-') err(lineNo, `user chain ${name} cannot have policy ${policy}`);
      if (builtin && policy !== 'ACCEPT' && policy !== 'DROP') err(lineNo, `bad policy "${policy}" for ${name}`);
      const counters = pk === undefined ? undefined : pk === '0' && by === '0' ? ZERO_COUNTERS : { packets: BigInt(pk), bytes: BigInt(by!) };
      if (!existing) {
        const chain = new SavedChain(t.name, name!, lineNo, text);
        if (counters) chain.counters = counters;
        t.chains.set(name!, chain);
        continue;
      }
      existing.line = lineNo;
      if (builtin) existing.policy = policy as 'ACCEPT' | 'DROP';
      if (counters) existing.counters = counters;
      // A restore payload re-declaring a chain flushes it.
      existing.rules = [];
      continue;
    }
    let tokens;
    try {
      tokens = tokenize(line);
    } catch (e) {
      return err(lineNo, (e as Error).message);
    }
    const { counters, start } = counterPrefix(line, tokens);
    const cmd = tokens.words[start];
    const chainName = tokens.words[start + 1];
    if (!cmd || !chainName) err(lineNo, `cannot read "${line.slice(0, 60)}"`);
    switch (cmd) {
      case '-A':
      case '--append':
      case '-I':
      case '--insert': {
        // Consecutive rules are usually in the same chain: skip the map lookup.
        const chain: Chain | undefined = lastChain && lastChain.name === chainName && lastChain.table === t.name ? lastChain : t.chains.get(chainName!);
        lastChain = chain ?? null;
        if (!chain) err(lineNo, `rule for chain "${chainName}", which was not declared in table ${t.name}`);
        let argStart = start + 2;
        const size = chain instanceof SavedChain ? chain.size : chain!.rules.length;
        let pos = size;
        if (cmd === '-I' || cmd === '--insert') {
          pos = 0;
          const n = tokens.words[argStart];
          if (n && /^\d+$/.test(n)) {
            pos = Number(n) - 1;
            argStart++;
          }
        }
        let parsed;
        try {
          parsed = parseRuleArgs(tokens, argStart);
        } catch (e) {
          return err(lineNo, (e as Error).message);
        }
        if (!family) {
          for (const m of parsed.matches) if (m.kind === 'addr') family = m.cidr.family;
          const tg = parsed.target;
          if (!family && tg && (tg.kind === 'DNAT' || tg.kind === 'SNAT') && tg.to[0]?.from) family = tg.to[0].from.family;
        }
        if (parsed.target && (parsed.target.kind === 'jump' || parsed.target.kind === 'goto')) {
          if (t.name !== 'nat' && (parsed.target.chain === 'DNAT' || parsed.target.chain === 'SNAT')) err(lineNo, `${parsed.target.chain} is only valid in the nat table`);
          // A chain declared before its rules (as iptables-save writes them) is there at COMMIT too:
          // -X refuses a chain that rules still jump to.
          if (!t.chains.has(parsed.target.chain)) pendingJumps.push([parsed.target.chain, lineNo]);
        }
        // Appended to a user chain: kept as where it is in the text (saved.ts) until the chain is read.
        if (pos === size && chain instanceof SavedChain && chain.defer(lineStart, lineNo, argStart, parsed.target)) break;
        // The chain's own name string, not this line's slice of it.
        const rule: Rule = new SavedRule(t.name, chain!.name, lineNo, line, parsed.target, parsed.unmodelled, argStart);
        const c = parsed.counters ?? counters;
        if (c) rule.counters = { packets: c[0], bytes: c[1] };
        if (pos === size) chain!.rules.push(rule);
        else chain!.rules.splice(pos, 0, rule);
        break;
      }
      case '-N':
      case '--new-chain':
        if (t.chains.has(chainName!)) err(lineNo, `chain ${chainName} already exists`);
        t.chains.set(chainName!, new SavedChain(t.name, chainName!, lineNo, text));
        break;
      case '-X':
      case '--delete-chain': {
        const chain = t.chains.get(chainName!);
        if (!chain) err(lineNo, `cannot delete chain ${chainName}: it does not exist`);
        if (chain!.builtin) err(lineNo, `cannot delete built-in chain ${chainName}`);
        t.chains.delete(chainName!);
        lastChain = null;
        pendingJumps = pendingJumps.filter(([n]) => n !== chainName);
        for (const other of t.chains.values())
          for (const r of other.rules)
            if (r.target && (r.target.kind === 'jump' || r.target.kind === 'goto') && r.target.chain === chainName)
              err(lineNo, `deleted chain ${chainName} is referenced by line ${r.line}`);
        break;
      }
      case '-F':
      case '--flush': {
        const chain = t.chains.get(chainName!);
        if (!chain) err(lineNo, `cannot flush chain ${chainName}: it does not exist`);
        chain!.rules = [];
        break;
      }
      case '-P':
      case '--policy': {
        const chain = t.chains.get(chainName!);
        const pol = tokens.words[start + 2];
        if (!chain?.builtin || (pol !== 'ACCEPT' && pol !== 'DROP')) err(lineNo, `bad policy line "${line}"`);
        chain!.policy = pol as 'ACCEPT' | 'DROP';
        break;
      }
      default:
        err(lineNo, `unknown command "${cmd}" (expected -A, -I, -N, -X, -F, -P, a :chain line or COMMIT)`);
    }
  }
  if (table) err(lineNo, `table ${(table as Table).name} (line ${(table as Table).line}) has no COMMIT: the dump is truncated`);
  if (tables.size === 0) err(1, 'no *table line: this is not iptables-save output');
  return { family: family ?? 4, format: 'save', tables, warnings, lineCount: lineNo };
}
