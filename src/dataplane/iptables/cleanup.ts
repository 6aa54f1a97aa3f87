// `kproxy run --cleanup` (upstream CleanupLeftovers, pkg/proxy/iptables/cleanup.go):
// delete the base jump rules, then flush and delete kube-proxy's chains in
// nat and filter, and the mangle canary. KUBE-FIREWALL stays: kubelet owns
// it too. Nothing else is touched.
import type { IptablesRuleset } from './model.js';
import { renderFamily } from './render.js';
import { emptyState } from '../../k8s/load.js';
import { restore, save, type IptablesTools } from './apply.js';
import { isServiceChain } from './sync-diff.js';
import { jumpLine } from './sync.js';
import { looseKey, parseSave } from './sync-save.js';
import { CANARY_CHAIN } from './canary.js';

const NAT_CHAINS = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', CANARY_CHAIN];
const FILTER_CHAINS = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', CANARY_CHAIN];

/** The jump rules upstream's cleanup deletes (iptablesJumpChains: not kubelet's KUBE-FIREWALL jumps). */
function cleanupJumps(family: IptablesTools['family']): IptablesRuleset['jumps'] {
  const rs = renderFamily(emptyState(), { nodeName: '', nodeIPs: [], families: [family] }, family);
  return rs.jumps.filter((j) => !j.args.includes('KUBE-FIREWALL'));
}

/** The restore payload that removes everything kube-proxy created, given an iptables-save of the host. */
export function cleanupPayload(savedText: string, family: IptablesTools['family']): string {
  const parsed = parseSave(savedText);
  const jumps = cleanupJumps(family);
  let out = '';
  for (const table of ['filter', 'nat', 'mangle']) {
    const t = parsed[table];
    if (!t) continue;
    const lines: string[] = [];
    // Every copy of each jump, deleted by number bottom up per chain (the
    // kernel's text may differ from ours, numbers do not).
    const mine = jumps.filter((j) => j.table === table);
    for (const chain of new Set(mine.map((j) => j.chain))) {
      const keys = new Set(mine.filter((j) => j.chain === chain).map((j) => looseKey(jumpLine(j))));
      const rules = t.chains.get(chain) ?? [];
      for (let i = rules.length - 1; i >= 0; i--) if (keys.has(looseKey(rules[i]!))) lines.push(`-D ${chain} ${i + 1}`);
    }
    const chains =
      table === 'nat'
        ? [...NAT_CHAINS, ...[...t.chains.keys()].filter(isServiceChain)]
        : table === 'filter'
          ? FILTER_CHAINS
          : [CANARY_CHAIN];
    const present = chains.filter((c) => t.chains.has(c));
    for (const c of present) lines.push(`:${c} - [0:0]`);
    for (const c of present) lines.push(`-X ${c}`);
    if (lines.length) out += `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
  }
  return out;
}

/** Removes kproxy's rules for one family; returns the number of restore lines run. */
export async function cleanupIptables(tools: IptablesTools): Promise<number> {
  const payload = cleanupPayload(await save(tools), tools.family);
  if (!payload) return 0;
  await restore(tools, payload);
  return payload.split('\n').filter((l) => l.startsWith('-') || l.startsWith(':')).length;
}
