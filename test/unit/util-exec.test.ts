// Running tools: the environment a large load gets (glibc malloc tunables), and nothing for small calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BULK_INPUT_CHARS, bulkEnv, exec } from '../../src/util/exec.js';

test('bulkEnv sets the malloc tunables and keeps a user\'s own after them', () => {
  assert.equal(bulkEnv({ PATH: '/bin' }).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864');
  assert.equal(bulkEnv({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864:glibc.malloc.hugetlb=0');
  assert.equal(bulkEnv({ PATH: '/bin' }).PATH, '/bin');
});

test('a tool fed a large input runs with the tunables; a small call without', async () => {
  // glibc may rewrite the variable it parsed (2.36 keeps only part of it): the start is enough.
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  const script = 'process.stdin.resume();process.stdin.on("end",()=>console.log(process.env.GLIBC_TUNABLES??"unset"))';
  const big = await exec(process.execPath, ['-e', script], { input: 'x'.repeat(BULK_INPUT_CHARS), env });
  assert.match(big.stdout.trim(), /^glibc\.malloc\.hugetlb=1/);
  const small = await exec(process.execPath, ['-e', script], { input: 'x', env });
  assert.equal(small.stdout.trim(), 'unset');
});
