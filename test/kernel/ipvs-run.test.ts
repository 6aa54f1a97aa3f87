// `kproxy run --proxy-mode ipvs` checks the kernel at start. This kernel has
// neither IPVS nor dummy interfaces, so it must refuse, naming both and the
// modes that work, and leave nothing behind (the dummy probe's namespace).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, copyFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkIpvsKernel } from '../../src/dataplane/ipvs/apply.js';
import { exec } from '../../src/util/exec.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const fixture = fileURLToPath(new URL('../../../test/fixtures/ipvs/node.yaml', import.meta.url));

function runFor(args: string[], ms: number): Promise<{ code: number | null; stderr: string; stdout: string; alive: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      resolve({ code: null, stderr, stdout, alive: true });
    }, ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout, alive: false });
    });
  });
}

async function probeNamespaces(): Promise<string[]> {
  const r = await exec('ip', ['netns', 'list'], { allowFail: true });
  return r.stdout.split('\n').filter((l) => l.startsWith('kpchk'));
}

test('run --proxy-mode ipvs refuses at start on a kernel without IPVS / dummy, naming them and the modes that work', async () => {
  const support = await checkIpvsKernel();
  const dir = await mkdtemp(join(tmpdir(), 'kp-ipvs-'));
  try {
    await copyFile(fixture, join(dir, 'node.yaml'));
    const started = Date.now();
    const r = await runFor(['run', '--proxy-mode', 'ipvs', '--manifests', dir, '--hostname-override', 'node-a', '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0'], 20_000);
    if (!support.ipvs || !support.dummy) {
      assert.equal(r.alive, false, 'exits instead of running');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /--proxy-mode ipvs: this kernel lacks/);
      if (!support.ipvs) assert.match(r.stderr, /IPVS \(the ip_vs kernel module\)/);
      if (!support.dummy) assert.match(r.stderr, /dummy network interfaces/);
      assert.match(r.stderr, /modes that work here: iptables, userspace/);
      assert.ok(Date.now() - started < 15_000, 'refuses promptly');
    } else {
      assert.doesNotMatch(r.stderr, /this kernel lacks/);
    }
    assert.deepEqual(await probeNamespaces(), [], 'the dummy probe namespace is gone');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the kernel check agrees with /proc and with a direct dummy probe', async () => {
  const support = await checkIpvsKernel();
  const proc = await exec('test', ['-e', '/proc/net/ip_vs'], { allowFail: true });
  assert.equal(support.ipvs, proc.code === 0);
  assert.equal(support.problems.length, (support.ipvs ? 0 : 1) + (support.dummy ? 0 : 1));
});

test('run --proxy-mode ipvs with an unknown --ipvs-scheduler is refused at start, listing the valid schedulers', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kp-ipvs-'));
  try {
    await copyFile(fixture, join(dir, 'node.yaml'));
    const r = await runFor(['run', '--proxy-mode', 'ipvs', '--ipvs-scheduler', 'nope', '--manifests', dir, '--hostname-override', 'node-a', '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0'], 20_000);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--ipvs-scheduler: unknown scheduler "nope"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
