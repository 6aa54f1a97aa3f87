// Reading what the kernel holds, at any size. iptables-save on the nft
// backend (iptables 1.8.9) fetches rules chain by chain, and each fetch walks
// every chain of the table, so saving a 10,000-service table costs minutes
// (86k rules in 22k chains: 16 s here). So for a large nft table kproxy reads
// the chain list with one `nft list chains` (linear), and the text of only the chains it compares rule by rule (the shared chains and the
// built-in chains holding the jump rules) with `iptables -S CHAIN`. (`nft
// list table` is no way out: 16 s at 2,000 services too.) Service chains then
// come back as "exists, rules not read": enough to find missing and extra
// chains; a chain whose content must be verified is rewritten instead.
import type { IptablesTools } from './apply.js';
import { iptables, save } from './apply.js';
import { parseSave, type SavedTable } from './sync-save.js';
import { isServiceChain } from './sync-diff.js';
import { exec } from '../../util/exec.js';

/** Stands for a chain whose rules were not read (only its existence is known). */
export const UNREAD_CHAIN: string[] = Object.freeze([]) as unknown as string[];

/** Above this many chains, nft-backend reads use the chain list instead of iptables-save. */
export const SAVE_CHAIN_LIMIT = 5000;

/** Table → chain names, from `nft list chains <family>`. */
export function parseNftChains(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table: string[] | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const t = /^table \S+ (\S+) \{$/.exec(line);
    if (t) {
      out.set(t[1]!, (table = []));
      continue;
    }
    const c = /^chain (\S+) \{$/.exec(line);
    if (c && table) table.push(c[1]!);
  }
  return out;
}

/**
 * The tables, as parseSave would return them. `precise(table)` lists the
 * non-service chains whose text is needed; on a large nft table every other
 * chain comes back as UNREAD_CHAIN (it exists; its rules were not read).
 */
export async function readKernel(tools: IptablesTools, tables: string[], precise: (table: string) => string[]): Promise<Record<string, SavedTable>> {
  if (tools.backend === 'legacy') return parseSave(await save(tools));
  const fam = tools.family === 'IPv6' ? 'ip6' : 'ip';
  const args = ['list', 'chains', fam];
  const r = tools.wrap.length
    ? await exec(tools.wrap[0]!, [...tools.wrap.slice(1), 'nft', ...args], { allowFail: true, timeoutMs: 600_000 })
    : await exec('nft', args, { allowFail: true, timeoutMs: 600_000 });
  if (r.code !== 0) return parseSave(await save(tools));
  const listed = parseNftChains(r.stdout);
  let chains = 0;
  for (const t of tables) chains += listed.get(t)?.length ?? 0;
  if (chains < SAVE_CHAIN_LIMIT) return parseSave(await save(tools));
  const out: Record<string, SavedTable> = {};
  for (const t of tables) {
    const st: SavedTable = { chains: new Map(), policies: new Map() };
    const want = new Set(precise(t));
    for (const name of listed.get(t) ?? []) {
      if (isServiceChain(name) || !want.has(name)) {
        st.chains.set(name, UNREAD_CHAIN);
        continue;
      }
      const rr = await iptables(tools, ['-t', t, '-S', name], true);
      st.chains.set(
        name,
        rr.stdout.split('\n').filter((l) => l.startsWith('-A ')),
      );
    }
    out[t] = st;
  }
  return out;
}
