// Boolean flags as kube-proxy's (pflag) users type them: bare means true,
// `=true|false` sets it, and the next word is never taken as the value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { pflagBooleans } from '../../src/cli/pflag.js';
import { parseBool } from '../../src/cli/proxy-flags.js';

const root = new URL('../../../', import.meta.url).pathname;
const hello = join(root, 'examples/hello-world');
const main = join(root, 'dist/src/cli/main.js');

function kproxy(args: string[]) {
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 30_000 });
}

function program(): Command {
  const p = new Command('k');
  p.command('x').option('--masquerade-all [bool]', '', parseBool('--masquerade-all')).option('--strict', '').option('--no-forward', '').argument('[dir]');
  return p;
}

test('argv rewriting: bare [bool] gets =true, switches take =true/=false, -- ends flags', () => {
  const p = program();
  const rw = (a: string[]) => pflagBooleans(p, ['node', 'k', ...a]).slice(2);
  assert.deepEqual(rw(['x', '--masquerade-all', 'dir']), ['x', '--masquerade-all=true', 'dir']);
  assert.deepEqual(rw(['x', '--masquerade-all=false', 'dir']), ['x', '--masquerade-all=false', 'dir']);
  assert.deepEqual(rw(['x', '--strict=true', '--strict=false', 'dir']), ['x', '--strict', 'dir']);
  assert.deepEqual(rw(['x', '--', '--masquerade-all']), ['x', '--', '--masquerade-all']);
  assert.deepEqual(rw(['x', '--no-forward', 'dir']), ['x', '--no-forward', 'dir']);
  assert.throws(() => rw(['x', '--strict=yes']), /--strict takes true or false, not "yes"/);
});

test('render: a bool flag before the positional is a flag, not its value (the issue\'s command line)', () => {
  const base = ['render', '--hostname-override', 'k8s-n-1', '--random-fully', 'false'];
  const bare = kproxy([...base, '--masquerade-all', hello]);
  assert.equal(bare.status, 0, bare.stderr);
  const explicit = kproxy([...base, '--masquerade-all=true', hello]);
  assert.equal(explicit.status, 0, explicit.stderr);
  assert.equal(bare.stdout, explicit.stdout);
  const off = kproxy([...base, '--masquerade-all=false', hello]);
  assert.equal(off.status, 0, off.stderr);
  assert.notEqual(off.stdout, bare.stdout, '--masquerade-all changes the rules');
  // With masquerade-all every ClusterIP gets the unconditional KUBE-MARK-MASQ rule.
  assert.match(bare.stdout, /-A KUBE-SVC-I6CTHWSTJGL5RHWT -m comment --comment "default\/hello-world-service cluster IP" -m tcp -p tcp -d 10\.96\.103\.220 --dport 4000 -j KUBE-MARK-MASQ/);
  const lh = kproxy([...base, '--iptables-localhost-nodeports', hello]);
  assert.equal(lh.status, 0, lh.stderr);
  const sw = kproxy([...base, '--strict=true', hello]);
  assert.equal(sw.status, 0, sw.stderr);
  const bad = kproxy([...base, '--masquerade-all=maybe', hello]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--masquerade-all takes true or false, not "maybe"/);
});

test('doctor and run: bare bool flags followed by other flags parse (their help lists them as [bool])', () => {
  // --help after the flags: parsing must get past them without taking a value.
  for (const cmd of ['doctor', 'run']) {
    const r = kproxy([cmd, '--masquerade-all', '--iptables-localhost-nodeports', '--help']);
    assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
    assert.match(r.stdout, /--masquerade-all \[bool\]/);
  }
});
