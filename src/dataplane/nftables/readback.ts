// Reading kproxy's table back from the kernel, for the agent's drift check
// and for `kproxy doctor`: every element of every set and map in the text
// form kproxy writes ("10.96.0.1 . tcp . 80 . 0 : 10.244.1.5 . 8080"), and
// the number of rules per chain. This is the one expensive listing: nft
// fetches every element (at 10k services x 10 endpoints, ~4 s and ~340 MB in
// the nft process), so it runs once per full-sync period, never per sync.
import { exec } from '../../util/exec.js';
import { TABLE } from './layout.js';

type Json = string | number | { concat?: Json[]; prefix?: { addr: string; len: number }; range?: Json[]; elem?: { val: Json } } | Json[];

export interface LiveTable {
  /** Set or map name → its elements ("key" or "key : value"). */
  sets: Map<string, Set<string>>;
  /** Chain name → how many rules it has. */
  rules: Map<string, number>;
}

/** One element of `nft -j` output in the text form kproxy writes. */
export function elementText(v: Json): string {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `${elementText(v[0]!)} : ${elementText(v[1]!)}`;
  if (v.concat) return v.concat.map(elementText).join(' . ');
  if (v.prefix) return `${v.prefix.addr}/${v.prefix.len}`;
  if (v.range) return `${elementText(v.range[0]!)}-${elementText(v.range[1]!)}`;
  if (v.elem) return elementText(v.elem.val);
  return JSON.stringify(v);
}

/** The form two elements are compared in: the kernel prints a one-address interval without its /32 or /128. */
export function comparable(e: string): string {
  return e.replace(/\/(32|128)(?=$| )/g, '');
}

/** `nft -j list table` output as sets and rule counts. */
export function parseLiveTable(json: string): LiveTable {
  const sets = new Map<string, Set<string>>();
  const rules = new Map<string, number>();
  for (const o of (JSON.parse(json) as { nftables: Record<string, { name?: string; chain?: string; elem?: Json[] }>[] }).nftables) {
    if (o.rule?.chain) rules.set(o.rule.chain, (rules.get(o.rule.chain) ?? 0) + 1);
    else if (o.chain?.name && !rules.has(o.chain.name)) rules.set(o.chain.name, 0);
    const s = o.set ?? o.map;
    if (s?.name) sets.set(s.name, new Set((s.elem ?? []).map(elementText)));
  }
  return { sets, rules };
}

/** kproxy's table as the kernel has it; null when the table is missing. */
export async function readLiveTable(fam: 'ip' | 'ip6', nft = 'nft'): Promise<LiveTable | null> {
  const r = await exec(nft, ['-j', 'list', 'table', fam, TABLE], { allowFail: true, timeoutMs: 120_000 });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft -j list table ${fam} ${TABLE}: ${r.stderr.trim()}`);
  }
  return parseLiveTable(r.stdout);
}
