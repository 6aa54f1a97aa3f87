// The objects a source currently holds, kept incrementally: a change to one
// object costs work in proportion to that object, not to the cluster. Both
// sources (API watch events, manifest files) put objects here one at a time;
// `snapshot()` then hands out a ClusterState that
//   - carries the per-service index (state-index.ts) the store maintains, so
//     partial syncs look a changed service up instead of scanning;
//   - carries a StateDelta naming the services whose Service or EndpointSlices
//     changed since the previous snapshot, so the change tracker walks only those;
//   - builds its arrays (services, endpointSlices, nodes, pods) only when read,
//     and once per snapshot: emitting a snapshot per change is O(1), and a
//     consumer that needs everything (full syncs, DNS, doctor) pays O(N) when
//     it reads, as it would to walk the objects anyway.
//
// A snapshot is a view of the store as of its emission for the index and delta,
// and as of its first read for the arrays: consumers work on the newest snapshot
// (the agent, DNS), so an older one that is read late reflects newer objects.
// That is what every consumer wants (newest state wins); nothing compares two
// snapshots' arrays.
//
// Selector Services without EndpointSlices get slices derived from Pods (as
// buildState does for manifests): recomputed for the changed service only,
// and for every service when Pods or Nodes change (Pods only come from
// manifests or a DNS source, never in the proxy's API watch).
import { endpointSlicesForService } from './endpoints-from-pods.js';
import { attachIndex, nsName, type ServiceObjects } from './state-index.js';
import type { ClusterState, EndpointSlice, Node, Pod, Service, StateDelta } from './types.js';

export type { StateDelta };

export type StoreKind = 'Service' | 'EndpointSlice' | 'Node' | 'Pod';
type ObjectOf<K extends StoreKind> = K extends 'Service' ? Service : K extends 'EndpointSlice' ? EndpointSlice : K extends 'Node' ? Node : Pod;


/** Orders the objects of one kind when a snapshot's array is built (default: insertion order). */
export type ListOrder = <K extends StoreKind>(kind: K, objects: ReadonlyMap<string, ObjectOf<K>>) => Iterable<ObjectOf<K>>;

function objKey(ns: string, name: string): string {
  return `${ns}/${name}`;
}

const EMPTY_SLICES: EndpointSlice[] = [];

export class StateStore {
  private readonly maps = {
    Service: new Map<string, Service>(),
    EndpointSlice: new Map<string, EndpointSlice>(),
    Node: new Map<string, Node>(),
    Pod: new Map<string, Pod>(),
  };
  /** ns/name of a service → its real slices (by slice key). */
  private readonly realSlices = new Map<string, Map<string, EndpointSlice>>();
  /** ns/name → slices derived from Pods (only for selector Services without real slices, when Pods exist). */
  private readonly derived = new Map<string, EndpointSlice[]>();
  private readonly index = new Map<string, ServiceObjects>();
  private dirty = new Set<string>();
  private nodesChanged = false;
  private podsChanged = false;
  private last: ClusterState | undefined;
  /** Arrays of the current generation, shared by snapshots taken without a change in between. */
  private lists: Partial<Record<StoreKind, unknown[]>> = {};
  private derivedList: EndpointSlice[] | null = null;

  constructor(private readonly order?: ListOrder) {}

  get<K extends StoreKind>(kind: K, ns: string, name: string): ObjectOf<K> | undefined {
    return this.maps[kind].get(objKey(ns, name)) as ObjectOf<K> | undefined;
  }

  size(kind: StoreKind): number {
    return this.maps[kind].size;
  }

  /** Puts (or, with `obj` undefined, removes) one object. Unchanged identity is a no-op. */
  set<K extends StoreKind>(kind: K, ns: string, name: string, obj: ObjectOf<K> | undefined): void {
    const m = this.maps[kind] as Map<string, ObjectOf<K>>;
    const k = objKey(ns, name);
    const before = m.get(k);
    if (before === obj) return;
    if (obj) m.set(k, obj);
    else m.delete(k);
    this.lists[kind] = undefined;
    switch (kind) {
      case 'Service':
        this.dirty.add(k);
        break;
      case 'EndpointSlice': {
        const b = before as EndpointSlice | undefined;
        const a = obj as EndpointSlice | undefined;
        if (b) this.sliceOut(nsName(b.meta.namespace, b.serviceName), k);
        if (a) this.sliceIn(nsName(a.meta.namespace, a.serviceName), k, a);
        break;
      }
      case 'Node':
        this.nodesChanged = true;
        break;
      case 'Pod':
        this.podsChanged = true;
        break;
    }
  }

  private sliceIn(svc: string, k: string, s: EndpointSlice): void {
    let m = this.realSlices.get(svc);
    if (!m) this.realSlices.set(svc, (m = new Map()));
    m.set(k, s);
    this.dirty.add(svc);
  }

  private sliceOut(svc: string, k: string): void {
    const m = this.realSlices.get(svc);
    if (m?.delete(k) && m.size === 0) this.realSlices.delete(svc);
    this.dirty.add(svc);
  }

  /** Recomputes one service's index entry (and its derived slices). */
  private refresh(svc: string, podsByNs: PodLookup | null): void {
    const service = this.maps.Service.get(svc);
    const real = this.realSlices.get(svc);
    let derived: EndpointSlice[] = EMPTY_SLICES;
    if (!real && service?.selector && podsByNs) derived = podsByNs.slicesFor(service);
    const hadDerived = this.derived.has(svc);
    if (derived.length) this.derived.set(svc, derived);
    else this.derived.delete(svc);
    if (hadDerived || derived.length) {
      this.derivedList = null;
      this.lists.EndpointSlice = undefined;
    }
    const slices = real ? [...real.values()] : derived;
    if (!service && slices.length === 0) this.index.delete(svc);
    else this.index.set(svc, service ? { service, slices } : { slices });
  }

  /**
   * The current state as a ClusterState with its index and delta attached.
   * O(changed services) (O(services) when Pods or Nodes changed and Pods exist).
   */
  snapshot(): ClusterState {
    const pods = this.maps.Pod.size > 0 || this.derived.size > 0 ? new PodLookup(() => this.list('Pod'), this.maps.Node) : null;
    if ((this.podsChanged || this.nodesChanged) && (this.maps.Pod.size > 0 || this.derived.size > 0)) {
      // Any selector Service may gain or lose pods: re-derive them all.
      for (const k of this.maps.Service.keys()) this.dirty.add(k);
      for (const k of this.derived.keys()) this.dirty.add(k);
    }
    for (const k of this.dirty) this.refresh(k, pods);
    const delta: StateDelta = { prev: this.last, services: this.dirty, nodes: this.nodesChanged, pods: this.podsChanged };
    this.dirty = new Set();
    this.nodesChanged = false;
    this.podsChanged = false;
    const state = this.view(delta);
    attachIndex(state, this.index);
    this.last = state;
    return state;
  }

  private list<K extends StoreKind>(kind: K): ObjectOf<K>[] {
    let l = this.lists[kind] as ObjectOf<K>[] | undefined;
    if (!l) {
      const m = this.maps[kind] as Map<string, ObjectOf<K>>;
      l = [...(this.order ? this.order(kind, m) : m.values())];
      if (kind === 'EndpointSlice' && this.derived.size > 0) {
        this.derivedList ??= this.derivedInServiceOrder();
        for (const s of this.derivedList) l.push(s as ObjectOf<K>);
      }
      this.lists[kind] = l;
    }
    return l;
  }

  /** Derived slices after the real ones, in the order of the Services (as buildState appends them). */
  private derivedInServiceOrder(): EndpointSlice[] {
    const out: EndpointSlice[] = [];
    for (const s of this.list('Service')) {
      const d = this.derived.get(nsName(s.meta.namespace, s.meta.name));
      if (d) out.push(...d);
    }
    return out;
  }

  private view(delta: StateDelta): ClusterState {
    // Arrays are taken from the store on first read and then kept by this snapshot.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const store = this;
    const cache: Partial<Record<StoreKind, unknown[]>> = {};
    const read = <K extends StoreKind>(kind: K): ObjectOf<K>[] => (cache[kind] ??= store.list(kind)) as ObjectOf<K>[];
    const state = {
      delta,
      get services(): Service[] {
        return read('Service');
      },
      get endpointSlices(): EndpointSlice[] {
        return read('EndpointSlice');
      },
      get nodes(): Node[] {
        return read('Node');
      },
      get pods(): Pod[] {
        return read('Pod');
      },
    };
    return state as ClusterState;
  }
}

/** Pods and Nodes as endpointSlicesForService wants them, built once per snapshot. */
class PodLookup {
  private podList: Pod[] | null = null;
  private nodeMap: Map<string, Node> | null = null;

  constructor(
    private readonly pods: () => Pod[],
    private readonly nodes: ReadonlyMap<string, Node>,
  ) {}

  slicesFor(svc: Service): EndpointSlice[] {
    this.podList ??= this.pods();
    if (this.podList.length === 0) return EMPTY_SLICES;
    this.nodeMap ??= new Map([...this.nodes.values()].map((n) => [n.meta.name, n]));
    return endpointSlicesForService(svc, this.podList, this.nodeMap);
  }
}
