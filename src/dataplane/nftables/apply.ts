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

// Listing a whole table makes nft 1.0.6 fetch every element into its cache, even with -t:
// at 10k services x 10 endpoints `nft -t list table` or even `nft list tables` takes 1.5-2.4 s
// and 220 MB. `list sets|maps|chains FAM` with -t leaves the elements out: 10 ms, 4 MB.
const listObjectsInput = (fam: string): string => `list sets ${fam}\nlist maps ${fam}\nlist chains ${fam}\n`;

/** The chains and sets (maps included) kproxy's table has now; null when there is no table. */
export async function listObjects(fam: 'ip' | 'ip6', nft = 'nft'): Promise<{ chains: string[]; sets: string[] } | null> {
  const r = await exec(nft, ['-t', '-f', '-'], { input: listObjectsInput(fam), allowFail: true, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`nft list sets/maps/chains ${fam}: ${r.stderr.trim()}`);
  return objectsOf(r.stdout, fam);
}

/** kproxy's chains and sets in `list sets/maps/chains` output (blocks per table); null when the table is not there. */
export function objectsOf(listing: string, fam: string): { chains: string[]; sets: string[] } | null {
  const chains: string[] = [];
  const sets: string[] = [];
  let seen = false;
  let ours = false;
  for (const m of listing.matchAll(/^(?:table\s+(\S+)\s+(\S+)|\s+(chain|set|map)\s+(\S+))\s*\{/gm)) {
    if (m[1] !== undefined) {
      ours = m[1] === fam && m[2] === TABLE;
      if (ours) seen = true;
    } else if (ours) (m[3] === 'chain' ? chains : sets).push(m[4]!);
  }
  return seen ? { chains, sets } : null;
}

/** Whether `table FAM kproxy` exists (cheap: lists chains, which needs no elements). */
export async function tableExists(fam: 'ip' | 'ip6', nft = 'nft'): Promise<boolean> {
  const r = await exec(nft, ['list', 'chains', fam], { allowFail: true, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft list chains ${fam}: ${r.stderr.trim()}`);
  return r.stdout.split('\n').some((l) => l.trim() === `table ${fam} ${TABLE} {`);
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
    const r = await exec(nft, ['list', 'chains'], { allowFail: true, timeoutMs: 10_000 });
    if (r.code === 0) return undefined;
    return r.stderr.trim() || `nft exited ${r.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}
