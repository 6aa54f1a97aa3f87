// `npm run bench -- agent [--services=1000,10000] [--changes=20] [--mode=iptables,nftables]`: the node agent
// end to end, as a user runs it: `kproxy run --manifests DIR` (each mode in turn, side by side) in a
// fresh network namespace, timed from process start to the first full sync, then
// one EndpointSlice file renamed over at a time, timed from the rename until the
// agent reports the changed rules programmed ("synced changed rules": its
// restores have returned). Changes are spaced past the 1 s minimum sync
// period, which would otherwise hold each one back. Then the agent's periodic full
// sync (its --full-sync-period set to end just after the changes) and, in nftables
// mode, the drift check it starts (the kernel's table read back): the steady state's
// memory peak. Peak RSS of the agent is read from /proc, after the first sync and at the end.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Topology, isRoot, runPrefix } from '../src/lab/netns.js';
import { serviceManifest, sliceManifest } from './cli.js';
import { machineLine } from './machine.js';

const root = new URL('../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');

function arg(args: string[], name: string, def: string): string {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function one(services: number, changes: number, mode: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-agent-'));
  const topo = new Topology(runPrefix('ka'));
  let child: ReturnType<typeof spawn> | undefined;
  try {
    writeFileSync(join(dir, 'services.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Array.from({ length: services }, (_, i) => serviceManifest(i)) }));
    mkdirSync(join(dir, 'slices'));
    for (let i = 0; i < services; i++) writeFileSync(join(dir, 'slices', `svc-${i}.json`), JSON.stringify(sliceManifest(i, 10)));
    const ns = await topo.netns('node');
    const t0 = performance.now();
    // The periodic full sync comes due after the changes (the period counts from the start of the
    // first sync, which takes up to ~1 s per 1k services in iptables mode); a 2 s sync period runs it soon after.
    const fullSyncPeriodS = Math.ceil(changes * 1.2 + 5 + (services / 1000) * 1.5);
    const argv = ['run', '--proxy-mode', mode, '--manifests', dir, '--hostname-override', 'node-0', '--node-ip', '192.168.99.1', '--cluster-cidr', '10.128.0.0/9'];
    argv.push('--v', '4', '--healthz-bind-address', '', '--metrics-bind-address', '', '--full-sync-period', `${fullSyncPeriodS}s`, '--iptables-sync-period', '2s');
    child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, main, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    const waiters: { match: string; resolve: (t: number) => void }[] = [];
    /** The agent's own "ms" of each sync it reports: the backend's sync alone, without the source and tracker. */
    const syncMs: number[] = [];
    const errors: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      const t = performance.now();
      if (/"level":"error"|^ERROR/.test(line)) errors.push(line);
      const w = waiters[0];
      if (w && line.includes(w.match)) {
        const ms = /"ms":(\d+)/.exec(line) ?? / ms=(\d+)/.exec(line);
        if (ms) syncMs.push(Number(ms[1]));
        if (process.env.KPROXY_BENCH_LOG) process.stderr.write(line + '\n');
        waiters.shift();
        w.resolve(t);
      }
    });
    const until = (match: string, ms: number): Promise<number> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${match}" within ${ms} ms; errors: ${errors.slice(-3).join(' | ')}`)), ms);
        waiters.push({ match, resolve: (t) => (clearTimeout(timer), resolve(t)) });
      });
    const first = (await until('synced all rules', 120_000)) - t0;
    const firstRss = peakRssMiB(child.pid!);
    const lat: number[] = [];
    for (let j = 0; j < changes; j++) {
      // Past --iptables-min-sync-period (1 s) since the last sync, so the change is not held back by it.
      await new Promise((r) => setTimeout(r, 1100));
      const i = Math.floor(Math.random() * services);
      const file = join(dir, 'slices', `svc-${i}.json`);
      writeFileSync(`${file}.tmp`, JSON.stringify(sliceManifest(i, 10, j + 1)));
      const done = until('synced changed rules', 10_000);
      const t = performance.now();
      renameSync(`${file}.tmp`, file);
      lat.push((await done) - t);
    }
    const changesRss = peakRssMiB(child.pid!);
    const changeSync = syncMs.slice(1);
    const head = `${mode.padEnd(8)} ${String(services).padStart(6)} services x 10:`;
    const lines = [
      `${head} first sync ${(first / 1000).toFixed(2)} s from process start (peak RSS ${firstRss.toFixed(0)} MiB); one endpoint change (rename → programmed) p50 ${pct(lat, 50).toFixed(0)} / p99 ${pct(lat, 99).toFixed(0)} / max ${Math.max(...lat).toFixed(0)} ms over ${changes} (the agent's sync alone: p50 ${pct(changeSync, 50).toFixed(0)} ms); peak RSS ${changesRss.toFixed(0)} MiB`,
    ];
    await until('synced all rules', (fullSyncPeriodS + 60) * 1000);
    const periodicMs = syncMs.at(-1)!;
    let check = '';
    if (mode === 'nftables') {
      const t = performance.now();
      await until('nftables drift check', 300_000);
      check = `, then its drift check ${((performance.now() - t) / 1000).toFixed(1)} s`;
    }
    lines.push(`${' '.repeat(head.length)} periodic full sync ${periodicMs} ms${check}; peak RSS since start ${peakRssMiB(child.pid!).toFixed(0)} MiB`);
    return lines.join('\n');
  } finally {
    if (child && child.exitCode === null) {
      // The namespace can only go once the agent has left it.
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void> {
  if (!isRoot()) {
    process.stdout.write('agent: needs root (network namespaces); skipped\n');
    return;
  }
  const sizes = arg(args, 'services', '1000,10000').split(',').map(Number);
  const changes = Number(arg(args, 'changes', '20'));
  const modes = arg(args, 'mode', 'iptables,nftables').split(',');
  process.stdout.write(machineLine('iptables mode on the nft backend'));
  for (const n of sizes) for (const m of modes) process.stdout.write((await one(n, changes, m)) + '\n');
}
