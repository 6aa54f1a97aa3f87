// The netfilter tracer's public surface: load a dump (either format), trace a packet.
import { looksLikeListing, parseListing } from './parse-listing.js';
import { looksLikeSave, parseSave } from './parse-save.js';
import { RulesetParseError, type Ruleset, type TableName } from './ruleset.js';

export { parseSave } from './parse-save.js';
export { parseListing } from './parse-listing.js';
export { parseIpsetSave } from './ipset.js';
export { trace, TraceInputError } from './simulate.js';
export type { TraceRequest, TraceResult, Outcome, ReplyOutcome } from './simulate.js';
export type { Ruleset, Rule, Chain, Table, Match, Target } from './ruleset.js';
export { RulesetParseError } from './ruleset.js';

export interface LoadOptions {
  source?: string;
  /** For listings that cannot tell their table. */
  table?: TableName;
  family?: 4 | 6;
}

/** Reads iptables-save / ip6tables-save output or an `iptables -L` listing, whichever the text is. */
export function loadRuleset(text: string, opts: LoadOptions = {}): Ruleset {
  if (looksLikeSave(text)) return parseSave(text, opts);
  if (looksLikeListing(text)) return parseListing(text, opts);
  const first = text.split('\n').findIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  throw new RulesetParseError(
    first < 0 ? 1 : first + 1,
    'neither iptables-save output (no "*table" line) nor an iptables -L listing (no "Chain NAME (policy …)" line)',
    opts.source,
  );
}
