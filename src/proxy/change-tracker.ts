// Which service ports changed between successive ClusterStates, so a partial
// sync touches only their chains (upstream's ServiceChangeTracker and
// EndpointsChangeTracker, reduced to what the sync needs): the set of changed
// ServicePortName keys, whether a full sync is needed (this node's labels
// changed: topology), counts for the metrics, and for each changed service
// when its change first reached kproxy (network-programming latency).
import type { ClusterState, EndpointSlice, Node, Service } from '../k8s/types.js';
import { serviceObjects } from '../k8s/state-index.js';
import { servicePortNameString } from './service-port.js';

export interface PendingChanges {
  /** ServicePortName keys whose service or endpoints changed. */
  changed: Set<string>;
  /** Something global changed (first state, this node's labels): sync everything. */
  full: boolean;
  /** Services (ns/name) whose Service object changed. */
  serviceChanges: number;
  /** Services (ns/name) whose EndpointSlices changed. */
  endpointChanges: number;
  /** ns/name → when its first pending change arrived (ms since epoch). */
  since: Map<string, number>;
  /** A changed service has or had a UDP port (conntrack cleanup needed). */
  udp: boolean;
}

/**
 * An object's content, for telling a replaced object with the same content from a changed
 * one. Computed only when an object is replaced (O(change)), and never kept: a first sync
 * at 10k services would otherwise serialize every object and hold 17 MB of fingerprints.
 */
function fingerprint(o: object): string {
  return JSON.stringify(o);
}

/** Same content: the same object, or equal fingerprints. */
function sameContent(a: object | undefined, b: object | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return fingerprint(a) === fingerprint(b);
}

function svcName(ns: string, name: string): string {
  return `${ns}/${name}`;
}

function portKeys(svc: Service | undefined): string[] {
  if (!svc) return [];
  return svc.ports.map((p) => servicePortNameString(svc.meta.namespace, svc.meta.name, p.name));
}

function hasUDP(svc: Service | undefined): boolean {
  return !!svc && svc.ports.some((p) => p.protocol === 'UDP');
}

function sameObjects(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const byName = (a: EndpointSlice, b: EndpointSlice): number => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0);

/** What the tracker holds for one service (ns/name). */
interface Entry {
  /** The update that last saw it (entries not seen by the current one are gone). */
  gen: number;
  svc?: Service;
  /** Its EndpointSlices, sorted by name. */
  slices: EndpointSlice[];
  /** Slices collected during the current update. */
  next: EndpointSlice[];
  nextGen: number;
}

export class ChangeTracker {
  /**
   * Per service: sources hand over snapshots in which unchanged objects are
   * the same objects, so an update compares identities and fingerprints only
   * what was replaced: a change costs a pass over the snapshot, not a
   * re-serialization of it.
   */
  private entries = new Map<string, Entry>();
  private gen = 0;
  private nodeFp: string | undefined;
  private first = true;
  private pending: PendingChanges = ChangeTracker.empty();
  /** The snapshot seen last: a snapshot whose delta follows it names everything that changed. */
  private lastState: ClusterState | undefined;
  /** How the last update worked (tests, benchmarks): per changed service, or a walk of the whole snapshot. */
  lastUpdate: { mode: 'delta' | 'walk'; services: number } = { mode: 'walk', services: 0 };
  /** Cumulative counters (kubeproxy_sync_proxy_rules_{service,endpoint}_changes_total). */
  serviceChangesTotal = 0;
  endpointChangesTotal = 0;

  constructor(
    private readonly nodeName: string,
    private readonly now: () => number = Date.now,
  ) {}

  private static empty(): PendingChanges {
    return { changed: new Set(), full: false, serviceChanges: 0, endpointChanges: 0, since: new Map(), udp: false };
  }

  private entry(k: string, gen: number): Entry {
    let e = this.entries.get(k);
    if (!e) this.entries.set(k, (e = { gen, slices: [], next: [], nextGen: 0 }));
    e.gen = gen;
    return e;
  }

  /** Records a new snapshot; returns the number of services whose rules may change. */
  update(state: ClusterState): number {
    const prev = this.lastState;
    this.lastState = state;
    const d = state.delta;
    if (!this.first && d && prev && d.prev === prev) return this.updateDelta(state, d.services, d.nodes);
    return this.walk(state);
  }

  /**
   * A snapshot from an incremental source: only the services its delta names
   * are compared (O(change)); the entries of the others stay as they are.
   */
  private updateDelta(state: ClusterState, names: ReadonlySet<string>, nodes: boolean): number {
    const t = this.now();
    const gen = ++this.gen;
    const touched = new Map<string, Service | undefined>();
    let svcChanges = 0;
    let epChanges = 0;
    for (const k of names) {
      const objs = serviceObjects(state, k);
      const e = this.entry(k, gen);
      const s = objs.service;
      if (e.svc !== s) {
        if (!sameContent(e.svc, s)) {
          touched.set(k, e.svc);
          svcChanges++;
        }
        e.svc = s;
      }
      if (this.takeSlices(k, e, objs.slices.length > 1 ? [...objs.slices].sort(byName) : objs.slices, touched)) epChanges++;
      if (!e.svc && !e.slices.length) this.entries.delete(k);
    }
    if (nodes) this.checkNode(state);
    this.lastUpdate = { mode: 'delta', services: names.size };
    return this.record(touched, t, svcChanges, epChanges);
  }

  /** Stores a service's slices (sorted by name); true when their content changed (the service is then touched). */
  private takeSlices(k: string, e: Entry, next: EndpointSlice[], touched: Map<string, Service | undefined>): boolean {
    if (sameObjects(e.slices, next)) return false;
    const changed = e.slices.length !== next.length || next.some((s, i) => !sameContent(e.slices[i], s));
    if (changed && !touched.has(k)) touched.set(k, e.svc);
    e.slices = next;
    return changed;
  }

  private checkNode(state: ClusterState): void {
    const node: Node | undefined = state.nodes.find((n) => n.meta.name === this.nodeName);
    const nodeFp = node ? JSON.stringify(node.meta.labels) : '';
    if (this.first || nodeFp !== this.nodeFp) this.pending.full = true;
    this.first = false;
    this.nodeFp = nodeFp;
  }

  /** Adds the touched services (ns/name → the Service before the change) to the pending changes. */
  private record(touched: Map<string, Service | undefined>, t: number, svcChanges: number, epChanges: number): number {
    const p = this.pending;
    for (const [k, before] of touched) {
      const after = this.entries.get(k)?.svc;
      for (const key of portKeys(before)) p.changed.add(key);
      for (const key of portKeys(after)) p.changed.add(key);
      if (hasUDP(before) || hasUDP(after)) p.udp = true;
      if (!p.since.has(k)) p.since.set(k, t);
    }
    p.serviceChanges += svcChanges;
    p.endpointChanges += epChanges;
    this.serviceChangesTotal += svcChanges;
    this.endpointChangesTotal += epChanges;
    return touched.size;
  }

  /** Any snapshot: compares every service in it with what the tracker holds (O(cluster), cheap per unchanged object). */
  private walk(state: ClusterState): number {
    const t = this.now();
    const gen = ++this.gen;
    /** Changed services (ns/name) → the Service before the change. */
    const touched = new Map<string, Service | undefined>();
    let svcChanges = 0;
    let epChanges = 0;

    const seenSvc = new Set<Entry>();
    for (const s of state.services) {
      const e = this.entry(svcName(s.meta.namespace, s.meta.name), gen);
      seenSvc.add(e);
      if (e.svc === s) continue;
      if (!sameContent(e.svc, s)) {
        touched.set(svcName(s.meta.namespace, s.meta.name), e.svc);
        svcChanges++;
      }
      e.svc = s;
    }
    for (const s of state.endpointSlices) {
      const e = this.entry(svcName(s.meta.namespace, s.serviceName), gen);
      if (e.nextGen !== gen) {
        e.next = [];
        e.nextGen = gen;
      }
      e.next.push(s);
    }
    for (const [k, e] of this.entries) {
      if (e.svc && !seenSvc.has(e)) {
        // The Service is gone.
        if (!touched.has(k)) touched.set(k, e.svc);
        svcChanges++;
        e.svc = undefined;
      }
      const next = e.nextGen === gen ? e.next : [];
      e.next = [];
      if (next.length > 1) next.sort(byName);
      if (this.takeSlices(k, e, next, touched)) epChanges++;
      if (e.gen !== gen || (!e.svc && !e.slices.length)) this.entries.delete(k);
    }

    this.checkNode(state);
    this.lastUpdate = { mode: 'walk', services: this.entries.size };
    return this.record(touched, t, svcChanges, epChanges);
  }

  /** Pending counts (kubeproxy_sync_proxy_rules_{service,endpoint}_changes_pending). */
  get pendingCounts(): { services: number; endpoints: number } {
    return { services: this.pending.serviceChanges, endpoints: this.pending.endpointChanges };
  }

  get hasPending(): boolean {
    return this.pending.full || this.pending.changed.size > 0 || this.pending.since.size > 0;
  }

  /** Drains the pending changes (at the start of a sync). */
  take(): PendingChanges {
    const p = this.pending;
    this.pending = ChangeTracker.empty();
    return p;
  }

  /** Puts drained changes back (a sync that failed before programming anything). */
  restore(p: PendingChanges): void {
    const q = this.pending;
    for (const k of p.changed) q.changed.add(k);
    q.full ||= p.full;
    q.serviceChanges += p.serviceChanges;
    q.endpointChanges += p.endpointChanges;
    q.udp ||= p.udp;
    for (const [k, t] of p.since) if (!q.since.has(k) || q.since.get(k)! > t) q.since.set(k, t);
  }
}
