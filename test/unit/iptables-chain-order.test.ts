// sortByName: the canonical ruleset's chain order, by numeric keys for hash-named chains, equals a plain sort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash16, sortByName } from '../../src/dataplane/iptables/chain-names.js';

function plain<T extends { name: string }>(items: T[]): T[] {
  return items.slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A deterministic generator (the test must be the same on every run). */
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test('sortByName equals a plain stable sort: hash-named chains, fixed chains, odd shapes, equal keys, duplicates', () => {
  const r = rng(7);
  const items: { name: string; i: number }[] = [];
  const add = (name: string): void => void items.push({ name, i: items.length });
  for (let i = 0; i < 5000; i++) add(hash16(`ns/svc-${i}tcp10.0.${i >> 8}.${i & 255}:80`, ['KUBE-SEP-', 'KUBE-SVC-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SVL-'][i % 5]));
  for (const n of ['KUBE-SERVICES', 'KUBE-MARK-MASQ', 'KUBE-POSTROUTING', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FW-', 'KUBE-SEP-', 'FOO', '']) add(n);
  // The same first six digits (equal numeric keys), differing later; in both orders of creation.
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  for (let i = 0; i < 20; i++) add('KUBE-SEP-AAAAAA' + Array.from({ length: 10 }, () => digits[Math.floor(r() * 32)]).join(''));
  // Digits that sort before letters, lower case and non-ASCII where a digit would be, duplicates (stability).
  add('KUBE-SEP-2222222222222222');
  add('KUBE-SEP-aAAAAAAAAAAAAAAA');
  add('KUBE-SEP-Ä234567ABCDEFGHI');
  add('KUBE-SVC-QWERTYUIOPASDFGH');
  add('KUBE-SVC-QWERTYUIOPASDFGH');
  for (let i = 0; i < 200; i++) items.push(items[Math.floor(r() * items.length)]!); // repeated objects
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  assert.deepEqual(sortByName(items), plain(items));
});

test('sortByName: one prefix starting another still gives plain order', () => {
  // "KUBE-FW-A-…" sorts between "KUBE-FW-2…" and "KUBE-FW-AA…", not after the "KUBE-FW-" group.
  const items = ['KUBE-FW-AAAAAAAAAAAAAAAA', 'KUBE-FW-A-ZZZZZZZZZZZZZZZZ', 'KUBE-FW-2AAAAAAAAAAAAAAA', 'KUBE-FW-A-BBBBBBBBBBBBBBBB'].map((name, i) => ({ name, i }));
  assert.deepEqual(sortByName(items), plain(items));
  assert.deepEqual(sortByName([]), []);
});
