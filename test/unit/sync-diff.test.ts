// The incremental sync engine against a fake kernel: whatever the sequence of
// rulesets, applying kproxy's diffs leaves exactly the full ruleset, staged
// first syncs never expose a half-built service, and failures are atomic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChainMap, IptablesRuleset, ServicePortRules, TableName } from '../../src/dataplane/iptables/model.js';
import {
  applyToModel,
  diffSeq,
  emptyTables,
  fullTables,
  Phase,
  planStages,
  planSync,
  serviceGroups,
  stagePayloads,
  type Tables,
} from '../../src/dataplane/iptables/sync-diff.js';
import { IptablesSyncer } from '../../src/dataplane/iptables/sync.js';
import { parseSave } from '../../src/dataplane/iptables/sync-save.js';
import type { IptablesTools } from '../../src/dataplane/iptables/apply.js';
import { renderFamily } from '../../src/dataplane/iptables/render.js';
import { IncrementalRenderer } from '../../src/dataplane/iptables/sync-render.js';
import { ChangeTracker } from '../../src/proxy/change-tracker.js';
import { syntheticSlice, syntheticState, benchRenderOptions } from '../../bench/sync.js';

// --- hand-built rulesets ------------------------------------------------------

function svc(name: string, endpoints: number, nodePort = 0): ServicePortRules {
  const key = `ns/${name}:p`;
  const svcChain = `KUBE-SVC-${name.toUpperCase()}`;
  const chains: ChainMap = new Map();
  const seps: string[] = [];
  for (let e = 0; e < endpoints; e++) {
    const sep = `KUBE-SEP-${name.toUpperCase()}${e}`;
    seps.push(sep);
    chains.set(sep, [`-A ${sep} -m comment --comment ${key} -s 10.0.${e}.1/32 -j KUBE-MARK-MASQ`, `-A ${sep} -m comment --comment ${key} -m tcp -p tcp -j DNAT --to-destination 10.0.${e}.1:80`]);
  }
  const natShared: ChainMap = new Map();
  const filterShared: ChainMap = new Map();
  if (endpoints > 0) {
    chains.set(svcChain, [
      ...seps.map((s, i) =>
        i < seps.length - 1
          ? `-A ${svcChain} -m comment --comment "${key} -> x" -m statistic --mode random --probability ${(1 / (seps.length - i)).toFixed(10)} -j ${s}`
          : `-A ${svcChain} -m comment --comment "${key} -> x" -j ${s}`,
      ),
    ]);
    natShared.set('KUBE-SERVICES', [`-A KUBE-SERVICES -m comment --comment "${key} cluster IP" -d 10.96.0.${name.length} -j ${svcChain}`]);
    if (nodePort) natShared.set('KUBE-NODEPORTS', [`-A KUBE-NODEPORTS -m comment --comment ${key} -m tcp -p tcp --dport ${nodePort} -j ${svcChain}`]);
  } else {
    filterShared.set('KUBE-SERVICES', [`-A KUBE-SERVICES -m comment --comment "${key} has no endpoints" -d 10.96.0.${name.length} -j REJECT`]);
  }
  return { key, shared: { filter: filterShared, nat: natShared }, chains };
}

function ruleset(services: ServicePortRules[]): IptablesRuleset {
  services.sort((a, b) => (a.key < b.key ? -1 : 1));
  return {
    family: 'IPv4',
    fixed: {
      filter: new Map([
        ['KUBE-SERVICES', []],
        ['KUBE-FORWARD', ['-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP']],
      ]),
      nat: new Map([
        ['KUBE-SERVICES', []],
        ['KUBE-NODEPORTS', []],
        ['KUBE-MARK-MASQ', ['-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000']],
      ]),
    },
    trailing: { filter: new Map(), nat: new Map([['KUBE-SERVICES', ['-A KUBE-SERVICES -m comment --comment "nodeports; last" -j KUBE-NODEPORTS']]]) },
    services,
    jumps: [{ table: 'nat', chain: 'PREROUTING', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] }],
    endpointCount: services.length,
    largeClusterMode: false,
    skipped: [],
  };
}

// --- a fake kernel -----------------------------------------------------------

class FakeKernel {
  tables: Tables = emptyTables();
  restores: string[] = [];
  failOn?: RegExp;
  constructor() {
    for (const c of ['INPUT', 'FORWARD', 'OUTPUT']) this.tables.filter.set(c, []);
    for (const c of ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']) this.tables.nat.set(c, []);
  }
  async restore(payload: string): Promise<void> {
    if (this.failOn?.test(payload)) throw new Error('injected failure');
    const copy: Tables = { filter: new Map([...this.tables.filter].map(([k, v]) => [k, [...v]])), nat: new Map([...this.tables.nat].map(([k, v]) => [k, [...v]])) };
    applyToModel(copy, payload); // all or nothing, like a restore
    this.tables = copy;
    this.restores.push(payload);
  }
  async read() {
    return parseSave(await this.save());
  }
  async save(): Promise<string> {
    let s = '';
    for (const t of ['filter', 'nat'] as TableName[]) {
      s += `*${t}\n`;
      for (const c of this.tables[t].keys()) s += `:${c} ${/^[A-Z]+$/.test(c) ? 'ACCEPT' : '-'} [0:0]\n`;
      for (const rules of this.tables[t].values()) for (const r of rules) s += r + '\n';
      s += 'COMMIT\n';
    }
    return s;
  }
  /** Our chains only (what the full ruleset describes). */
  ours(): Tables {
    const out = emptyTables();
    for (const t of ['filter', 'nat'] as TableName[]) for (const [c, r] of this.tables[t]) if (c.startsWith('KUBE-')) out[t].set(c, r);
    return out;
  }
}

const tools: IptablesTools = { family: 'IPv4', backend: 'nft', iptables: 'iptables', restore: 'iptables-restore', save: 'iptables-save', wrap: [] };

function sorted(t: Tables): Record<string, [string, string[]][]> {
  const o: Record<string, [string, string[]][]> = {};
  for (const k of ['filter', 'nat'] as TableName[]) o[k] = [...t[k]].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return o;
}

// --- tests -------------------------------------------------------------------

test('diffSeq: applying the edits turns a into b (random sequences)', () => {
  let seed = 42;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let iter = 0; iter < 500; iter++) {
    const a = Array.from({ length: rnd(30) }, () => 'r' + rnd(8));
    const b = Array.from({ length: rnd(30) }, () => 'r' + rnd(8));
    const e = diffSeq(a, b)!;
    const cur = a.filter((_, i) => !e.del.includes(i));
    for (const j of e.ins) cur.splice(j, 0, b[j]!);
    assert.deepEqual(cur, b, `a=${a} b=${b}`);
    // Never more edits than rewriting everything.
    assert.ok(e.del.length + e.ins.length <= a.length + b.length);
  }
});

test('diffSeq: a one-rule change costs one edit in a long chain, and the edit cap falls back', () => {
  const a = Array.from({ length: 10_000 }, (_, i) => `rule ${i}`);
  const b = [...a];
  b.splice(5000, 1, 'new rule');
  const e = diffSeq(a, b)!;
  assert.deepEqual(e, { del: [5000], ins: [5000] });
  const c = a.map((r, i) => (i % 2 ? r + 'x' : r));
  assert.equal(diffSeq(a, c, 100), null);
});

test('planSync: from empty, and between arbitrary rulesets, the model ends equal to the full ruleset', () => {
  const steps = [
    ruleset([svc('a', 2), svc('b', 3, 30001), svc('c', 0)]),
    ruleset([svc('a', 3), svc('b', 3, 30001), svc('c', 1)]), // endpoint added; c gets endpoints
    ruleset([svc('a', 3), svc('bb', 2), svc('c', 1, 30002)]), // b removed, bb added, c gets a NodePort
    ruleset([]), // everything removed
    ruleset([svc('z', 1), svc('a', 1)]),
  ];
  let model = emptyTables();
  let cur = emptyTables();
  for (const rs of steps) {
    const desired = fullTables(rs);
    const plan = planSync({ current: cur, desired });
    for (const p of stagePayloads(plan)) applyToModel(model, p);
    // Chains we no longer want that are not service chains (none here) would stay; compare ours.
    assert.deepEqual(sorted(model), sorted(desired));
    cur = desired;
    model = structuredClone(model);
  }
});

test('staged first sync: every stage leaves only complete services reachable from KUBE-SERVICES', () => {
  const services = Array.from({ length: 40 }, (_, i) => svc(`s${String(i).padStart(2, '0')}`, 1 + (i % 4), i % 3 ? 0 : 30000 + i));
  const rs = ruleset(services);
  const desired = fullTables(rs);
  const plan = planSync({ current: emptyTables(), desired });
  const stages = stagePayloads(plan, 25);
  assert.ok(stages.length > 5, `expected several stages, got ${stages.length}`);
  const model = emptyTables();
  for (const st of stages) {
    applyToModel(model, st);
    // Walk from KUBE-SERVICES/KUBE-NODEPORTS: every chain reached must be complete.
    const seen = new Set<string>();
    const walk = (c: string): void => {
      if (seen.has(c)) return;
      seen.add(c);
      const rules = model.nat.get(c);
      assert.ok(rules, `a rule jumps to ${c}, which does not exist yet`);
      if (c !== 'KUBE-SERVICES' && c !== 'KUBE-NODEPORTS') assert.deepEqual(rules, desired.nat.get(c), `${c} is reachable but incomplete`);
      for (const r of rules) {
        const m = / -j (KUBE-[A-Z0-9-]+)/.exec(r);
        if (m && m[1] !== 'KUBE-MARK-MASQ') walk(m[1]!);
      }
    };
    walk('KUBE-SERVICES');
  }
  assert.deepEqual(sorted(model), sorted(desired));
});

test('planStages: endpoint chains first in descending name order, each service whole in one stage, one phase per stage', () => {
  const services = Array.from({ length: 30 }, (_, i) => svc(`s${String(i).padStart(2, '0')}`, 1 + (i % 5), i % 4 ? 0 : 30000 + i));
  const rs = ruleset(services);
  const groups = serviceGroups(rs);
  const plan = planSync({ current: emptyTables(), desired: fullTables(rs), groupOf: (c) => groups.get(c) });
  const stages = planStages(plan, 12, 20);
  // Phases never go backwards, and a stage holds one phase.
  for (let i = 1; i < stages.length; i++) assert.ok(stages[i]!.phase >= stages[i - 1]!.phase);
  const declared = (p: string): string[] => [...p.matchAll(/^:(\S+)/gm)].map((m) => m[1]!);
  // Endpoint chains: descending names across the whole phase (iptables-nft's name list stays short).
  const seps = stages.filter((s) => s.phase === Phase.Endpoints).flatMap((s) => declared(s.payload));
  assert.equal(seps.length, services.reduce((n, s) => n + [...s.chains.keys()].filter((c) => c.startsWith('KUBE-SEP-')).length, 0));
  assert.deepEqual(seps, [...seps].sort().reverse());
  for (const st of stages.filter((s) => s.phase === Phase.Endpoints)) assert.ok(declared(st.payload).every((c) => c.startsWith('KUBE-SEP-')));
  // Service chains: every service's non-endpoint chains in exactly one stage, even past the stage size.
  const svcStages = stages.filter((s) => s.phase === Phase.ServiceChains);
  assert.ok(svcStages.length > 3);
  for (const s of services) {
    const own = [...s.chains.keys()].filter((c) => !c.startsWith('KUBE-SEP-'));
    if (!own.length) continue;
    const holding = svcStages.filter((st) => own.some((c) => declared(st.payload).includes(c)));
    assert.equal(holding.length, 1, `${s.key} split over ${holding.length} stages`);
    assert.ok(own.every((c) => declared(holding[0]!.payload).includes(c)));
  }
  // Applied in order, the stages build the full ruleset.
  const model = emptyTables();
  for (const st of stages) applyToModel(model, st.payload);
  assert.deepEqual(sorted(model), sorted(fullTables(rs)));
  // A plan that fits in one stage stays one restore, phases and all.
  const small = planSync({ current: fullTables(rs), desired: fullTables(ruleset([...services.slice(1), svc('new', 2)])) });
  assert.equal(planStages(small, 10_000).length, 1);
});

test('IptablesSyncer: endpoint and service-chain stages run concurrently, nothing else does; a failure stops the batch', async () => {
  class SlowKernel extends FakeKernel {
    inFlight = 0;
    maxInFlight = 0;
    overlapped: string[] = [];
    override async restore(payload: string): Promise<void> {
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      if (this.inFlight > 1) this.overlapped.push(payload);
      await new Promise((r) => setTimeout(r, 2));
      try {
        await super.restore(payload);
      } finally {
        this.inFlight--;
      }
    }
  }
  const rs = ruleset(Array.from({ length: 40 }, (_, i) => svc(`c${String(i).padStart(2, '0')}`, 1 + (i % 3), i % 5 ? 0 : 31000 + i)));
  const k = new SlowKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k, stageLines: 15, endpointStageLines: 15, concurrency: 3 });
  const r = await syncer.sync(rs, { full: true });
  assert.equal(k.maxInFlight, 3);
  assert.ok(r.restores > 10);
  for (const p of k.overlapped) assert.doesNotMatch(p, /^-A KUBE-(SERVICES|NODEPORTS) /m, 'shared-chain edits never overlap');
  const ours = k.ours();
  assert.deepEqual(sorted(ours), sorted(fullTables(rs)));

  // A failing stage: the sync throws, and the next one is full.
  const k2 = new SlowKernel();
  k2.failOn = /KUBE-SVC-C07/;
  const s2 = new IptablesSyncer({ tools, kernel: k2, stageLines: 15, endpointStageLines: 15, concurrency: 3 });
  await assert.rejects(s2.sync(rs, { full: true }), /injected failure/);
  assert.equal(s2.needsFull, true);
  assert.ok(!k2.tables.nat.get('KUBE-SERVICES')?.length, 'no service made reachable after the failure');
});

test('IptablesSyncer: a jump target the ruleset does not declare is created when missing, never flushed when present', async () => {
  const rs = ruleset([svc('a', 1)]);
  rs.jumps.push({ table: 'filter', chain: 'INPUT', args: ['-m', 'comment', '--comment', 'kubernetes firewall', '-j', 'KUBE-FIREWALL'] });
  const k = new FakeKernel();
  const r = await new IptablesSyncer({ tools, kernel: k }).sync(rs, { full: true });
  assert.equal(r.jumpsInserted, 2);
  assert.deepEqual(k.tables.filter.get('KUBE-FIREWALL'), []);
  assert.equal(k.tables.filter.get('INPUT')!.length, 1);
  // kubelet's chain, with its rule: kept as it is.
  const k2 = new FakeKernel();
  k2.tables.filter.set('KUBE-FIREWALL', ['-A KUBE-FIREWALL -j DROP']);
  await new IptablesSyncer({ tools, kernel: k2 }).sync(rs, { full: true });
  assert.deepEqual(k2.tables.filter.get('KUBE-FIREWALL'), ['-A KUBE-FIREWALL -j DROP']);
  assert.doesNotMatch(k2.restores.join('\n'), /^:KUBE-FIREWALL/m);
});

test('IptablesSyncer: partial syncs edit only what changed and match a full load', async () => {
  const k = new FakeKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k });
  const a = ruleset([svc('a', 2), svc('b', 3, 30001), svc('c', 0)]);
  const r1 = await syncer.sync(a, { full: true });
  assert.equal(r1.jumpsInserted, 1);
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(a)));
  assert.deepEqual(k.tables.nat.get('PREROUTING'), ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']);

  // One endpoint added to b: only b's chains and nothing in KUBE-SERVICES.
  const b = ruleset([svc('a', 2), svc('b', 4, 30001), svc('c', 0)]);
  k.restores.length = 0;
  const r2 = await syncer.sync(b, { full: false, changed: new Set(['ns/b:p']) });
  assert.equal(r2.restores, 1);
  assert.equal(r2.stats.ruleInserts + r2.stats.ruleDeletes, 0, 'shared chains untouched');
  assert.equal(r2.stats.created, 1); // the new SEP chain
  assert.equal(r2.stats.rewritten, 1); // the SVC chain
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(b)));
  assert.doesNotMatch(k.restores[0]!, /KUBE-SERVICES/);

  // c gains endpoints, a is removed: a -D and a -I in shared chains, a's chains deleted.
  const c = ruleset([svc('b', 4, 30001), svc('c', 1)]);
  const r3 = await syncer.sync(c, { full: false, changed: new Set(['ns/a:p', 'ns/c:p']) });
  assert.ok(r3.stats.deleted >= 3, 'a’s chains deleted');
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(c)));
  assert.match(k.restores.at(-1)!, /^-D KUBE-SERVICES -m comment --comment "ns\/a:p cluster IP"/m);
  assert.match(k.restores.at(-1)!, /^-X KUBE-SEP-A0$/m);

  // Nothing changed: no restore at all.
  const r4 = await syncer.sync(c, { full: false, changed: new Set() });
  assert.equal(r4.restores, 0);
});

test('IptablesSyncer: a full sync repairs drift and keeps foreign rules; jumps are never duplicated', async () => {
  const k = new FakeKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k });
  const a = ruleset([svc('a', 2), svc('b', 3, 30001)]);
  await syncer.sync(a, { full: true });
  // Someone deletes a rule of ours, adds a rule to KUBE-SERVICES, flushes a SEP chain and adds a foreign chain.
  k.tables.nat.get('KUBE-SERVICES')!.splice(0, 1);
  k.tables.nat.get('KUBE-SERVICES')!.push('-A KUBE-SERVICES -j RETURN');
  k.tables.nat.set('KUBE-SEP-A0', []);
  k.tables.nat.set('MY-CHAIN', ['-A MY-CHAIN -j RETURN']);
  k.tables.nat.set('KUBE-SVC-STALE', ['-A KUBE-SVC-STALE -j RETURN']);
  const r = await syncer.sync(a, { full: true });
  assert.equal(r.jumpsInserted, 0);
  const ours = k.ours();
  ours.nat.delete('KUBE-PROXY-CANARY');
  assert.deepEqual(sorted(ours), sorted(fullTables(a)));
  assert.deepEqual(k.tables.nat.get('MY-CHAIN'), ['-A MY-CHAIN -j RETURN']);
  assert.equal(k.tables.nat.get('PREROUTING')!.length, 1);
});

test('IptablesSyncer: a failed restore changes nothing and makes the next sync full', async () => {
  const k = new FakeKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k });
  const a = ruleset([svc('a', 2), svc('b', 3)]);
  await syncer.sync(a, { full: true });
  const before = await k.save();
  k.failOn = /KUBE-SEP-B3/;
  const b = ruleset([svc('a', 2), svc('b', 4)]);
  await assert.rejects(syncer.sync(b, { full: false, changed: new Set(['ns/b:p']) }), /injected/);
  assert.equal(await k.save(), before, 'kernel unchanged');
  assert.equal(syncer.needsFull, true);
  k.failOn = undefined;
  const r = await syncer.sync(b, { full: false, changed: new Set(['ns/b:p']) });
  assert.equal(r.full, true);
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(b)));
});

test('IptablesSyncer: after a failed restore, a full sync rewrites chains whose rule count did not change', async () => {
  const k = new FakeKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k });
  await syncer.sync(ruleset([svc('a', 2), svc('b', 3)]), { full: true });
  await syncer.sync(ruleset([svc('a', 2), svc('b', 3)]), { full: true }); // past the first (verifying) sync
  const b = ruleset([svc('a', 2), svc('b', 3)]);
  const sb = b.services.find((x) => x.key === 'ns/b:p')!;
  sb.chains.set('KUBE-SEP-B0', sb.chains.get('KUBE-SEP-B0')!.map((r) => r.replace('10.0.0.1', '10.0.0.99')));
  k.failOn = /10\.0\.0\.99/;
  await assert.rejects(syncer.sync(b, { full: false, changed: new Set(['ns/b:p']) }));
  k.failOn = undefined;
  const r = await syncer.sync(b, { full: false, changed: new Set(['ns/b:p']) });
  assert.equal(r.full, true);
  assert.equal(r.stats.rewritten, 1);
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(b)));
});

test('incremental render + partial syncs over the real renderer equal a full render', async () => {
  let state = syntheticState(60, 3);
  const k = new FakeKernel();
  const syncer = new IptablesSyncer({ tools, kernel: k, stageLines: 200 });
  const renderer = new IncrementalRenderer('IPv4');
  const tracker = new ChangeTracker('node-a');
  tracker.update(state);
  tracker.take();
  await syncer.sync(renderer.full(state, benchRenderOptions), { full: true });
  assert.ok(k.restores.length > 3, 'first sync staged');
  for (let c = 0; c < 25; c++) {
    const i = (c * 7) % 60;
    // A new snapshot per change, as sources emit them (its index is built for it).
    state = { ...state, endpointSlices: state.endpointSlices.slice() };
    if (c % 5 === 4) {
      state.services = state.services.filter((_, j) => j !== i);
    } else state.endpointSlices[i] = syntheticSlice(i, 1 + (c % 5), c);
    tracker.update(state);
    const p = tracker.take();
    const rs = renderer.partial(state, benchRenderOptions, p.since.keys());
    await syncer.sync(rs, { full: false, changed: p.changed });
    const full = renderFamily(state, benchRenderOptions, 'IPv4');
    assert.deepEqual(sorted(k.ours()), sorted(fullTables(full)), `after change ${c}`);
  }
});

test('IptablesSyncer on a large nft table (service chains listed, not read): trusted when unchanged, recreated when missing', async () => {
  const { UNREAD_CHAIN } = await import('../../src/dataplane/iptables/sync-read.js');
  const k = new FakeKernel();
  const io = {
    restore: (p: string) => k.restore(p),
    read: async () => {
      const p = parseSave(await k.save());
      for (const t of ['filter', 'nat']) for (const name of p[t]!.chains.keys()) if (/^KUBE-(SEP|SVC|SVL|EXT|FW)-/.test(name)) p[t]!.chains.set(name, UNREAD_CHAIN);
      return p;
    },
  };
  const a = ruleset([svc('a', 2), svc('b', 3, 30001)]);
  const s1 = new IptablesSyncer({ tools, kernel: io });
  await s1.sync(a, { full: true });
  await s1.sync(a, { full: true });
  const again = await s1.sync(a, { full: true });
  assert.equal(again.restores, 0, 'unchanged chains are trusted');
  k.tables.nat.delete('KUBE-SEP-B1');
  k.tables.nat.set('KUBE-SVC-B', []); // emptied: not detectable without reading, but B1 missing is
  const fix = await s1.sync(a, { full: true });
  assert.equal(fix.stats.created, 1);
  // A new process (no belief) rewrites every service chain it cannot read.
  const s2 = new IptablesSyncer({ tools, kernel: io });
  const adopt = await s2.sync(a, { full: true });
  assert.equal(adopt.stats.rewritten, fullTables(a).nat.size - 3);
  assert.deepEqual(sorted(k.ours()), sorted(fullTables(a)));
});
