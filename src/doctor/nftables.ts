// Doctor for nftables mode: is kproxy's table there, and do its elements
// match what the cluster wants (drift: an element deleted or added by hand,
// or an agent that stopped syncing). Endpoint slots are compared per
// frontend as sets of endpoints, because the agent keeps slots stable across
// changes while a fresh render numbers them in order.
import type { ClusterState, IPFamily } from '../k8s/types.js';
import type { RenderOptions } from '../dataplane/iptables/render.js';
import { comparable, readLiveTable } from '../dataplane/nftables/readback.js';
import { familyWords, setDef, TABLE } from '../dataplane/nftables/layout.js';
import { familyContext, fixedRules, renderServices } from '../dataplane/nftables/render.js';
import { TableMirror } from '../dataplane/nftables/table.js';
import type { CheckResult } from './check.js';

/** Slot-free form: "frontend → endpoint" for endpoint maps, the element itself otherwise. */
function normalized(set: string, e: string): string {
  e = comparable(e);
  if (!set.includes('-eps-')) return e;
  const [k, v] = e.split(' : ');
  return `${k!.replace(/ \. \d+$/, '')} → ${v}`;
}

export function nftDrift(family: IPFamily, live: Map<string, Set<string>>, want: Map<string, Set<string>>): CheckResult {
  const id = `nftables.drift.${family.toLowerCase()}`;
  const missing: string[] = [];
  const extra: string[] = [];
  const w = familyWords(family);
  const names = new Set([...live.keys(), ...want.keys()]);
  for (const set of names) {
    if (setDef(set, w)?.dynamic) continue;
    const l = new Set([...(live.get(set) ?? [])].map((e) => normalized(set, e)));
    const x = new Set([...(want.get(set) ?? [])].map((e) => normalized(set, e)));
    for (const e of x) if (!l.has(e)) missing.push(`${set}: ${e}`);
    for (const e of l) if (!x.has(e)) extra.push(`${set}: ${e}`);
  }
  if (missing.length === 0 && extra.length === 0) return { id, title: `${family} nftables elements match the cluster`, status: 'ok', evidence: [] };
  return {
    id,
    title: `${family} nftables elements differ from the cluster`,
    status: 'fail',
    evidence: [
      ...missing.slice(0, 10).map((e) => `missing ${e}`),
      ...extra.slice(0, 10).map((e) => `unexpected ${e}`),
      `${missing.length} missing, ${extra.length} unexpected in all`,
    ],
    fix: 'restart the agent: its first sync is a full one and rewrites the table (a running agent finds and repairs drift at its hourly full sync)',
  };
}

/** The elements a full sync would write for `state`. */
export function wantedElements(state: ClusterState, opts: RenderOptions, family: IPFamily): Map<string, Set<string>> {
  const ctx = familyContext(state, opts, family);
  const { next } = new TableMirror(familyWords(family)).full(fixedRules(ctx), renderServices(state, ctx), null);
  return new Map(Array.from(next.elementTexts(), ([set, elems]) => [set, new Set(elems)]));
}

export async function nftablesChecks(family: IPFamily, state: ClusterState | undefined, opts: RenderOptions): Promise<CheckResult[]> {
  const fam = familyWords(family).nft;
  const live = (await readLiveTable(fam))?.sets ?? null;
  const tableId = `nftables.table.${family.toLowerCase()}`;
  if (!live) {
    return [{
      id: tableId,
      title: `${family}: no table ${fam} ${TABLE}`,
      status: 'fail',
      evidence: [`nft list table ${fam} ${TABLE}: no such table`],
      fix: 'start the agent with --proxy-mode nftables (it creates the table on its first sync)',
    }];
  }
  let elements = 0;
  for (const s of live.values()) elements += s.size;
  const out: CheckResult[] = [{ id: tableId, title: `${family}: table ${fam} ${TABLE}`, status: 'ok', evidence: [`${live.size} sets and maps, ${elements} elements`] }];
  if (state) out.push(nftDrift(family, live, wantedElements(state, opts, family)));
  return out;
}
