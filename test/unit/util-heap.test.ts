// The agent's heap tuning: set once the first sync is done, unless the user chose a growing factor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapStatistics } from 'node:v8';
import { tightenHeapGrowth } from '../../src/util/heap.js';

test('a growing factor given to node is left alone', () => {
  assert.equal(tightenHeapGrowth(20, ['--heap-growing-percent=50']), false);
  assert.equal(tightenHeapGrowth(20, ['--heap_growing_percent=50']), false);
});

test('otherwise the factor is set and garbage is collected at once', () => {
  // Garbage the size of a full sync's render, unreachable once made.
  let junk: string[] | null = Array.from({ length: 300_000 }, (_, i) => `10.0.${i >> 8}.${i & 255} . tcp . 80`);
  assert.ok(junk.length);
  junk = null;
  const before = getHeapStatistics().used_heap_size;
  assert.equal(tightenHeapGrowth(20, []), true);
  const after = getHeapStatistics().used_heap_size;
  assert.ok(after < before - 5 * 2 ** 20, `a major GC ran: ${before >> 20} -> ${after >> 20} MiB`);
});
