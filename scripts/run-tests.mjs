#!/usr/bin/env node
// Runs the compiled test files with Node's built-in runner.
// `node scripts/run-tests.mjs [unit|kernel|uml] [filter]` narrows the set; CI runs everything.
// Node 20 does not expand globs itself, so the files are listed here.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const [kind, filter] = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

let files = walk(root);
if (kind && kind !== 'all') files = files.filter((f) => f.includes(`/test/${kind}/`));
if (filter) files = files.filter((f) => f.includes(filter));
if (files.length === 0) {
  console.error(`no test files matched (kind=${kind ?? 'all'} filter=${filter ?? ''})`);
  process.exit(1);
}
const kernel = files.some((f) => f.includes('/test/kernel/') || f.includes('/test/uml/'));
if (kernel && process.getuid && process.getuid() !== 0) {
  console.error('kernel tests need root (they create network namespaces); run as root or use `npm run test:unit`');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=600000', ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
