// `kproxy render --proxy-mode nftables`: the transaction `kproxy run` writes
// on a full sync for a fresh node, per family, as `nft -f` input (it
// replaces any kproxy table already there and leaves other tables alone).
import type { RenderContext, RenderOutput } from '../../cli/render.js';
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import { renderOptionsFromSettings } from '../iptables/render-options.js';
import type { RenderOptions } from '../iptables/render.js';
import { familyWords } from './layout.js';
import { familyContext, fixedRules, pickFamilies, renderServices } from './render.js';
import { TableMirror } from './table.js';

export function renderNftablesText(state: ClusterState, opts: RenderOptions): string {
  const parts: string[] = [];
  for (const f of pickFamilies(state, opts)) {
    const ctx = familyContext(state, opts, f);
    const mirror = new TableMirror(familyWords(f));
    const { tx } = mirror.full(fixedRules(ctx), renderServices(state, ctx), null);
    parts.push(`# ${f}: kproxy nftables mode (nft -f)\n${tx.text}`);
  }
  return parts.join('\n');
}

export async function renderNftablesMode(ctx: RenderContext): Promise<RenderOutput> {
  let families: IPFamily[] | undefined;
  if (ctx.options.ipFamily) families = ctx.options.ipFamily.split(',').map((f) => f.trim()) as IPFamily[];
  const opts = renderOptionsFromSettings(ctx.settings, families ? { families } : {});
  return { text: renderNftablesText(ctx.state, opts), warnings: [] };
}
