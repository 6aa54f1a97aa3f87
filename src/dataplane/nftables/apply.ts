// Talking to the kernel through the `nft` tool: one `nft -f -` per
// transaction (atomic: a failed one changes nothing), a terse listing of the
// table's chains and sets for full syncs, and the table list for the canary.
import { exec } from '../../util/exec.js';
import { TABLE } from './layout.js';

export class NftError extends Error {
  constructor(
    message: string,
    /** The transaction lines nft complained about, numbered ("12: add element …"). */
    readonly lines: string[],
  ) {
    super(message);
    this.name = 'NftError';
  }
}

/** A transaction line as the log names it: its number and text (cut at 300 characters). */
export function numberedLine(n: number, line: string): string {
  return `${n}: ${line.length > 300 ? line.slice(0, 300) + '…' : line}`;
}

/** nft reports "/dev/stdin:LINE:COL-COL: Error: …"; the lines named, with their text. */
export function failingLines(stderr: string, text: string): string[] {
  const all = text.split('\n');
  const seen = new Set<number>();
  const out: string[] = [];
  for (const m of stderr.matchAll(/^(?:\/dev\/stdin|-):(\d+):/gm)) {
    const n = Number(m[1]);
    if (seen.has(n)) continue;
    seen.add(n);
    out.push(numberedLine(n, all[n - 1] ?? ''));
    if (out.length >= 5) break;
  }
  return out;
}

export async function runNft(text: string, nft = 'nft'): Promise<void> {
  if (text === '') return;
  const r = await exec(nft, ['-f', '-'], { input: text, allowFail: true, timeoutMs: 120_000 });
  if (r.code === 0) return;
  const err = r.stderr.trim();
  const lines = failingLines(err, text);
  const first = err.split('\n').find((l) => /Error:/.test(l)) ?? err.split('\n')[0] ?? `exit ${r.code}`;
  throw new NftError(`nft -f failed: ${first.replace(/^\S+:\d+:\d+(-\d+)?: /, '')}`, lines);
}

/** The chains and sets (maps included) kproxy's table has now; null when there is no table. */
export async function listObjects(fam: 'ip' | 'ip6', nft = 'nft'): Promise<{ chains: string[]; sets: string[] } | null> {
  const r = await exec(nft, ['-t', 'list', 'table', fam, TABLE], { allowFail: true, timeoutMs: 60_000 });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft list table ${fam} ${TABLE}: ${r.stderr.trim()}`);
  }
  const chains: string[] = [];
  const sets: string[] = [];
  for (const m of r.stdout.matchAll(/^\s*(chain|set|map)\s+(\S+)\s*\{/gm)) (m[1] === 'chain' ? chains : sets).push(m[2]!);
  return { chains, sets };
}

/** Whether `table FAM kproxy` exists (cheap: lists table names only). */
export async function tableExists(fam: 'ip' | 'ip6', nft = 'nft'): Promise<boolean> {
  const r = await exec(nft, ['list', 'tables', fam], { allowFail: true, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft list tables: ${r.stderr.trim()}`);
  return r.stdout.split('\n').some((l) => l.trim() === `table ${fam} ${TABLE}`);
}

/** Deletes kproxy's table of a family; false when there was none. */
export async function deleteTable(fam: 'ip' | 'ip6', nft = 'nft'): Promise<boolean> {
  const r = await exec(nft, ['delete', 'table', fam, TABLE], { allowFail: true, timeoutMs: 30_000 });
  if (r.code === 0) return true;
  if (/No such file or directory/.test(r.stderr)) return false;
  throw new Error(`nft delete table ${fam} ${TABLE}: ${r.stderr.trim()}`);
}

/** Whether nft works here at all (tool present, kernel with nf_tables). */
export async function nftUsable(nft = 'nft'): Promise<string | undefined> {
  try {
    const r = await exec(nft, ['list', 'tables'], { allowFail: true, timeoutMs: 10_000 });
    if (r.code === 0) return undefined;
    return r.stderr.trim() || `nft exited ${r.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}
