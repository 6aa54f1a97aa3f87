// Each IPVS scheduler's choices on fixed sequences. The expected values were
// worked out from the kernel sources (net/netfilter/ipvs/ip_vs_*.c), by hand
// for the counting schedulers and with an independent script for the hashes
// (SipHash-1-3 checked against CPython's siphash13 with a zero key).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildHashTable,
  buildMaglevTable,
  createScheduler,
  MH_TAB_SIZE,
  type SchedServer,
} from '../../src/dataplane/schedulers/index.js';
import { addrFold, dhHashkey, hsiphashU32, MH_KEY1, mhHashkey, shHashkey } from '../../src/dataplane/schedulers/hash.js';

function srv(key: string, weight = 1, activeConns = 0, inactiveConns = 0, ip = `10.1.0.${key.charCodeAt(0) - 64}`): SchedServer {
  return { key, ip, port: 80, weight, activeConns, inactiveConns };
}
const client = { srcIP: '10.0.0.1', srcPort: 40000, dstIP: '10.96.0.10' };
function picks(name: string, servers: SchedServer[], n: number): string[] {
  const s = createScheduler(name);
  return Array.from({ length: n }, () => s.schedule(servers, client)?.key ?? '-');
}

test('rr cycles in list order and skips weight-0 and unavailable servers', () => {
  assert.deepEqual(picks('rr', [srv('A'), srv('B'), srv('C')], 7), ['A', 'B', 'C', 'A', 'B', 'C', 'A']);
  assert.deepEqual(picks('rr', [srv('A'), srv('B', 0), srv('C')], 4), ['A', 'C', 'A', 'C']);
  assert.deepEqual(picks('rr', [srv('A'), { ...srv('B'), available: false }, srv('C')], 3), ['A', 'C', 'A']);
  assert.deepEqual(picks('rr', [srv('A', 0)], 2), ['-', '-']);
  assert.deepEqual(picks('rr', [], 1), ['-']);
});

test('rr: removing the last chosen server moves the cursor back to its predecessor (ip_vs_rr_del_dest)', () => {
  const s = createScheduler('rr');
  const abc = [srv('A'), srv('B'), srv('C')];
  assert.equal(s.schedule(abc, client)?.key, 'A');
  assert.equal(s.schedule(abc, client)?.key, 'B');
  const ac = [srv('A'), srv('C')];
  s.update(ac);
  assert.equal(s.schedule(ac, client)?.key, 'C');
  assert.equal(s.schedule(ac, client)?.key, 'A');
});

test('wrr steps cw down from the max weight by the gcd; a fresh service starts on the cw = 1 pass', () => {
  // A service built by adding destinations one by one (ipvsadm, kube-proxy) ends with
  // cw = 1: the first add sets cw = mw = w - (w - 1) = 1 and later adds keep it. So the
  // first pass takes every destination, then cw restarts at the maximum (Linux 6.1 in UML).
  assert.deepEqual(picks('wrr', [srv('A', 3), srv('B', 1)], 8), ['A', 'B', 'A', 'A', 'A', 'B', 'A', 'A']);
  // gcd 2: mw = 4 - 1 = 3, the passes run with cw = 3 and 1.
  assert.deepEqual(picks('wrr', [srv('A', 4), srv('B', 2), srv('C', 2)], 8), ['A', 'B', 'C', 'A', 'A', 'B', 'C', 'A']);
  assert.deepEqual(picks('wrr', [srv('A', 1), srv('B', 2), srv('C', 3)], 12), [
    'A', 'B', 'C', 'C', 'B', 'C', 'A', 'B', 'C', 'C', 'B', 'C',
  ]);
  // The kernel's own sequence for list order w1, w2, w3, w4 (schedulers-differential, UML 6.1).
  assert.deepEqual(picks('wrr', [srv('A', 1), srv('B', 2), srv('C', 3), srv('D', 4)], 14), [
    'A', 'B', 'C', 'D', 'D', 'C', 'D', 'B', 'C', 'D', 'A', 'B', 'C', 'D',
  ]);
  assert.deepEqual(picks('wrr', [srv('A', 0), srv('B', 0)], 2), ['-', '-']);
  assert.deepEqual(picks('wrr', [srv('A', 2), srv('B', 0)], 3), ['A', 'A', 'A']);
});

test('wrr: a change resets the walk to the list head and keeps cw unless it is above the new maximum', () => {
  const s = createScheduler('wrr');
  const ab = [srv('A', 3), srv('B', 1)];
  assert.deepEqual([1, 2, 3].map(() => s.schedule(ab, client)?.key), ['A', 'B', 'A']); // cw now 3
  const abc = [srv('C', 2), srv('A', 3), srv('B', 1)]; // C added at the head: cl = head, cw 3 stays
  assert.deepEqual([1, 2, 3, 4].map(() => s.schedule(abc, client)?.key), ['A', 'C', 'A', 'C']);
});

test('lc: least active*256 + inactive, first one wins ties, weight 0 skipped', () => {
  const lc = createScheduler('lc');
  assert.equal(lc.schedule([srv('A', 1, 2, 0), srv('B', 1, 1, 300), srv('C', 1, 2, 1)], client)?.key, 'A'); // overheads 512, 556, 513
  assert.equal(lc.schedule([srv('A', 1, 1, 10), srv('B', 1, 1, 3)], client)?.key, 'B');
  assert.equal(lc.schedule([srv('A', 1, 1, 0), srv('B', 1, 1, 0)], client)?.key, 'A');
  assert.equal(lc.schedule([srv('A', 0, 0, 0), srv('B', 5, 9, 0)], client)?.key, 'B');
  // lc ignores weight otherwise.
  assert.equal(lc.schedule([srv('A', 100, 1, 0), srv('B', 1, 0, 0)], client)?.key, 'B');
});

test('wlc: overhead/weight compared by cross-multiplication', () => {
  const wlc = createScheduler('wlc');
  // A: 256/1, B: 512/3 → B (256*3 > 512*1)
  assert.equal(wlc.schedule([srv('A', 1, 1), srv('B', 3, 2)], client)?.key, 'B');
  // A: 256/1, B: 512/2 → equal, A stays
  assert.equal(wlc.schedule([srv('A', 1, 1), srv('B', 2, 2)], client)?.key, 'A');
  assert.equal(wlc.schedule([srv('A', 0, 0), srv('B', 1, 7)], client)?.key, 'B');
});

test('sed: (active+1)/weight', () => {
  const sed = createScheduler('sed');
  // A: 1/1, B: 3/3 → tie, A
  assert.equal(sed.schedule([srv('A', 1, 0), srv('B', 3, 2)], client)?.key, 'A');
  // A: 1/1, B: 3/4 → B
  assert.equal(sed.schedule([srv('A', 1, 0), srv('B', 4, 2)], client)?.key, 'B');
  // inactive connections do not count
  assert.equal(sed.schedule([srv('A', 1, 0, 50), srv('B', 1, 1, 0)], client)?.key, 'A');
});

test('nq: first idle server, else sed', () => {
  const nq = createScheduler('nq');
  // sed would pick B (1*4 > 3*1... A: 2/1, B: 2/4); nq picks the idle C first.
  assert.equal(nq.schedule([srv('A', 1, 1), srv('B', 4, 1), srv('C', 1, 0)], client)?.key, 'C');
  assert.equal(nq.schedule([srv('A', 1, 1), srv('B', 4, 1), srv('C', 1, 3)], client)?.key, 'B');
  assert.equal(nq.schedule([srv('A', 0, 0), srv('B', 1, 2)], client)?.key, 'B');
});

test('sh/dh hash keys match the kernel formula', () => {
  assert.equal(addrFold('10.0.0.1'), 0x0a000001);
  // hash_32(ntohl(addr) + port, 8) = ((v * 0x61C88647) mod 2^32) >> 24, worked out independently
  // (Python). These were the pre-hash_32 low bits, (v * 2654435761) & 255, until the UML
  // differential test (test/uml/schedulers-differential.test.ts) showed Linux 6.1 takes the top bits.
  assert.equal(shHashkey(addrFold('10.0.0.1'), 0, 0), 39);
  assert.equal(shHashkey(addrFold('10.0.0.2'), 0, 0), 137);
  assert.equal(shHashkey(addrFold('192.168.1.77'), 0, 0), 144);
  assert.equal(shHashkey(addrFold('10.0.0.1'), 1234, 0), 128);
  assert.equal(shHashkey(addrFold('10.0.0.1'), 0, 10), 49);
  assert.equal(dhHashkey(addrFold('172.16.5.9')), 115);
  // IPv6 folds the four words with XOR
  assert.equal(addrFold('2001:db8::1'), (0x20010db8 ^ 1) >>> 0);
});

test('sh: the 256-bucket table is filled by weight; a client always lands on the same server', () => {
  const abc = [srv('A'), srv('B'), srv('C')];
  const t = buildHashTable(abc, true);
  assert.equal(t.length, 256);
  assert.deepEqual(t.slice(0, 4).map((s) => s?.key), ['A', 'B', 'C', 'A']);
  const w = buildHashTable([srv('A', 2), srv('B', 1)], true);
  assert.deepEqual(w.slice(0, 6).map((s) => s?.key), ['A', 'A', 'B', 'A', 'A', 'B']);
  const sh = createScheduler('sh');
  // 10.0.0.1 → bucket 39 → 39 % 3 = 0 → A; 10.0.0.2 → 137 → 137 % 3 = 2 → C; 10.0.0.3 → 235 → 1 → B
  for (let i = 0; i < 3; i++) {
    assert.equal(sh.schedule(abc, { srcIP: '10.0.0.1', srcPort: 1000 + i })?.key, 'A');
    assert.equal(sh.schedule(abc, { srcIP: '10.0.0.2', srcPort: 1000 + i })?.key, 'C');
    assert.equal(sh.schedule(abc, { srcIP: '10.0.0.3', srcPort: 1000 + i })?.key, 'B');
  }
});

test('sh: an unavailable server drops unless sh-fallback; sh-port hashes the port', () => {
  const abc = [srv('A'), srv('B', 0), srv('C')];
  // 10.0.0.3 → bucket 235 → B (quiesced) → dropped
  assert.equal(createScheduler('sh').schedule(abc, { srcIP: '10.0.0.3' }), undefined);
  // fallback: offsets from ihash=235: hashkey(addr, 0, 235) = (235 + 235) & 255 = 214 → 214 % 3 = 1 → B (quiesced);
  // hashkey(addr, 0, 236) = 215 → 215 % 3 = 2 → C
  assert.equal(createScheduler('sh', 'sh-fallback').schedule(abc, { srcIP: '10.0.0.3' })?.key, 'C');
  // sh-port: hash_32(1234 + addr, 8) = 128 for 10.0.0.1 → 128 % 3 = 2 → C
  const ok = [srv('A'), srv('B'), srv('C')];
  assert.equal(createScheduler('sh', ['sh-port']).schedule(ok, { srcIP: '10.0.0.1', srcPort: 1234 })?.key, 'C');
});

test('dh: hashes the destination address, one bucket per server, no fallback', () => {
  const abc = [srv('A', 5), srv('B'), srv('C')];
  const t = buildHashTable(abc, false);
  assert.deepEqual(t.slice(0, 4).map((s) => s?.key), ['A', 'B', 'C', 'A']);
  const dh = createScheduler('dh');
  // 172.16.5.9 → 115 → 115 % 3 = 1 → B, whatever the source
  assert.equal(dh.schedule(abc, { srcIP: '1.2.3.4', dstIP: '172.16.5.9' })?.key, 'B');
  assert.equal(dh.schedule(abc, { srcIP: '5.6.7.8', dstIP: '172.16.5.9' })?.key, 'B');
  // 10.0.0.2 → 137 → 2 → C; quiesce C → dropped
  assert.equal(dh.schedule([srv('A'), srv('B'), srv('C', 0)], { srcIP: '1.1.1.1', dstIP: '10.0.0.2' }), undefined);
});

test('mh: siphash-1-3 matches reference values', () => {
  // CPython's siphash13 with a zero key (PYTHONHASHSEED=0), low 32 bits
  assert.equal(hsiphashU32(0, 0n, 0n), 2596571888);
  assert.equal(hsiphashU32(1, 0n, 0n), 3279646864);
  assert.equal(hsiphashU32(123456789, 0n, 0n), 3797917523);
  assert.equal(mhHashkey(addrFold('10.1.0.1'), 80, MH_KEY1, 0), 399014601);
});

test('mh: 4093-entry table, shares by weight, client slots pinned, minimal disruption', () => {
  const abc = [srv('A'), srv('B'), srv('C')];
  const t = buildMaglevTable(abc, (s) => s.weight);
  assert.equal(t.length, MH_TAB_SIZE);
  const count = (tab: Int32Array, i: number): number => tab.reduce((n, v) => n + (v === i ? 1 : 0), 0);
  assert.deepEqual([0, 1, 2].map((i) => count(t, i)), [1365, 1364, 1364]);
  const w = buildMaglevTable([srv('A', 2), srv('B'), srv('C')], (s) => s.weight);
  assert.deepEqual([0, 1, 2].map((i) => count(w, i)), [2047, 1023, 1023]);
  const mh = createScheduler('mh');
  // slots: 10.0.0.1 → 3711 → A, 10.0.0.2 → 1884 → B, 10.0.0.3 → 3741 → C, 172.16.5.9 → 3538 → A
  assert.equal(mh.schedule(abc, { srcIP: '10.0.0.1' })?.key, 'A');
  assert.equal(mh.schedule(abc, { srcIP: '10.0.0.2' })?.key, 'B');
  assert.equal(mh.schedule(abc, { srcIP: '10.0.0.3' })?.key, 'C');
  assert.equal(mh.schedule(abc, { srcIP: '172.16.5.9' })?.key, 'A');
  // Removing B moves only 2 of the slots that A and C held.
  const ac = buildMaglevTable([srv('A'), srv('C')], (s) => s.weight);
  let moved = 0;
  for (let i = 0; i < MH_TAB_SIZE; i++) {
    const before = ['A', 'B', 'C'][t[i]!]!;
    const after = ['A', 'C'][ac[i]!]!;
    if (before !== 'B' && before !== after) moved++;
  }
  assert.equal(moved, 2);
});

test('mh: a quiesced server keeps its slots (dropped, or moved with mh-fallback)', () => {
  const mh = createScheduler('mh');
  const abc = [srv('A'), srv('B'), srv('C')];
  assert.equal(mh.schedule(abc, { srcIP: '10.0.0.2' })?.key, 'B');
  const quiesced = [srv('A'), srv('B', 0), srv('C')];
  assert.equal(mh.schedule(quiesced, { srcIP: '10.0.0.2' }), undefined);
  assert.equal(mh.schedule(quiesced, { srcIP: '10.0.0.1' })?.key, 'A');
  const fb = createScheduler('mh', 'mh-fallback');
  fb.update(abc);
  const moved = fb.schedule(quiesced, { srcIP: '10.0.0.2' })?.key;
  assert.ok(moved === 'A' || moved === 'C', `fallback chose ${moved}`);
});

test('unknown scheduler or flag is refused with the valid list', () => {
  assert.throws(() => createScheduler('fifo'), /unknown IPVS scheduler "fifo"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);
  assert.throws(() => createScheduler('sh', 'sh-bogus'), /unknown scheduler flag "sh-bogus"; valid flags: sh-fallback/);
});
