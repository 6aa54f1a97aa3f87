// `npm run bench -- cli`: the commands as a user runs them, end to end (process
// start to exit), against `node -e 0` in the same run: --help, trace of a small
// dump, render of a small folder, render of 10,000 services × 10 endpoints
// (wall and peak RSS), and trace loading a 500,000-line dump.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDump } from './trace.js';
import { machineLine } from './machine.js';

const root = new URL('../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');

interface Timing {
  ms: number;
  rssMiB: number;
}

/**
 * The commands run without NODE_EXTRA_CA_CERTS: node reads that bundle at every start
 * (45 ms here, where the sandbox sets it), before any of kproxy's code; a user's
 * shell does not normally set it. The floor is also measured with it, when set.
 */
const childEnv = { ...process.env };
delete childEnv.NODE_EXTRA_CA_CERTS;

/** One run under /usr/bin/time: wall time and peak RSS of the whole process. */
function timeOnce(args: string[], env: NodeJS.ProcessEnv = childEnv): Timing {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', process.execPath, ...args], { encoding: 'utf8', maxBuffer: 1 << 30, env });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
  const [secs, kb] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  return { ms: secs! * 1000, rssMiB: kb! / 1024 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function measure(label: string, args: string[], runs: number, env?: NodeJS.ProcessEnv): void {
  const ts = Array.from({ length: runs }, () => timeOnce(args, env));
  const ms = ts.map((t) => t.ms);
  process.stdout.write(
    `${label.padEnd(44)} median ${median(ms).toFixed(0).padStart(5)} ms  min ${Math.min(...ms).toFixed(0).padStart(5)} ms  peak RSS ${Math.max(...ts.map((t) => t.rssMiB)).toFixed(0)} MiB  (${runs} runs)\n`,
  );
}

/** Service i of the synthetic cluster, as `kubectl get -o json` gives it. */
export function serviceManifest(i: number): object {
  const name = `svc-${i}`;
  const ip = `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'bench', name },
    spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ipFamilies: ['IPv4'], selector: { app: name }, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] },
  };
}

/** Service i's EndpointSlice with `eps` endpoints; `shift` moves its last endpoint to a new address (a change). */
export function sliceManifest(i: number, eps: number, shift = 0): object {
  const name = `svc-${i}`;
  const endpoints = Array.from({ length: eps }, (_, j) => {
    const k = i * eps + j + (j === eps - 1 ? shift * 1_000_000 : 0);
    return { addresses: [`10.${128 + ((k >> 16) & 127)}.${(k >> 8) & 255}.${k & 255}`], conditions: { ready: true, serving: true, terminating: false }, nodeName: `node-${k % 50}` };
  });
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'bench', name: `${name}-abcde`, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints,
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

/** Raw manifests (a v1 List) for n ClusterIP services with `eps` endpoints each. */
export function manifestList(n: number, eps: number): string {
  const items: object[] = [];
  for (let i = 0; i < n; i++) items.push(serviceManifest(i), sliceManifest(i, eps));
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

export async function run(_args: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-cli-'));
  try {
    process.stdout.write(machineLine());
    const small = join(root, 'examples/hello-world');
    const smallDump = join(root, 'test/fixtures/seeds/004-pod-check.save');
    if (process.env.NODE_EXTRA_CA_CERTS) measure('node -e 0 with NODE_EXTRA_CA_CERTS set', ['-e', '0'], 11, process.env);
    measure('node -e 0 (the floor)', ['-e', '0'], 11);
    measure('kproxy --help', [main, '--help'], 11);
    measure('kproxy trace (seed 004 dump, one packet)', [main, 'trace', '--rules', smallDump, '--dst', '192.168.1.11:32239', '--local-ip', '192.168.1.11'], 11);
    measure('kproxy render examples/hello-world', [main, 'render', small, '--hostname-override', 'k8s-n-1', '--random-fully', 'false'], 11);
    const big = join(dir, 'cluster.json');
    writeFileSync(big, manifestList(10_000, 10));
    measure('kproxy render 10k services x 10 endpoints', [main, 'render', big, '--hostname-override', 'node-0', '--cluster-cidr', '10.128.0.0/9', '--random-fully', 'false'], 3);
    const dump = join(dir, 'big.save');
    writeFileSync(dump, syntheticDump(500_000));
    measure('kproxy trace (500k-line dump, one packet)', [main, 'trace', '--rules', dump, '--dst', '10.96.0.1:80', '--local-ip', '192.168.1.11'], 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
