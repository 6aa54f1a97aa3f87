// Doctor for nftables mode: is kproxy's table there, and do its elements
// match what the cluster wants (drift: an element deleted or added by hand,
// or an agent that stopped syncing). Endpoint slots are compared per
// frontend as sets of endpoints, because the agent keeps slots stable across
// changes while a fresh render numbers them in order.
import type { ClusterState, IPFamily } from '../k8s/types.js';
import type { RenderOptions } from '../dataplane/iptables/render.js';
import { exec } from '../util/exec.js';
import { familyWords, setDef, TABLE } from '../dataplane/nftables/layout.js';
import { familyContext, fixedRules, renderServices } from '../dataplane/nftables/render.js';
import { TableMirror } from '../dataplane/nftables/table.js';
import type { CheckResult } from './check.js';

type Json = string | number | { concat?: Json[]; prefix?: { addr: string; len: number }; elem?: { val: Json } } | Json[];

/** One element of `nft -j` output in the text form kproxy writes ("10.96.0.1 . tcp . 80"). */
function text(v: Json): string {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `${text(v[0]!)} : ${text(v[1]!)}`;
  if (v.concat) return v.concat.map(text).join(' . ');
  if (v.prefix) return `${v.prefix.addr}/${v.prefix.len}`;
  if (v.elem) return text(v.elem.val);
  return JSON.stringify(v);
}

/** Set name → its elements ("key" or "key : value"), as read from the kernel; null when the table is missing. */
export async function readTable(fam: 'ip' | 'ip6'): Promise<Map<string, Set<string>> | null> {
  const r = await exec('nft', ['-j', 'list', 'table', fam, TABLE], { allowFail: true, timeoutMs: 60_000 });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft -j list table ${fam} ${TABLE}: ${r.stderr.trim()}`);
  }
  const out = new Map<string, Set<string>>();
  for (const o of (JSON.parse(r.stdout) as { nftables: Record<string, { name?: string; elem?: Json[] }>[] }).nftables) {
    const s = o.set ?? o.map;
    if (!s?.name) continue;
    out.set(s.name, new Set((s.elem ?? []).map(text)));
  }
  return out;
}

/** Slot-free form: "frontend → endpoint" for endpoint maps, the element itself otherwise. */
function normalized(set: string, e: string): string {
  // The kernel prints a one-address interval without its /32 or /128.
  e = e.replace(/\/(32|128)$/, '');
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
    fix: 'restart the agent: its first sync is a full one and rewrites the table (a running agent also does so within the hour)',
  };
}

/** The elements a full sync would write for `state`. */
export function wantedElements(state: ClusterState, opts: RenderOptions, family: IPFamily): Map<string, Set<string>> {
  const ctx = familyContext(state, opts, family);
  const { tx } = new TableMirror(familyWords(family)).full(fixedRules(ctx), renderServices(state, ctx), null);
  const out = new Map<string, Set<string>>();
  for (const m of tx.text.matchAll(/^add element ip6? kproxy (\S+) \{ (.*) \}$/gm)) {
    const s = out.get(m[1]!) ?? new Set<string>();
    for (const e of m[2]!.split(', ')) s.add(e);
    out.set(m[1]!, s);
  }
  return out;
}

export async function nftablesChecks(family: IPFamily, state: ClusterState | undefined, opts: RenderOptions): Promise<CheckResult[]> {
  const fam = familyWords(family).nft;
  const live = await readTable(fam);
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
