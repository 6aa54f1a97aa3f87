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

test('onStdoutLine hands stdout over line by line across chunk boundaries, the last line without its newline too', async () => {
  // 200k lines in many pipe chunks; a line split across two chunks must arrive whole.
  const script = 'let s="";for(let i=0;i<200000;i++)s+="line "+i+"\\n";process.stdout.write(s+"tail")';
  const lines: string[] = [];
  const r = await exec(process.execPath, ['-e', script], { onStdoutLine: (l) => lines.push(l) });
  assert.equal(r.stdout, '', 'nothing collected');
  assert.equal(lines.length, 200001);
  assert.equal(lines[123456], 'line 123456');
  assert.equal(lines.at(-1), 'tail');
});

test('a throwing onStdoutLine stops the tool and rejects with its error', async () => {
  const script = 'setInterval(()=>console.log("x"),10)';
  await assert.rejects(
    exec(process.execPath, ['-e', script], {
      timeoutMs: 10_000,
      onStdoutLine: () => {
        throw new Error('bad line');
      },
    }),
    /bad line/,
  );
});
