// Rendering for the sync loop: a full render on full syncs, and on partial
// syncs a render of only the services that changed, merged into the last
// ruleset. Rendering 10,000 services takes on the order of a second in JS,
// which alone would blow a 100 ms change-to-kernel budget; the rules of an
// unchanged service do not depend on other services except through
// large-cluster mode, which is carried over from the whole cluster's
// endpoint count (kept up to date per service).
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import type { IptablesRuleset } from './model.js';
import { LARGE_CLUSTER_ENDPOINTS_THRESHOLD, renderFamily, type RenderOptions } from './render.js';
import { buildServicePortMap } from '../../proxy/service-port.js';
import { buildEndpointsMap } from '../../proxy/endpoints.js';
import { serviceObjects } from '../../k8s/state-index.js';
import type { ServicePortRules } from './model.js';

function nsName(ns: string, name: string): string {
  return `${ns}/${name}`;
}

/** Endpoints per service (ns/name), counted as upstream counts them for large-cluster mode. */
function endpointCounts(state: ClusterState, family: IPFamily, nodeName: string): Map<string, number> {
  const spm = buildServicePortMap(state.services, family);
  const eps = buildEndpointsMap(state.endpointSlices, spm, family, nodeName);
  const out = new Map<string, number>();
  for (const [key, sp] of spm) {
    const k = nsName(sp.namespace, sp.name);
    out.set(k, (out.get(k) ?? 0) + (eps.get(key)?.length ?? 0));
  }
  return out;
}

function keyService(key: string): string {
  const c = key.indexOf(':');
  return c < 0 ? key : key.slice(0, c);
}

function byKey(a: ServicePortRules, b: ServicePortRules): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** First index in sorted `list` whose key is not below `key`. */
function lowerBound(list: readonly ServicePortRules[], key: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `last` (sorted by key) without the ports of the services in `touched`, with
 * `fresh` put in their places: a copy of the array plus a binary search per
 * changed port, instead of filtering and re-sorting every service.
 */
function mergeSorted(last: readonly ServicePortRules[], touched: ReadonlySet<string>, fresh: readonly ServicePortRules[]): ServicePortRules[] {
  const out = last.slice();
  for (const nsn of touched) {
    // A service's port keys ("ns/name", "ns/name:port") all start with "ns/name",
    // and keys with that prefix sort together (with those of "ns/name-2" and the like among them).
    for (let i = lowerBound(out, nsn); i < out.length && out[i]!.key.startsWith(nsn); ) {
      if (keyService(out[i]!.key) === nsn) out.splice(i, 1);
      else i++;
    }
  }
  for (const s of [...fresh].sort(byKey)) out.splice(lowerBound(out, s.key), 0, s);
  return out;
}

export class IncrementalRenderer {
  private last: IptablesRuleset | null = null;
  private counts = new Map<string, number>();
  private total = 0;

  constructor(readonly family: IPFamily) {}

  reset(): void {
    this.last = null;
  }

  full(state: ClusterState, opts: RenderOptions): IptablesRuleset {
    this.counts = new Map();
    const rs = renderFamily(state, opts, this.family, this.counts);
    this.total = 0;
    for (const n of this.counts.values()) this.total += n;
    this.last = rs;
    return rs;
  }

  /** Re-renders the services named (ns/name) and keeps every other service's rules from the last render. */
  partial(state: ClusterState, opts: RenderOptions, touched: Iterable<string>): IptablesRuleset {
    const last = this.last;
    if (!last) return this.full(state, opts);
    const set = new Set(touched);
    // The changed services' own objects, from the snapshot's index (no scan of the cluster).
    const sub: ClusterState = { services: [], endpointSlices: [], nodes: state.nodes, pods: [] };
    for (const k of set) {
      const o = serviceObjects(state, k);
      if (o.service) sub.services.push(o.service);
      for (const sl of o.slices) sub.endpointSlices.push(sl);
    }
    const subCounts = endpointCounts(sub, this.family, opts.nodeName);
    for (const k of set) {
      this.total -= this.counts.get(k) ?? 0;
      const n = subCounts.get(k);
      if (n === undefined) this.counts.delete(k);
      else {
        this.counts.set(k, n);
        this.total += n;
      }
    }
    const large = this.total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    const rs = renderFamily(sub, { ...opts, largeClusterMode: large }, this.family);
    const services = mergeSorted(last.services, set, rs.services);
    const merged: IptablesRuleset = { ...rs, services, endpointCount: this.total, largeClusterMode: large };
    this.last = merged;
    return merged;
  }
}
