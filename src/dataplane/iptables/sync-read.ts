// Reading what the kernel holds, at any size. iptables-save on the nft
// backend (iptables 1.8.9) fetches rules chain by chain, and each fetch walks
// every chain of the table, so saving a 10,000-service table costs minutes
// (86k rules in 22k chains: 16 s here). So for a large nft table kproxy reads
// the chain list and rule counts with one `nft list table` (linear), and the
// text of only the chains it compares rule by rule (the shared chains and the
// built-in chains holding the jump rules) with `iptables -S CHAIN`. Service
// chains then come back as placeholders of the right length: enough to find
// missing, extra and truncated chains; a chain whose content must be verified
// is rewritten instead.
import type { IptablesTools } from './apply.js';
import { iptables, save } from './apply.js';
import { parseSave, type SavedTable } from './sync-save.js';
import { isServiceChain } from './sync-diff.js';
import { exec } from '../../util/exec.js';

/** Stands for a rule whose text was not read. Never equal to a real rule. */
export const UNREAD = '\u0000unread';

/** Above this many chains in a table, nft-backend reads use the listing instead of iptables-save. */
export const SAVE_CHAIN_LIMIT = 5000;

/** Chain → rule count from `nft list table` text (base chains included). */
export function parseNftCounts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let cur: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const m = /^chain (\S+) \{$/.exec(line);
    if (m) {
      cur = m[1]!;
      out.set(cur, 0);
      continue;
    }
    if (!cur) continue;
    if (line === '}') {
      cur = null;
      continue;
    }
    if (!line || line.startsWith('type ') || line.startsWith('policy ') || line.startsWith('comment ')) continue;
    out.set(cur, out.get(cur)! + 1);
  }
  return out;
}

/**
 * The tables, as parseSave would return them. `precise` lists the non-service
 * chains whose text is needed (others come back as UNREAD placeholders when
 * the table is large).
 */
export async function readKernel(tools: IptablesTools, tables: string[], precise: (table: string) => string[]): Promise<Record<string, SavedTable>> {
  if (tools.backend === 'legacy') return parseSave(await save(tools));
  const fam = tools.family === 'IPv6' ? 'ip6' : 'ip';
  const counts: Record<string, Map<string, number>> = {};
  let chains = 0;
  for (const t of tables) {
    const args = ['list', 'table', fam, t];
    const r = tools.wrap.length
      ? await exec(tools.wrap[0]!, [...tools.wrap.slice(1), 'nft', ...args], { allowFail: true, timeoutMs: 600_000 })
      : await exec('nft', args, { allowFail: true, timeoutMs: 600_000 });
    // A table that does not exist yet reads as empty.
    counts[t] = r.code === 0 ? parseNftCounts(r.stdout) : new Map();
    chains += counts[t].size;
  }
  if (chains < SAVE_CHAIN_LIMIT) return parseSave(await save(tools));
  const out: Record<string, SavedTable> = {};
  for (const t of tables) {
    const st: SavedTable = { chains: new Map(), policies: new Map() };
    const want = new Set(precise(t));
    for (const [name, n] of counts[t]!) {
      if (isServiceChain(name) || !want.has(name)) {
        st.chains.set(name, new Array<string>(n).fill(UNREAD));
        continue;
      }
      const r = await iptables(tools, ['-t', t, '-S', name], true);
      st.chains.set(
        name,
        r.stdout.split('\n').filter((l) => l.startsWith('-A ')),
      );
    }
    out[t] = st;
  }
  return out;
}
