// kproxy's picture of its table in the kernel: which sets (shapes) and rules
// exist, and every element with the service that owns it. A sync hands it
// the new contributions of the services that changed; it answers with the
// nft transaction that takes the kernel there (new shapes, deleted and added
// elements) and, once that transaction succeeded, makes it the new picture.
//
// Two services can want the same element (the hairpin pair of a pod behind
// both, or two services claiming one external IP:port): an element belongs
// to every service that wants it and takes the value of the first in name
// order, as the first matching rule wins in iptables mode.
import {
  affLookupRule,
  allFixedSets,
  BASE_CHAINS,
  REGULAR_CHAINS,
  setDef,
  shapeOf,
  shapeRules,
  TABLE,
  type DispatchName,
  type FamilyWords,
} from './layout.js';
import type { ServiceContribution } from './render.js';
import { comparable, type ListingScan, type ListingVisitor } from './readback.js';

/**
 * What a drift check compares against while the kernel is being read: the
 * elements partial syncs touched meanwhile (they may legitimately differ from
 * the listing), whether rules were added, and whether a full sync replaced
 * the whole picture (the check is then void).
 */
export interface DriftWatch {
  touched: Set<string>;
  rulesAdded: boolean;
  void: boolean;
}

export interface Drift {
  missing: string[];
  unexpected: string[];
  /** "chain: N rules, want M". */
  rules: string[];
}

interface Entry {
  /** The owner whose value is in the kernel (smallest name). */
  owner: string;
  value: string;
  /** Other owners and their values, when more than one service wants this element. */
  more?: Map<string, string>;
  /** The last drift comparison that found this element in the kernel's listing. */
  seen: number;
}

export interface Transaction {
  /** nft -f input. */
  text: string;
  /** Counts for logs and metrics. */
  added: number;
  deleted: number;
  newSets: number;
  newRules: number;
  /**
   * The same transaction in steps, for a node with no kproxy table yet: the
   * table and its rules, then the element statements in two halves that run
   * at once (nft's parse is most of a first sync, and there are two cores).
   * While the halves load, a frontend may already be in its sets before its
   * endpoint map elements are: the map lookup then misses and the packet is
   * not DNATed, as before the table existed; a packet is only ever DNATed to
   * an endpoint the cluster has. The firewall's frontends and allowed ranges
   * load in one half together, so an allowed client is never dropped. Only
   * for a fresh node: replacing a table must stay one transaction.
   */
  staged?: { first: string; parallel: string[] };
}

/** The statement that makes kproxy's table (a no-op when it exists as kproxy made it). */
export function addTable(fam: string): string {
  return `add table ${fam} ${TABLE} { comment "rules for kproxy"; }`;
}

/** Sets that must load in the same half: a firewall frontend without its allowed ranges would drop allowed clients. */
function loadsTogether(name: string): boolean {
  return name === 'fw-fe' || name === 'fw-allow';
}

/** `set NAME { … }` or `map NAME { … }`, one line per property, for declarations and `add`. */
function declareSet(name: string, w: FamilyWords, indent: string): string {
  const d = setDef(name, w);
  if (!d) throw new Error(`nftables: no definition for set ${JSON.stringify(name)}`);
  const kw = d.spec.includes(' : ') ? 'map' : 'set';
  const parts = [d.spec];
  if (d.flags) parts.push(`flags ${d.flags}`);
  if (d.comment) parts.push(`comment "${d.comment}"`);
  return `${indent}${kw} ${name} { ${parts.join('; ')}; }`;
}

function isMap(name: string, w: FamilyWords): boolean {
  return (setDef(name, w)?.spec ?? '').includes(' : ');
}

/** One `add/delete element` statement per set; nft takes thousands of elements in one. */
function elementLines(verb: 'add' | 'delete', fam: string, groups: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const [set, items] of groups) {
    if (items.length === 0) continue;
    // Keep statements to a bounded size: nft parses each in one go.
    for (let i = 0; i < items.length; i += 5000) {
      out.push(`${verb} element ${fam} ${TABLE} ${set} { ${items.slice(i, i + 5000).join(', ')} }`);
    }
  }
  return out;
}

export class TableMirror {
  private sets = new Map<string, Map<string, Entry>>();
  private owned = new Map<string, string[]>();
  private slots = new Map<string, string[]>();
  /** Shape sets that exist in the kernel (with their rules). */
  private shapes = new Set<string>();
  /** Sticky-lookup rules that exist, per "dispatch timeout": slots 0..n-1. */
  private lookups = new Map<string, number>();
  /** The fixed rules the table was written with (a change of settings needs a full sync). */
  private fixedText = '';
  /** Rules per chain as written (for the drift check). */
  private ruleCounts = new Map<string, number>();
  /** Drift comparisons so far (each stamps the entries it finds). */
  private comparisons = 0;
  private watches = new Set<DriftWatch>();

  constructor(readonly w: FamilyWords) {}

  get fixedRules(): string {
    return this.fixedText;
  }

  /** Element count (for metrics). */
  elementCount(): number {
    let n = 0;
    for (const m of this.sets.values()) n += m.size;
    return n;
  }

  slotHistory(): (d: DispatchName, key: string) => readonly string[] | undefined {
    return (d, key) => this.slots.get(`${d} ${key}`);
  }

  /**
   * The full-sync transaction: the table re-declared and refilled from
   * `services`. `existing` lists the chains and sets the kernel has now
   * (null: no table, or recreate it). With a table present, its chains are
   * flushed and its sets refilled rather than the table deleted, so the
   * affinity sets (filled by the data path) survive.
   */
  full(fixed: Map<string, string[]>, services: Map<string, ServiceContribution>, existing: { chains: string[]; sets: string[] } | null): { readonly tx: Transaction; commit: () => void; next: TableMirror } {
    const next = new TableMirror(this.w);
    for (const [owner, c] of services) next.own(owner, c);
    const shapeSets = [...next.sets.keys()].filter((s) => shapeOf(s) !== null).sort(shapeOrder);
    const rules = new Map<string, string[]>();
    for (const [ch, rs] of fixed) rules.set(ch, [...rs]);
    for (const s of shapeSets) {
      next.shapes.add(s);
      for (const [ch, r] of next.ruleFor(s)) {
        const a = rules.get(ch);
        if (a) a.push(r);
        else rules.set(ch, [r]);
      }
    }
    next.fixedText = fixedKey(fixed);
    for (const ch of [...BASE_CHAINS.map((b) => b.name), ...REGULAR_CHAINS]) next.ruleCounts.set(ch, rules.get(ch)?.length ?? 0);
    // The transaction's text is built only when asked for: a periodic full sync whose
    // picture equals the last one writes nothing (at 10k services, 122k element strings).
    let built: Transaction | undefined;
    const build = (): Transaction => (built ??= this.fullTransaction(next, fixed, rules, shapeSets, existing));
    return {
      get tx(): Transaction {
        return build();
      },
      commit: () => this.adopt(next),
      next,
    };
  }

  private fullTransaction(
    next: TableMirror,
    fixed: Map<string, string[]>,
    rules: Map<string, string[]>,
    shapeSets: string[],
    existing: { chains: string[]; sets: string[] } | null,
  ): Transaction {
    const groups = next.elementTexts();
    const fam = this.w.nft;
    const lines: string[] = [];
    lines.push(addTable(fam));
    const wantSets = [...allFixedSets(fixed.get('services')!.some((r) => r.includes('@nodeport-ips'))), ...shapeSets];
    const wantChains = [...BASE_CHAINS.map((b) => b.name), ...REGULAR_CHAINS];
    if (existing === null) {
      lines.push(`delete table ${fam} ${TABLE}`, addTable(fam));
    } else {
      for (const ch of existing.chains) lines.push(`flush chain ${fam} ${TABLE} ${ch}`);
      for (const ch of existing.chains) if (!wantChains.includes(ch)) lines.push(`delete chain ${fam} ${TABLE} ${ch}`);
      const wanted = new Set(wantSets);
      for (const s of existing.sets) {
        const kw = isMap(s, this.w) ? 'map' : 'set';
        if (!wanted.has(s)) lines.push(`delete ${kw} ${fam} ${TABLE} ${s}`);
        else if (!setDef(s, this.w)?.dynamic) lines.push(`flush ${kw} ${fam} ${TABLE} ${s}`);
      }
    }
    for (const s of wantSets) lines.push(`add ${declareSet(s, this.w, '').replace(/^(set|map) /, `$1 ${fam} ${TABLE} `)}`);
    for (const b of BASE_CHAINS) {
      lines.push(`add chain ${fam} ${TABLE} ${b.name} { type ${b.type} hook ${b.hook} priority ${b.priority}; policy accept; }`);
    }
    for (const ch of REGULAR_CHAINS) lines.push(`add chain ${fam} ${TABLE} ${ch}`);
    let nRules = 0;
    for (const [ch, rs] of rules) for (const r of rs) {
      lines.push(`add rule ${fam} ${TABLE} ${ch} ${r}`);
      nRules++;
    }
    let added = 0;
    for (const items of groups.values()) added += items.length;
    const head = lines.join('\n') + '\n';
    const elems = elementLines('add', fam, groups);
    // The whole text only when asked for: a fresh node is loaded in steps (below), and at
    // 10k services the text is 27 MB, a copy of every element line on top of the steps'.
    let text: string | undefined;
    const tx: Transaction = {
      get text(): string {
        return (text ??= head + elems.join('\n') + (elems.length ? '\n' : ''));
      },
      added,
      deleted: 0,
      newSets: shapeSets.length,
      newRules: nRules,
    };
    if (existing === null) {
      const halves: string[][] = [[], []];
      const size = [0, 0];
      for (const l of elems) {
        const i = loadsTogether(l.split(' ', 5)[4]!) ? 0 : size[0]! <= size[1]! ? 0 : 1;
        halves[i]!.push(l);
        size[i]! += l.length;
      }
      const text = (ls: string[]): string => (ls.length ? ls.join('\n') + '\n' : '');
      tx.staged = { first: head.replace(/^delete table .*\n/m, ''), parallel: halves.map(text).filter(Boolean) };
    }
    return tx;
  }

  /**
   * The partial-sync transaction for the services in `changed` (ns/name → new
   * contribution, or null when gone). The mirror takes the new state at once:
   * when the transaction fails the caller must make the next sync a full one,
   * which rebuilds the mirror from scratch.
   */
  partial(changed: Map<string, ServiceContribution | null>): Transaction {
    const before = new Map<string, string | undefined>();
    const touched: [string, string][] = [];
    const snapshot = (set: string, key: string): void => {
      const id = `${set}\n${key}`;
      if (before.has(id)) return;
      before.set(id, this.sets.get(set)?.get(key)?.value);
      touched.push([set, key]);
    };
    const newShapes: string[] = [];
    for (const [owner, c] of changed) {
      const old = this.owned.get(owner);
      if (old) {
        for (let i = 0; i < old.length; i += 3) snapshot(old[i]!, old[i + 1]!);
        this.disown(owner, old);
      }
      if (c) {
        for (let i = 0; i < c.elems.length; i += 3) {
          const s = c.elems[i]!;
          snapshot(s, c.elems[i + 1]!);
          if (!this.shapes.has(s) && shapeOf(s) && !newShapes.includes(s)) newShapes.push(s);
        }
        this.own(owner, c);
      }
    }
    const fam = this.w.nft;
    const dels = new Map<string, string[]>();
    const adds = new Map<string, string[]>();
    const push = (m: Map<string, string[]>, set: string, item: string): void => {
      const a = m.get(set);
      if (a) a.push(item);
      else m.set(set, [item]);
    };
    let added = 0;
    let deleted = 0;
    for (const [set, key] of touched) {
      const was = before.get(`${set}\n${key}`);
      const now = this.sets.get(set)?.get(key)?.value;
      if (was === now) continue;
      for (const wt of this.watches) wt.touched.add(comparable(`${set}\n${key}`));
      if (was !== undefined) {
        push(dels, set, key);
        deleted++;
      }
      if (now !== undefined) {
        push(adds, set, isMap(set, this.w) ? `${key} : ${now}` : key);
        added++;
      }
    }
    const lines: string[] = [];
    let newRules = 0;
    for (const s of newShapes.sort(shapeOrder)) {
      lines.push(`add ${declareSet(s, this.w, '').replace(/^(set|map) /, `$1 ${fam} ${TABLE} `)}`);
      this.shapes.add(s);
      for (const [ch, r] of this.ruleFor(s)) {
        lines.push(`add rule ${fam} ${TABLE} ${ch} ${r}`);
        this.ruleCounts.set(ch, (this.ruleCounts.get(ch) ?? 0) + 1);
        newRules++;
      }
    }
    if (newRules) for (const wt of this.watches) wt.rulesAdded = true;
    lines.push(...elementLines('delete', fam, dels), ...elementLines('add', fam, adds));
    return { text: lines.length ? lines.join('\n') + '\n' : '', added, deleted, newSets: newShapes.length, newRules };
  }

  /** The rules of a shape set that is new to the table (with any sticky lookups it needs first). */
  private ruleFor(set: string): [string, string][] {
    const s = shapeOf(set)!;
    const out: [string, string][] = [];
    if (s.kind === 'affCount') {
      const id = `${s.d} ${s.p} ${s.t}`;
      const have = this.lookups.get(id) ?? 0;
      for (let i = have; i < s.n; i++) out.push(affLookupRule(s.d, s.p, s.t, i, this.w));
      if (s.n > have) this.lookups.set(id, s.n);
    }
    out.push(...shapeRules(s, this.w));
    return out;
  }

  private own(owner: string, c: ServiceContribution): void {
    for (let i = 0; i < c.elems.length; i += 3) {
      const set = c.elems[i]!;
      const key = c.elems[i + 1]!;
      const value = c.elems[i + 2]!;
      let m = this.sets.get(set);
      if (!m) this.sets.set(set, (m = new Map()));
      const e = m.get(key);
      if (!e) {
        m.set(key, { owner, value, seen: 0 });
        continue;
      }
      if (e.owner === owner) continue;
      e.more ??= new Map();
      if (owner < e.owner) {
        e.more.set(e.owner, e.value);
        e.owner = owner;
        e.value = value;
      } else e.more.set(owner, value);
    }
    this.owned.set(owner, c.elems);
    for (const [d, key, order] of c.slots) this.slots.set(`${d} ${key}`, order);
  }

  private disown(owner: string, elems: string[]): void {
    for (let i = 0; i < elems.length; i += 3) {
      const m = this.sets.get(elems[i]!);
      const key = elems[i + 1]!;
      const e = m?.get(key);
      if (!e) continue;
      if (e.owner !== owner) {
        e.more?.delete(owner);
        continue;
      }
      if (!e.more || e.more.size === 0) {
        m!.delete(key);
        continue;
      }
      let best: string | undefined;
      for (const o of e.more.keys()) if (best === undefined || o < best) best = o;
      e.owner = best!;
      e.value = e.more.get(best!)!;
      e.more.delete(best!);
    }
    this.owned.delete(owner);
    for (let i = 0; i < elems.length; i += 3) {
      const at = elems[i]!.indexOf('-eps-');
      if (at > 0) {
        // Slot orders of keys this owner no longer has are dropped with it.
        const key = elems[i + 1]!;
        const d = elems[i]!.slice(0, at);
        const sp = key.lastIndexOf(' . ');
        this.slots.delete(`${d} ${key.slice(0, sp)}`);
      }
    }
  }

  private adopt(next: TableMirror): void {
    this.sets = next.sets;
    this.owned = next.owned;
    this.slots = next.slots;
    this.shapes = next.shapes;
    this.lookups = next.lookups;
    this.fixedText = next.fixedText;
    this.ruleCounts = next.ruleCounts;
    for (const wt of this.watches) wt.void = true;
  }

  /** Whether a freshly rendered picture (`full()`'s) holds exactly what this one does. */
  sameAs(other: TableMirror): boolean {
    if (this.fixedText !== other.fixedText || this.sets.size !== other.sets.size) return false;
    for (const s of this.shapes) if (!other.shapes.has(s)) return false;
    if (this.shapes.size !== other.shapes.size) return false;
    for (const [set, m] of this.sets) {
      const o = other.sets.get(set);
      if (!o || o.size !== m.size) return false;
      for (const [k, e] of m) if (o.get(k)?.value !== e.value) return false;
    }
    return true;
  }

  /** Every set's elements in the form kproxy writes them ("key", or "key : value" in a map). */
  elementTexts(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [set, m] of this.sets) {
      const map = isMap(set, this.w);
      out.set(set, Array.from(m, ([k, e]) => (map ? `${k} : ${e.value}` : k)));
    }
    return out;
  }

  /** Starts recording what partial syncs change, for a drift check reading the kernel meanwhile. */
  watch(): DriftWatch {
    const wt: DriftWatch = { touched: new Set(), rulesAdded: false, void: false };
    this.watches.add(wt);
    return wt;
  }

  unwatch(wt: DriftWatch): void {
    this.watches.delete(wt);
  }

  /**
   * How the kernel's table differs from what kproxy wrote: elements missing or
   * unexpected (affinity sets, filled by the data path, and elements partial
   * syncs touched during the listing are left out), and chains whose rule
   * count changed. Null when they agree or the check is void. Each element
   * of the listing is checked against the mirror's own maps as the scan hands
   * it over (`compare`), so the check holds no second copy of the table.
   */
  drift(scan: ListingScan, wt: DriftWatch): Drift | null {
    const c = this.compare(wt);
    return c.finish(scan(c));
  }

  /**
   * The comparison as a listing visitor, for a listing streamed from nft:
   * each element is looked up as it arrives and the mirror's entries it
   * matches are stamped, so what was never seen is found without holding the
   * listing. `finish` takes the chains' rule counts.
   */
  compare(wt: DriftWatch): ListingVisitor & { finish(rules: Map<string, number>): Drift | null } {
    const stamp = ++this.comparisons;
    const missing: string[] = [];
    const unexpected: string[] = [];
    const touched = (set: string, key: string): boolean => wt.touched.size > 0 && wt.touched.has(comparable(`${set}\n${key}`));
    const seen = new Set<string>();
    let name = '';
    let skip = false;
    let map = false;
    let want: Map<string, Entry> = new Map();
    let matched = 0;
    const visitor = {
      openSet: (n: string): void => {
        seen.add(n);
        name = n;
        const def = setDef(n, this.w);
        skip = !!def?.dynamic;
        map = isMap(n, this.w);
        want = this.sets.get(n) ?? new Map();
        // Interval sets print a /32 bare: index those by the printed form (they are small).
        if (def?.flags?.includes('interval')) want = new Map([...want].map(([k, e]) => [comparable(k), e]));
        matched = 0;
      },
      element: (e: string): void => {
        if (skip) return;
        let k = e;
        let v: string | undefined;
        if (map) {
          const i = e.indexOf(' : ');
          [k, v] = [e.slice(0, i), e.slice(i + 3)];
        }
        const w = want.get(k);
        if (w && (!map || w.value === v)) {
          if (w.seen !== stamp) matched++;
          w.seen = stamp;
        } else if (!touched(name, k)) unexpected.push(`${name}: ${e}`);
      },
      closeSet: (): void => {
        if (skip || matched === want.size) return;
        for (const [k, w] of want) if (w.seen !== stamp && !touched(name, k)) missing.push(`${name}: ${map ? `${k} : ${w.value}` : k}`);
      },
    };
    const finish = (live: Map<string, number>): Drift | null => {
      if (wt.void) return null;
      for (const n of this.setNames()) {
        if (seen.has(n)) continue;
        visitor.openSet(n);
        visitor.closeSet();
      }
      const rules: string[] = [];
      if (!wt.rulesAdded) {
        for (const ch of new Set([...this.ruleCounts.keys(), ...live.keys()])) {
          const want = this.ruleCounts.get(ch);
          const have = live.get(ch);
          if (want !== have) rules.push(`${ch}: ${have === undefined ? 'no chain' : `${have} rules`}, want ${want === undefined ? 'no chain' : want}`);
        }
      }
      return missing.length || unexpected.length || rules.length ? { missing, unexpected, rules } : null;
    };
    return { ...visitor, finish };
  }

  /** The sets and maps the table has: the fixed ones (with or without elements) and the shapes in use. */
  private setNames(): string[] {
    return [...this.sets.keys(), ...this.shapes];
  }
}

export function fixedKey(fixed: Map<string, string[]>): string {
  return [...fixed].map(([c, rs]) => `${c}:${rs.join('|')}`).join('\n');
}

/** Shapes in a stable order: by dispatch, kind, then numbers (so rules are written in a readable order). */
function shapeOrder(a: string, b: string): number {
  const x = shapeOf(a)!;
  const y = shapeOf(b)!;
  if (x.d !== y.d) return x.d < y.d ? -1 : 1;
  if (x.p !== y.p) return x.p < y.p ? -1 : 1;
  if (x.kind !== y.kind) return x.kind < y.kind ? -1 : 1;
  const nx = 'n' in x ? x.n : 0;
  const ny = 'n' in y ? y.n : 0;
  if (nx !== ny) return nx - ny;
  return ('t' in x ? x.t : 0) - ('t' in y ? y.t : 0);
}
