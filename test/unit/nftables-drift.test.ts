// The agent's drift check: reading kproxy's table back from nft's JSON,
// comparing it with what was written, and the cheap listing of chains and
// sets that full syncs use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { familyContext, fixedRules, renderServices } from '../../src/dataplane/nftables/render.js';
import { familyWords } from '../../src/dataplane/nftables/layout.js';
import { TableMirror } from '../../src/dataplane/nftables/table.js';
import { parseLiveTable, type ListingScan, type LiveTable } from '../../src/dataplane/nftables/readback.js';
import { objectsOf } from '../../src/dataplane/nftables/apply.js';
import { ep, fakeProxierOptions, makeService, makeSlice, state, testNodeName } from './iptables-helpers.js';

const opts = fakeProxierOptions('IPv4', { localhostNodePorts: false, nfacct: {} });

function cluster(eps: string[]) {
  const svc = makeService('ns', 'web', (s) => {
    s.type = 'LoadBalancer';
    s.clusterIPs = ['172.30.0.1'];
    s.ports = [{ name: 'p', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }];
    s.loadBalancerIngress = [{ ip: '192.168.9.9' }];
    s.loadBalancerSourceRanges = ['10.0.0.0/8', '1.2.3.4/32'];
  });
  return state([svc], [makeSlice('ns', 'web', 1, eps.map((ip) => ep(ip, { nodeName: testNodeName })), [{ name: 'p', port: 8080 }])]);
}

function written(eps: string[]) {
  const m = new TableMirror(familyWords('IPv4'));
  const st = cluster(eps);
  const ctx = familyContext(st, opts, 'IPv4');
  const f = m.full(fixedRules(ctx), renderServices(st, ctx, m.slotHistory()), null);
  f.commit();
  return { m, text: f.tx.text, st };
}

/** What the kernel would list after `text`, with /32 printed bare as nft does. */
function kernelOf(text: string): LiveTable {
  const sets = new Map<string, Set<string>>();
  const rules = new Map<string, number>();
  for (const l of text.split('\n')) {
    let x = /^add (?:set|map) ip kproxy (\S+) /.exec(l);
    if (x) sets.set(x[1]!, new Set());
    x = /^add chain ip kproxy (\S+)/.exec(l);
    if (x) rules.set(x[1]!, 0);
    x = /^add rule ip kproxy (\S+) /.exec(l);
    if (x) rules.set(x[1]!, rules.get(x[1]!)! + 1);
    x = /^add element ip kproxy (\S+) \{ (.*) \}$/.exec(l);
    if (x) for (const e of x[2]!.split(', ')) sets.get(x[1]!)!.add(e.replace(/\/32\b/, ''));
  }
  return { sets, rules };
}

/** The kernel's listing, one set at a time, as the agent reads it. */
function scanOf(live: LiveTable): ListingScan {
  return (v) => {
    for (const [n, s] of live.sets) {
      v.openSet(n);
      for (const e of s) v.element(e);
      v.closeSet();
    }
    return live.rules;
  };
}

test('a table as written shows no drift; elements and rules changed by hand are named', () => {
  const { m, text } = written(['10.0.1.1', '10.0.1.2']);
  const live = kernelOf(text);
  assert.ok(live.sets.get('fw-allow')!.has('192.168.9.9 . tcp . 80 . 1.2.3.4'), 'the fixture prints /32 bare');
  const wt = m.watch();
  assert.equal(m.drift(scanOf(live), wt), null);
  live.sets.get('int-fe')!.delete('172.30.0.1 . tcp . 80');
  live.sets.get('int-fe')!.add('172.30.0.99 . tcp . 80');
  const eps = live.sets.get('int-eps-tcp')!;
  eps.delete('172.30.0.1 . tcp . 80 . 1 : 10.0.1.2 . 8080');
  eps.add('172.30.0.1 . tcp . 80 . 1 : 10.0.1.7 . 8080');
  live.rules.set('services', live.rules.get('services')! - 1);
  const d = m.drift(scanOf(live), wt)!;
  assert.deepEqual(d.missing.sort(), ['int-eps-tcp: 172.30.0.1 . tcp . 80 . 1 : 10.0.1.2 . 8080', 'int-fe: 172.30.0.1 . tcp . 80']);
  assert.deepEqual(d.unexpected.sort(), ['int-eps-tcp: 172.30.0.1 . tcp . 80 . 1 : 10.0.1.7 . 8080', 'int-fe: 172.30.0.99 . tcp . 80']);
  assert.equal(d.rules.length, 1);
  assert.match(d.rules[0]!, /^services: \d+ rules, want \d+$/);
  // A deleted table (no sets, no chains) is drift too.
  assert.ok(m.drift(scanOf({ sets: new Map(), rules: new Map() }), wt)!.missing.length > 0);
});

test('elements a partial sync touches while the kernel is read are not drift; a full sync voids the check', () => {
  const { m, text } = written(['10.0.1.1', '10.0.1.2']);
  const before = kernelOf(text);
  const wt = m.watch();
  // The listing was taken before a partial sync swapped 10.0.1.2 for 10.0.1.3.
  const st = cluster(['10.0.1.1', '10.0.1.3']);
  const ctx = familyContext(st, opts, 'IPv4');
  m.partial(new Map([['ns/web', renderServices(st, ctx, m.slotHistory()).get('ns/web')!]]));
  assert.equal(m.drift(scanOf(before), wt), null);
  // An untouched element deleted by hand is still drift.
  before.sets.get('ext-masq')!.clear();
  assert.deepEqual(m.drift(scanOf(before), wt)?.missing, ['ext-masq: 192.168.9.9 . tcp . 80']);
  m.unwatch(wt);
  const wt2 = m.watch();
  const f = m.full(fixedRules(ctx), renderServices(st, ctx, m.slotHistory()), { chains: [], sets: [] });
  f.commit();
  assert.equal(m.drift(scanOf(before), wt2), null, 'void after a full sync replaced the picture');
});

test('sameAs: a fresh render of the same cluster equals what was written; a change does not', () => {
  const { m, st } = written(['10.0.1.1', '10.0.1.2']);
  const ctx = familyContext(st, opts, 'IPv4');
  assert.ok(m.sameAs(m.full(fixedRules(ctx), renderServices(st, ctx, m.slotHistory()), { chains: [], sets: [] }).next));
  const st2 = cluster(['10.0.1.1']);
  const ctx2 = familyContext(st2, opts, 'IPv4');
  assert.ok(!m.sameAs(m.full(fixedRules(ctx2), renderServices(st2, ctx2, m.slotHistory()), { chains: [], sets: [] }).next));
});

test('`nft list table` text reads as kproxy’s element text, a set at a time; rules are counted per chain', () => {
  const text = [
    'table ip kproxy { # handle 5',
    '\tcomment "rules for kproxy"',
    '\tset fw-allow {',
    '\t\ttype ipv4_addr . inet_proto . inet_service . ipv4_addr',
    '\t\tflags interval',
    '\t\tcomment "LB frontend . allowed source range"',
    '\t\telements = { 10.96.0.9 . tcp . 80 . 10.0.0.0/8,',
    '\t\t\t     10.96.0.9 . tcp . 80 . 1.2.3.4 }',
    '\t}',
    '\tmap int-eps-tcp {',
    '\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 65536 : ip daddr . tcp dport',
    '\t\telements = { 10.96.103.220 . tcp . 4000 . 0 : 10.244.1.5 . 8080, 10.96.103.220 . tcp . 4000 . 1 : 10.244.1.6 . 8080 }',
    '\t}',
    '\tset reject-int {',
    '\t\ttype ipv4_addr . inet_proto . inet_service',
    '\t}',
    '\tchain nat-prerouting {',
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    '\t\tjump services',
    '\t}',
    '\tchain empty {',
    '\t}',
    '\tchain int {',
    '\t\tjump int-aff',
    '\t\tip daddr . meta l4proto . th dport @int-tcp-n2 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @int-eps-tcp',
    '\t}',
    '}',
  ].join('\n');
  const live = parseLiveTable(text);
  assert.deepEqual([...live.sets.get('fw-allow')!], ['10.96.0.9 . tcp . 80 . 10.0.0.0/8', '10.96.0.9 . tcp . 80 . 1.2.3.4']);
  assert.deepEqual([...live.sets.get('int-eps-tcp')!], ['10.96.103.220 . tcp . 4000 . 0 : 10.244.1.5 . 8080', '10.96.103.220 . tcp . 4000 . 1 : 10.244.1.6 . 8080']);
  assert.equal(live.sets.get('reject-int')!.size, 0);
  assert.deepEqual([...live.rules], [['nat-prerouting', 1], ['empty', 0], ['int', 2]]);
  assert.equal(parseLiveTable('garbage\nmore garbage').sets.size, 0);
});

test('the cheap listing: only kproxy’s table, chains apart from sets; null when the table is not there', () => {
  const listing = [
    'table ip kproxy {', '\tset int-fe {', '\t\ttype ipv4_addr . inet_proto . inet_service', '\t}', '}',
    'table ip other {', '\tset mine {', '\t\ttype ipv4_addr', '\t}', '\tchain theirs {', '\t}', '}',
    'table ip kproxy {', '\tmap int-eps-tcp {', '\t\ttype ipv4_addr : ipv4_addr', '\t}', '}',
    'table ip kproxy {', '\tchain nat-prerouting {', '\t\ttype nat hook prerouting priority dstnat; policy accept;', '\t}', '\tchain services {', '\t}', '}',
  ].join('\n');
  assert.deepEqual(objectsOf(listing, 'ip'), { chains: ['nat-prerouting', 'services'], sets: ['int-fe', 'int-eps-tcp'] });
  assert.equal(objectsOf(listing, 'ip6'), null);
  assert.equal(objectsOf('table ip other {\n\tchain c {\n\t}\n}\n', 'ip'), null);
});

test('a fresh node’s two parallel halves keep the firewall’s frontends and allowed ranges together', () => {
  const st = cluster(['10.0.1.1', '10.0.1.2']);
  const ctx = familyContext(st, opts, 'IPv4');
  const { tx } = new TableMirror(familyWords('IPv4')).full(fixedRules(ctx), renderServices(st, ctx), null);
  const [a, b] = tx.staged!.parallel;
  assert.match(a!, /^add element ip kproxy fw-fe /m);
  assert.match(a!, /^add element ip kproxy fw-allow /m);
  assert.doesNotMatch(b ?? '', /^add element ip kproxy fw-/m);
});
