// Per-service lookup into a ClusterState: a change to one service should cost
// work in proportion to that service, so dataplanes that sync per changed
// service find its Service and EndpointSlices here instead of scanning the
// snapshot. A source that keeps its state incrementally attaches the index it
// already maintains (attachIndex); otherwise it is built once per snapshot.
import type { ClusterState, EndpointSlice, Service } from './types.js';

export interface ServiceObjects {
  service?: Service;
  /** This service's EndpointSlices (kubernetes.io/service-name), in no particular order. */
  slices: EndpointSlice[];
}

export type StateIndex = ReadonlyMap<string, ServiceObjects>;

const cache = new WeakMap<ClusterState, StateIndex>();

export function nsName(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function buildIndex(state: ClusterState): Map<string, ServiceObjects> {
  const idx = new Map<string, ServiceObjects>();
  const get = (k: string): ServiceObjects => {
    let e = idx.get(k);
    if (!e) idx.set(k, (e = { slices: [] }));
    return e;
  };
  for (const s of state.services) get(nsName(s.meta.namespace, s.meta.name)).service = s;
  for (const s of state.endpointSlices) get(nsName(s.meta.namespace, s.serviceName)).slices.push(s);
  return idx;
}

/** Declares `idx` to be the index of `state` (a source that maintains it incrementally). */
export function attachIndex(state: ClusterState, idx: StateIndex): void {
  cache.set(state, idx);
}

export function stateIndex(state: ClusterState): StateIndex {
  let idx = cache.get(state);
  if (!idx) cache.set(state, (idx = buildIndex(state)));
  return idx;
}

/** The Service (if any) and EndpointSlices of one service, by ns/name. */
export function serviceObjects(state: ClusterState, nsn: string): ServiceObjects {
  return stateIndex(state).get(nsn) ?? { slices: [] };
}
