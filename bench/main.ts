// `npm run bench [-- NAME…]`: runs the named benchmarks (all when none is named).
// Each benchmark lives in bench/<name>.ts and exports `run(args)`; results go to stdout.
const all = ['render', 'trace', 'sync', 'dns', 'userspace', 'cli', 'agent', 'datapath'];
const names = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
for (const name of names.length ? names : all) {
  if (!all.includes(name)) {
    process.stderr.write(`unknown benchmark ${name}; known: ${all.join(', ')}\n`);
    process.exit(2);
  }
  const mod = (await import(`./${name}.js`)) as { run: (args: string[]) => Promise<void> };
  process.stdout.write(`\n=== bench ${name} ===\n`);
  await mod.run(extra);
}
