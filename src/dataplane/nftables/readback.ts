// Reading kproxy's table back from the kernel, for the agent's drift check
// and for `kproxy doctor`: every element of every set and map as nft prints
// it, which is the text form kproxy writes ("10.96.0.1 . tcp . 80 . 0 :
// 10.244.1.5 . 8080"; a /32 interval printed bare), and the number of rules
// per chain. This is the one expensive listing: nft fetches every element (at
// 10k services x 10 endpoints, ~5 s and ~220 MB in the nft process), so it
// runs once per full-sync period, never per sync.
import { exec } from '../../util/exec.js';
import { TABLE } from './layout.js';

export interface LiveTable {
  /** Set or map name → its elements ("key" or "key : value"). */
  sets: Map<string, Set<string>>;
  /** Chain name → how many rules it has. */
  rules: Map<string, number>;
}

/** Hands each set's elements to `onSet`, one set at a time, and returns the rule count of each chain. */
export type ListingScan = (onSet: (name: string, elements: string[]) => void) => Map<string, number>;

/** The form two elements are compared in: the kernel prints a one-address interval without its /32 or /128. */
export function comparable(e: string): string {
  return e.replace(/\/(32|128)(?=$| )/g, '');
}

/**
 * Walks `nft list table` text: a set's or map's elements are handed over
 * when its block closes, so only one set's strings are alive at a time (the
 * JSON listing, parsed whole, added ~150 MiB to the agent at 10k services).
 */
export function scanListing(text: string): ListingScan {
  return (onSet) => {
    const rules = new Map<string, number>();
    let kind = '';
    let name = '';
    let count = 0;
    let elems: string[] = [];
    let inElems = false;
    for (const raw of text.split('\n')) {
      const m = /^\t(set|map|chain) (\S+) \{$/.exec(raw);
      if (m) {
        [kind, name, count, elems, inElems] = [m[1]!, m[2]!, 0, [], false];
        continue;
      }
      if (raw === '\t}') {
        if (kind === 'chain') rules.set(name, count);
        else if (kind) onSet(name, elems);
        kind = '';
        continue;
      }
      if (!kind) continue;
      let l = raw.trim();
      if (kind === 'chain') {
        if (l && !/^type \S+ hook /.test(l) && !l.startsWith('comment ')) count++;
        continue;
      }
      if (!inElems) {
        if (!l.startsWith('elements = { ')) continue;
        l = l.slice('elements = { '.length);
        inElems = true;
      }
      if (l.endsWith(' }')) {
        l = l.slice(0, -2);
        inElems = false;
      }
      for (const e of l.split(',')) {
        const t = e.trim();
        if (t) elems.push(t);
      }
    }
    return rules;
  };
}

/** A whole listing in memory (for `kproxy doctor`). */
export function parseLiveTable(text: string): LiveTable {
  const sets = new Map<string, Set<string>>();
  const rules = scanListing(text)((n, e) => sets.set(n, new Set(e)));
  return { sets, rules };
}

/** `nft list table` of kproxy's table; null when the table is missing. */
export async function readListing(fam: 'ip' | 'ip6', nft = 'nft'): Promise<string | null> {
  const r = await exec(nft, ['list', 'table', fam, TABLE], { allowFail: true, timeoutMs: 120_000 });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft list table ${fam} ${TABLE}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** kproxy's table as the kernel has it; null when the table is missing. */
export async function readLiveTable(fam: 'ip' | 'ip6', nft = 'nft'): Promise<LiveTable | null> {
  const text = await readListing(fam, nft);
  return text === null ? null : parseLiveTable(text);
}
