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

/** What a walk of a listing hands over: each set or map as it opens, each of its elements, and its end. */
export interface ListingVisitor {
  openSet(name: string): void;
  element(e: string): void;
  closeSet(): void;
}

/** Walks a listing into `v` and returns the rule count of each chain. */
export type ListingScan = (v: ListingVisitor) => Map<string, number>;

/** The form two elements are compared in: the kernel prints a one-address interval without its /32 or /128. */
export function comparable(e: string): string {
  return e.replace(/\/(32|128)(?=$| )/g, '');
}

/**
 * Reads `nft list table` text a line at a time, so neither the listing nor
 * one set's elements need to be held: each element goes to the visitor as its
 * line is read (the whole listing as a string, split and held per set, added
 * ~170 MiB to the agent's peak at 10k services).
 */
export class ListingScanner {
  /** Chain name → its rule count, once the listing is read. */
  readonly rules = new Map<string, number>();
  private kind = '';
  private name = '';
  private count = 0;
  private inElems = false;

  constructor(private readonly v: ListingVisitor) {}

  line(raw: string): void {
    const m = /^\t(set|map|chain) (\S+) \{$/.exec(raw);
    if (m) {
      [this.kind, this.name, this.count, this.inElems] = [m[1]!, m[2]!, 0, false];
      if (this.kind !== 'chain') this.v.openSet(this.name);
      return;
    }
    if (raw === '\t}') {
      if (this.kind === 'chain') this.rules.set(this.name, this.count);
      else if (this.kind) this.v.closeSet();
      this.kind = '';
      return;
    }
    if (!this.kind) return;
    let l = raw.trim();
    if (this.kind === 'chain') {
      if (l && !/^type \S+ hook /.test(l) && !l.startsWith('comment ')) this.count++;
      return;
    }
    if (!this.inElems) {
      if (!l.startsWith('elements = { ')) return;
      l = l.slice('elements = { '.length);
      this.inElems = true;
    }
    if (l.endsWith(' }')) {
      l = l.slice(0, -2);
      this.inElems = false;
    }
    for (const e of l.split(',')) {
      const t = e.trim();
      if (t) this.v.element(t);
    }
  }
}

/** A listing already in memory, as a scan. */
export function scanListing(text: string): ListingScan {
  return (v) => {
    const s = new ListingScanner(v);
    for (const l of text.split('\n')) s.line(l);
    return s.rules;
  };
}

/** A visitor that keeps every set's elements (for `kproxy doctor`, which shows them). */
function collect(sets: Map<string, Set<string>>): ListingVisitor {
  let cur = new Set<string>();
  return { openSet: (n) => sets.set(n, (cur = new Set())), element: (e) => cur.add(e), closeSet: () => undefined };
}

/** A whole listing in memory, parsed. */
export function parseLiveTable(text: string): LiveTable {
  const sets = new Map<string, Set<string>>();
  return { sets, rules: scanListing(text)(collect(sets)) };
}

/**
 * Streams `nft list table` of kproxy's table into `v` as nft prints it (the
 * agent's drift check: nothing of the listing outlives its line); the rule
 * counts per chain, or null when the table is missing.
 */
export async function streamListing(fam: 'ip' | 'ip6', v: ListingVisitor, nft = 'nft'): Promise<Map<string, number> | null> {
  const scanner = new ListingScanner(v);
  const r = await exec(nft, ['list', 'table', fam, TABLE], { allowFail: true, timeoutMs: 120_000, onStdoutLine: (l) => scanner.line(l) });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft list table ${fam} ${TABLE}: ${r.stderr.trim()}`);
  }
  return scanner.rules;
}

/** kproxy's table as the kernel has it; null when the table is missing. */
export async function readLiveTable(fam: 'ip' | 'ip6', nft = 'nft'): Promise<LiveTable | null> {
  const sets = new Map<string, Set<string>>();
  const rules = await streamListing(fam, collect(sets), nft);
  return rules === null ? null : { sets, rules };
}
