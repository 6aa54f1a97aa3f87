// `kproxy demo` (what `npm start` runs): the seeds' hello-world scenario for
// real. A node namespace with three pods serving HTTP and an external client;
// `kproxy run --manifests examples/hello-world` inside the node; requests to the
// ClusterIP (from a pod and from the node) and to the NodePort (from outside);
// which pod answered each; then everything is removed, also on Ctrl-C or error.
// Where namespaces cannot be made (not Linux, not root, no iproute2) it says why
// and prints the rules `kproxy render` produces for the same folder instead.
import { COMMANDS } from './commands.js';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import {
  kproxyMain,
  labDown,
  labUnsupportedReason,
  labUp,
  probeFrom,
  type LabState,
} from '../lab/cluster.js';
import { loadLabManifests, planLab } from '../lab/plan.js';
import { formatRequests, formatSpread, tally, type DemoRequest } from '../lab/demo-report.js';
import { waitFor } from '../lab/netns.js';
import type { Service } from '../k8s/types.js';

export const defaultDemoManifests = fileURLToPath(new URL('../../../examples/hello-world', import.meta.url));

export interface DemoOptions {
  manifests: string;
  requests: number;
  /** Print progress lines to stderr. */
  verbose?: boolean;
  out?: (s: string) => void;
}

export interface DemoResult {
  mode: 'namespaces' | 'render';
  requests: DemoRequest[];
  reason?: string;
}

function pickService(services: Service[]): Service {
  const withPorts = services.filter((s) => s.clusterIPs.some((ip) => ip.includes('.')) && s.ports.length > 0);
  const svc = withPorts.find((s) => s.ports.some((p) => p.nodePort)) ?? withPorts[0];
  if (!svc) throw new Error('the demo manifests have no Service with an IPv4 ClusterIP and a port');
  return svc;
}

async function renderFallback(manifests: string, out: (s: string) => void): Promise<void> {
  // Render for the scenario's first node, as the namespaces version would have programmed it.
  const plan = planLab(loadLabManifests(manifests));
  const node = plan.nodes[0]!;
  const args = ['render', manifests, '--hostname-override', node.name, '--node-ip', node.ip, '--cluster-cidr', plan.clusterCIDR];
  out(`Showing what kproxy would program on node ${node.name} instead (kproxy ${args.join(' ')}):\n\n`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [kproxyMain, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d: Buffer) => out(d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`kproxy render exited with ${code}`))));
  });
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const say = (l: string) => {
    if (opts.verbose) process.stderr.write(`· ${l}\n`);
  };
  if (!existsSync(opts.manifests)) throw new Error(`demo manifests not found: ${opts.manifests}`);
  const reason = await labUnsupportedReason();
  if (reason) {
    out(`kproxy demo runs the hello-world Service in network namespaces, but ${reason}.\n`);
    await renderFallback(opts.manifests, out);
    return { mode: 'render', requests: [], reason };
  }

  const m = loadLabManifests(opts.manifests);
  const svc = pickService(m.services);
  const port = svc.ports[0]!;
  const clusterIP = svc.clusterIPs.find((ip) => ip.includes('.'))!;
  const name = `demo${randomBytes(3).toString('hex')}`;
  let state: LabState | undefined;
  let cleaning: Promise<unknown> | undefined;
  // labUp records the lab before creating anything, so labDown(name) also cleans a half-built lab.
  const cleanup = () => (cleaning ??= labDown(name));
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\n${sig}: removing the demo namespaces…\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    out(`kproxy demo: the hello-world Service of the seeds, with real packets\n\n`);
    state = await labUp({ name, manifests: opts.manifests, progress: say });
    const node = state.nodes[0]!;
    const pods = state.pods.map((p) => p.name);
    for (const nd of state.nodes) {
      const how =
        nd.mode === 'run'
          ? `kproxy run --manifests ${state.generated} (pid ${nd.kproxyPid})`
          : nd.mode === 'render'
            ? 'kproxy render | iptables-restore (kproxy run is not built)'
            : 'nothing (no kproxy dataplane available)';
      out(`  node      ${nd.name} ${nd.ip}, netns ${nd.netns}, programmed by ${how}\n`);
    }
    for (const p of state.pods) out(`  pod       ${p.name} ${p.ip} on ${p.node}, serving ${p.tcp.map((x) => `${x}/tcp`).join(' ')}\n`);
    out(`  client    ${state.client.ip}, netns ${state.client.netns} (outside the cluster)\n`);
    out(
      `  service   ${svc.meta.namespace}/${svc.meta.name}: ClusterIP ${clusterIP}:${port.port}` +
        (port.nodePort ? `, NodePort ${port.nodePort}` : '') +
        ` → targetPort ${port.targetPort}\n\n`,
    );

    const clusterURL = `http://${clusterIP}:${port.port}/`;
    say('waiting for kproxy to program the node');
    await waitFor(
      'the ClusterIP to answer from the node (is kproxy running? see its log in ' + (node.kproxyLog ?? state.dir) + ')',
      async () => (await probeFrom(state!, node.name, clusterURL, 1, 1000))[0]!.ok,
      90_000,
      250,
    );

    const n = opts.requests;
    const requests: DemoRequest[] = [];
    const run = async (from: string, label: string, url: string, to: string) => {
      for (const r of await probeFrom(state!, from, url, n, 5000)) {
        requests.push({ from: label, to, ok: r.ok, answer: r.ok ? r.answer! : r.error ?? 'failed' });
      }
    };
    const firstPod = state.pods[0];
    if (firstPod) await run(firstPod.name, `pod ${firstPod.name}`, clusterURL, `ClusterIP ${clusterIP}:${port.port}`);
    await run(node.name, `node ${node.name}`, clusterURL, `ClusterIP ${clusterIP}:${port.port}`);
    if (port.nodePort) await run('client', `client ${state.client.ip}`, `http://${node.ip}:${port.nodePort}/`, `NodePort ${node.ip}:${port.nodePort}`);

    out(formatRequests(requests) + '\n\n');
    out(formatSpread(tally(requests), pods) + '\n\n');
    out(
      'A pod calling the ClusterIP keeps its own address. The node and the outside client are masqueraded\n' +
        '(KUBE-MARK-MASQ, then MASQUERADE in KUBE-POSTROUTING): the pod sees the address the packet leaves by,\n' +
        `cni0's ${node.gateway} on the same node, ${node.ip} across nodes; a pod reaching itself is masqueraded too.\n` +
        `The rules: kproxy render ${opts.manifests} --hostname-override ${node.name}\n`,
    );
    return { mode: 'namespaces', requests };
  } finally {
    say('removing the demo namespaces');
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    out('cleaned up: every namespace and process the demo made is gone.\n');
  }
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(COMMANDS.demo.description)
    .option('--manifests <dir>', 'the scenario', defaultDemoManifests)
    .option('-n, --requests <n>', 'requests per path (pod→ClusterIP, node→ClusterIP, client→NodePort)', (v) => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1 || x > 1000) throw new Error(`--requests must be an integer from 1 to 1000, got "${v}"`);
      return x;
    }, 10)
    .option('-v, --verbose', 'show each step')
    .action(async (o: { manifests: string; requests: number; verbose?: boolean }) => {
      const r = await runDemo({ manifests: o.manifests, requests: o.requests, verbose: o.verbose });
      if (r.mode === 'namespaces' && r.requests.some((q) => !q.ok)) process.exitCode = 1;
    });
}
