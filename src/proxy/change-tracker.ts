// Which service ports changed between successive ClusterStates, so a partial
// sync touches only their chains (upstream's ServiceChangeTracker and
// EndpointsChangeTracker, reduced to what the sync needs): the set of changed
// ServicePortName keys, whether a full sync is needed (this node's labels
// changed: topology), counts for the metrics, and for each changed service
// when its change first reached kproxy (network-programming latency).
import type { ClusterState, EndpointSlice, Node, Service } from '../k8s/types.js';
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

const fp = new WeakMap<object, string>();
function fingerprint(o: object): string {
  let s = fp.get(o);
  if (s === undefined) fp.set(o, (s = JSON.stringify(o)));
  return s;
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

function sliceGroups(slices: EndpointSlice[]): Map<string, string> {
  const by = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const k = svcName(s.meta.namespace, s.serviceName);
    let l = by.get(k);
    if (!l) by.set(k, (l = []));
    l.push(s);
  }
  const out = new Map<string, string>();
  for (const [k, l] of by) {
    l.sort((a, b) => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0));
    out.set(k, l.map(fingerprint).join('\n'));
  }
  return out;
}

export class ChangeTracker {
  private services = new Map<string, Service>();
  private svcFp = new Map<string, string>();
  private epFp = new Map<string, string>();
  private nodeFp: string | undefined;
  private first = true;
  private pending: PendingChanges = ChangeTracker.empty();
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

  /** Records a new snapshot; returns the number of services whose rules may change. */
  update(state: ClusterState): number {
    const t = this.now();
    const p = this.pending;
    const touched = new Set<string>();
    const svcChanged = new Set<string>();
    const epChanged = new Set<string>();

    const nextServices = new Map<string, Service>();
    const nextSvcFp = new Map<string, string>();
    for (const s of state.services) {
      const k = svcName(s.meta.namespace, s.meta.name);
      nextServices.set(k, s);
      nextSvcFp.set(k, fingerprint(s));
    }
    for (const [k, f] of nextSvcFp) if (this.svcFp.get(k) !== f) svcChanged.add(k);
    for (const k of this.svcFp.keys()) if (!nextSvcFp.has(k)) svcChanged.add(k);

    const nextEp = sliceGroups(state.endpointSlices);
    for (const [k, f] of nextEp) if (this.epFp.get(k) !== f) epChanged.add(k);
    for (const k of this.epFp.keys()) if (!nextEp.has(k)) epChanged.add(k);

    const node: Node | undefined = state.nodes.find((n) => n.meta.name === this.nodeName);
    const nodeFp = node ? JSON.stringify(node.meta.labels) : '';
    if (this.first || nodeFp !== this.nodeFp) p.full = true;
    this.first = false;

    for (const k of svcChanged) touched.add(k);
    for (const k of epChanged) touched.add(k);
    for (const k of touched) {
      const before = this.services.get(k);
      const after = nextServices.get(k);
      for (const key of portKeys(before)) p.changed.add(key);
      for (const key of portKeys(after)) p.changed.add(key);
      if (hasUDP(before) || hasUDP(after)) p.udp = true;
      if (!p.since.has(k)) p.since.set(k, t);
    }
    p.serviceChanges += svcChanged.size;
    p.endpointChanges += epChanged.size;
    this.serviceChangesTotal += svcChanged.size;
    this.endpointChangesTotal += epChanged.size;

    this.services = nextServices;
    this.svcFp = nextSvcFp;
    this.epFp = nextEp;
    this.nodeFp = nodeFp;
    return touched.size;
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
