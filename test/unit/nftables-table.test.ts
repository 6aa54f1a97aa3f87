// The nftables table mirror: partial syncs write only element differences
// (and a set plus its rule when a new shape appears), and a sequence of them
// leaves exactly what a fresh full sync of the final cluster would write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterState } from '../../src/k8s/types.js';
import { familyContext, fixedRules, renderServices, assignSlots } from '../../src/dataplane/nftables/render.js';
import { familyWords } from '../../src/dataplane/nftables/layout.js';
import { TableMirror } from '../../src/dataplane/nftables/table.js';
import type { EndpointInfo } from '../../src/proxy/endpoints.js';
import { ep, fakeProxierOptions, makeService, makeSlice, state, testNodeName } from './iptables-helpers.js';

const opts = fakeProxierOptions('IPv4', { localhostNodePorts: false, nfacct: {} });

/** A fake kernel: applies add/delete element lines and refuses what nft refuses (deleting a missing element, adding one twice). */
class FakeKernel {
  sets = new Map<string, Map<string, string>>();
  apply(text: string): void {
    for (const line of text.split('\n')) {
      const m = /^(add|delete) element ip kproxy (\S+) \{ (.*) \}$/.exec(line);
      if (!m) continue;
      const s = this.sets.get(m[2]!) ?? new Map<string, string>();
      this.sets.set(m[2]!, s);
      for (const item of m[3]!.split(', ')) {
        const [k, v] = item.split(' : ');
        if (m[1] === 'add') {
          assert.ok(!s.has(k!), `add of an existing element ${m[2]} ${k}`);
          s.set(k!, v ?? '');
        } else {
          assert.ok(s.has(k!), `delete of a missing element ${m[2]} ${k}`);
          s.delete(k!);
        }
      }
    }
    for (const [k, s] of this.sets) if (s.size === 0) this.sets.delete(k);
  }
}

function cluster(eps: Record<string, string[]>, affinity = new Set<string>()): ClusterState {
  const services = Object.keys(eps).map((name) =>
    makeService('ns', name, (s) => {
      // Addresses follow the name, so removing one service changes no other.
      const i = name.charCodeAt(0) - 97;
      s.type = 'NodePort';
      s.clusterIPs = [`172.30.0.${i + 1}`];
      s.ports = [{ name: 'p', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30000 + i }];
      if (affinity.has(name)) {
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = 10800;
      }
    }),
  );
  const slices = Object.entries(eps).map(([name, ips]) => makeSlice('ns', name, 1, ips.map((ip) => ep(ip, { nodeName: testNodeName })), [{ name: 'p', port: 8080 }]));
  return state(services, slices);
}

function contributions(st: ClusterState, m: TableMirror, only?: string[]) {
  const ctx = familyContext(st, opts, 'IPv4');
  const all = renderServices(st, ctx, m.slotHistory());
  if (!only) return { ctx, all };
  const changed = new Map(only.map((k) => [k, all.get(k) ?? null] as const));
  return { ctx, all, changed };
}

test('a change to one endpoint writes that endpoint only; a new endpoint count adds its set and rule', () => {
  const m = new TableMirror(familyWords('IPv4'));
  const k = new FakeKernel();
  const st1 = cluster({ a: ['10.0.1.1', '10.0.1.2', '10.0.1.3'], b: ['10.0.1.9'] });
  const { ctx, all } = contributions(st1, m);
  const f = m.full(fixedRules(ctx), all, null);
  k.apply(f.tx.text);
  f.commit();
  // a loses 10.0.1.2: its slot 1 takes the last endpoint, slot 2 goes, a moves from the 3- to the 2-endpoint sets.
  const st2 = cluster({ a: ['10.0.1.1', '10.0.1.3'], b: ['10.0.1.9'] });
  const { changed } = contributions(st2, m, ['ns/a']);
  const tx = m.partial(changed!);
  k.apply(tx.text);
  assert.match(tx.text, /^add set ip kproxy int-tcp-n2 /m);
  assert.match(tx.text, /^add rule ip kproxy int ip daddr \. meta l4proto \. th dport @int-tcp-n2 dnat ip to .* numgen random mod 2 map @int-eps-tcp$/m);
  assert.match(tx.text, /^delete element ip kproxy int-eps-tcp \{ 172\.30\.0\.1 \. tcp \. 80 \. 1, 172\.30\.0\.1 \. tcp \. 80 \. 2 \}$/m);
  assert.match(tx.text, /^add element ip kproxy int-eps-tcp \{ 172\.30\.0\.1 \. tcp \. 80 \. 1 : 10\.0\.1\.3 \. 8080 \}$/m);
  assert.doesNotMatch(tx.text, /172\.30\.0\.2/, 'service b is not touched');
  assert.doesNotMatch(tx.text, / \. 0 : /, 'slot 0 keeps its endpoint');
  // The same change again writes nothing.
  const again = m.partial(contributions(st2, m, ['ns/a']).changed!);
  assert.equal(again.text, '');
});

test('any sequence of partial syncs leaves what a full sync of the end state writes', () => {
  const r = (() => {
    let a = 7;
    return () => ((a = (a * 1103515245 + 12345) >>> 0) / 4294967296);
  })();
  const names = ['a', 'b', 'c', 'd'];
  let eps: Record<string, string[]> = { a: ['10.0.1.1'], b: [], c: ['10.0.1.5', '10.0.1.6'], d: ['10.0.1.1'] };
  const aff = new Set(['c']);
  const m = new TableMirror(familyWords('IPv4'));
  const k = new FakeKernel();
  let st = cluster(eps, aff);
  const first = contributions(st, m);
  const f = m.full(fixedRules(first.ctx), first.all, null);
  k.apply(f.tx.text);
  f.commit();
  for (let step = 0; step < 200; step++) {
    const name = names[Math.floor(r() * names.length)]!;
    const next = { ...eps };
    if (r() < 0.15) delete next[name];
    else {
      const pool = Array.from({ length: 8 }, (_, i) => `10.0.1.${i + 1}`);
      next[name] = pool.filter(() => r() < 0.4);
    }
    eps = next;
    st = cluster(eps, aff);
    k.apply(m.partial(contributions(st, m, [`ns/${name}`]).changed!).text);
  }
  // A fresh mirror renders without slot history: compare what each slot set holds per frontend, and everything else exactly.
  const fresh = new TableMirror(familyWords('IPv4'));
  const fk = new FakeKernel();
  const c = contributions(st, fresh);
  fk.apply(fresh.full(fixedRules(c.ctx), c.all, null).tx.text);
  const norm = (kern: FakeKernel) => {
    const out: Record<string, string[]> = {};
    for (const [set, s] of kern.sets) {
      out[set] = [...s].map(([key, v]) => (set.includes('-eps-') ? `${key.replace(/ \. \d+$/, '')} → ${v}` : `${key}${v ? ' : ' + v : ''}`)).sort();
    }
    return out;
  };
  assert.deepEqual(norm(k), norm(fk));
});

test('slots: survivors keep theirs, newcomers fill holes, the last endpoint fills an inner hole', () => {
  const e = (s: string) => ({ endpoint: s }) as EndpointInfo;
  const ids = (xs: EndpointInfo[]) => xs.map((x) => x.endpoint);
  assert.deepEqual(ids(assignSlots(undefined, [e('a'), e('b')])), ['a', 'b']);
  assert.deepEqual(ids(assignSlots(['a', 'b', 'c'], [e('a'), e('c')])), ['a', 'c']);
  assert.deepEqual(ids(assignSlots(['a', 'b', 'c', 'd'], [e('a'), e('c'), e('d')])), ['a', 'd', 'c']);
  assert.deepEqual(ids(assignSlots(['a', 'b', 'c'], [e('a'), e('c'), e('x')])), ['a', 'x', 'c']);
  assert.deepEqual(ids(assignSlots(['a'], [e('a'), e('y'), e('x')])), ['a', 'y', 'x']);
  assert.deepEqual(ids(assignSlots(['a', 'b'], [])), []);
});

test('a fresh node loads in steps: rules first, then the elements in two halves, firewall sets together; the steps add up to the transaction', () => {
  const st = cluster({ a: ['10.0.1.1', '10.0.1.2'], b: ['10.0.1.3'], c: [] }, new Set(['b']));
  const m = new TableMirror(familyWords('IPv4'));
  const { ctx, all } = contributions(st, m);
  const { tx } = m.full(fixedRules(ctx), all, null);
  const s = tx.staged!;
  assert.ok(s, 'staged for a fresh node');
  assert.doesNotMatch(s.first, /^add element|^delete table/m);
  assert.equal(s.parallel.length, 2);
  const fw = s.parallel.map((p) => /^add element ip kproxy fw-(fe|allow) /m.test(p));
  assert.ok(!fw[1], 'firewall sets load in the first half only');
  const elements = (t: string) => t.split('\n').filter((l) => l.startsWith('add element')).sort();
  assert.deepEqual(elements(s.parallel.join('')), elements(tx.text));
  // Refilling an existing table is never staged.
  assert.equal(m.full(fixedRules(ctx), all, { chains: ['services'], sets: ['int-fe'] }).tx.staged, undefined);
});
