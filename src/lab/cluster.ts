// The lab: a small Kubernetes-shaped cluster made of network namespaces on one
// Linux machine, so the packets the seeds describe can be watched for real.
//
//   <lab>-net      the "underlay": a bridge br0 joining the nodes and the client
//   <lab>-<node>   a node: eth0 on the underlay, bridge cni0 with the pod CIDR's
//                  first address, routes to the other nodes' pod CIDRs, ip_forward,
//                  and `kproxy run --manifests …` programming its iptables
//   <lab>-<pod>    a pod: eth0 on its node's cni0, default route via cni0, and a
//                  tiny server answering with the pod's name (pod-server.ts)
//   <lab>-client   an "external" machine on the underlay
//
// `lab up` leaves it running and records it in /run/kproxy-lab/<name>.json, so
// `lab down` (another process) removes every namespace and process it made.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../util/exec.js';
import { Netns, Topology, waitFor } from './netns.js';
import { loadLabManifests, planLab, rewriteManifests, type LabPlan } from './plan.js';

export const DEFAULT_STATE_DIR = '/run/kproxy-lab';

export const podServerScript = fileURLToPath(new URL('./pod-server.js', import.meta.url));
export const probeScript = fileURLToPath(new URL('./probe.js', import.meta.url));
export const kproxyMain = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export type DataplaneMode = 'run' | 'render' | 'none';

export interface LabNodeState {
  name: string;
  netns: string;
  ip: string;
  podCIDR: string;
  gateway: string;
  mode: DataplaneMode;
  kproxyPid?: number;
  kproxyLog?: string;
}

export interface LabPodState {
  namespace: string;
  name: string;
  netns: string;
  node: string;
  ip: string;
  tcp: number[];
  udp: number[];
  pid?: number;
}

export interface LabState {
  name: string;
  created: string;
  manifests: string;
  /** The manifests kproxy reads: the source folder with pod IPs and nodes filled in. Edit these to change the lab. */
  generated: string;
  dir: string;
  clusterCIDR: string;
  underlay: string;
  router: string;
  client: { netns: string; ip: string };
  nodes: LabNodeState[];
  pods: LabPodState[];
  namespaces: string[];
  notes: string[];
}

export interface LabUpOptions {
  name: string;
  manifests: string;
  nodes?: number;
  /** 'auto' (default): `kproxy run` if it is built, else iptables-restore of `kproxy render`, else nothing. */
  dataplane?: DataplaneMode | 'auto';
  /** Extra arguments for `kproxy run`. */
  runArgs?: string[];
  stateDir?: string;
  /** Progress lines. */
  progress?: (line: string) => void;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,19}$/;

export function statePath(name: string, stateDir = DEFAULT_STATE_DIR): string {
  return join(stateDir, `${name}.json`);
}

export function readLabState(name: string, stateDir = DEFAULT_STATE_DIR): LabState | undefined {
  const p = statePath(name, stateDir);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, 'utf8')) as LabState;
}

export function listLabs(stateDir = DEFAULT_STATE_DIR): LabState[] {
  if (!existsSync(stateDir)) return [];
  return readdirSync(stateDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => readLabState(f.slice(0, -5), stateDir))
    .filter((s): s is LabState => s !== undefined);
}

/** Whether this machine can build a lab; undefined when it can, else the reason. */
export async function labUnsupportedReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'creating network namespaces needs root (run with sudo)';
  try {
    await exec('ip', ['-V']);
  } catch {
    return 'the `ip` command (iproute2) is not installed';
  }
  for (const tool of ['iptables-restore', 'iptables-save']) {
    const r = await exec(tool, ['--version'], { allowFail: true }).catch(() => undefined);
    if (!r || r.code !== 0) return `\`${tool}\` is not installed`;
  }
  const probe = `kpchk${process.pid}`;
  const r = await exec('ip', ['netns', 'add', probe], { allowFail: true });
  await exec('ip', ['netns', 'delete', probe], { allowFail: true });
  if (r.code !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  return undefined;
}

/** Which dataplane the lab can drive: `kproxy run --manifests` when built, else `kproxy render` + iptables-restore. */
export async function detectDataplane(): Promise<DataplaneMode> {
  const help = async (cmd: string) =>
    exec(process.execPath, [kproxyMain, cmd, '--help'], { allowFail: true, timeoutMs: 20_000 }).then((r) => r.stdout + r.stderr);
  if ((await help('run')).includes('--manifests')) return 'run';
  const h = await help('render');
  if (h.includes('Usage') && !h.includes('not built')) return 'render';
  return 'none';
}

function podNetnsName(p: { namespace: string; name: string }): string {
  return p.namespace === 'default' ? p.name : `${p.namespace}.${p.name}`;
}

function prefixLen(cidr: string): number {
  return Number(cidr.split('/')[1]);
}

function same24(a: string, b: string): boolean {
  return a.split('.').slice(0, 3).join('.') === b.split('.').slice(0, 3).join('.');
}

/** Starts a detached process inside a namespace with output to a log file; returns its pid. */
function spawnDetached(netns: string, args: string[], logFile: string): number {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', netns, ...args], { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    if (child.pid === undefined) throw new Error(`cannot start ${args.join(' ')} in ${netns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** The `kproxy run` command line for one lab node. */
export function kproxyRunArgs(state: Pick<LabState, 'generated' | 'clusterCIDR'>, node: Pick<LabNodeState, 'name' | 'ip'>, extra: string[] = []): string[] {
  return ['run', '--manifests', state.generated, '--hostname-override', node.name, '--node-ip', node.ip, '--cluster-cidr', state.clusterCIDR, ...extra];
}

/** Builds the lab. On any failure everything created so far is removed. */
export async function labUp(opts: LabUpOptions): Promise<LabState> {
  const say = opts.progress ?? (() => {});
  if (!NAME_RE.test(opts.name)) throw new Error(`invalid lab name "${opts.name}": lowercase letters, digits and '-', at most 20 characters`);
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  if (readLabState(opts.name, stateDir)) throw new Error(`lab "${opts.name}" is already up (kproxy lab down --name ${opts.name})`);
  const why = await labUnsupportedReason();
  if (why) throw new Error(`cannot build a lab here: ${why}`);

  const manifests = loadLabManifests(opts.manifests);
  if (manifests.files.length === 0) throw new Error(`no .yaml/.yml/.json files in ${opts.manifests}`);
  const plan: LabPlan = planLab(manifests, { nodeCount: opts.nodes });
  const dir = join(stateDir, opts.name);
  const generated = join(dir, 'manifests');
  mkdirSync(generated, { recursive: true });
  for (const [file, text] of rewriteManifests(manifests, plan)) writeFileSync(join(generated, file), text);

  const topo = new Topology(opts.name);
  const state: LabState = {
    name: opts.name,
    created: new Date().toISOString(),
    manifests: opts.manifests,
    generated,
    dir,
    clusterCIDR: plan.clusterCIDR,
    underlay: `${opts.name}-net`,
    router: plan.routerIP,
    client: { netns: `${opts.name}-client`, ip: plan.clientIP },
    nodes: [],
    pods: [],
    namespaces: [],
    notes: [...manifests.warnings, ...plan.notes],
  };
  const save = () => {
    state.namespaces = topo.namespaces.map((n) => n.name);
    writeFileSync(statePath(opts.name, stateDir), JSON.stringify(state, null, 2) + '\n');
  };
  save();
  try {
    say(`creating the underlay ${state.underlay}`);
    const net = await topo.netns('net');
    await topo.bridge(net, 'br0', `${plan.routerIP}/${plan.underlayPrefix}`);

    const nodeNs = new Map<string, Netns>();
    for (const [i, n] of plan.nodes.entries()) {
      say(`creating node ${n.name} (${n.ip}, pods ${n.podCIDR})`);
      const ns = await topo.netns(n.name);
      nodeNs.set(n.name, ns);
      await topo.veth(net, `n${i}`, ns, 'eth0', undefined, `${n.ip}/${plan.underlayPrefix}`);
      await net.ip('link', 'set', `n${i}`, 'master', 'br0');
      await topo.bridge(ns, 'cni0', `${n.gateway}/${prefixLen(n.podCIDR)}`);
      await ns.sysctl('net.ipv4.ip_forward', '1');
      // kube-proxy needs bridged pod-to-pod traffic to pass through iptables (br_netfilter), as on a real node.
      await ns.sysctl('net.bridge.bridge-nf-call-iptables', '1').catch(() => undefined);
      state.nodes.push({ name: n.name, netns: ns.name, ip: n.ip, podCIDR: n.podCIDR, gateway: n.gateway, mode: 'none' });
      save();
    }
    for (const n of plan.nodes) {
      const ns = nodeNs.get(n.name)!;
      for (const o of plan.nodes) {
        if (o === n) continue;
        if (!same24(o.ip, n.ip)) await ns.ip('route', 'add', `${o.ip}/32`, 'dev', 'eth0');
        await ns.ip('route', 'add', o.podCIDR, 'via', o.ip);
      }
      if (!same24(plan.clientIP, n.ip)) await ns.ip('route', 'add', `${plan.clientIP}/32`, 'dev', 'eth0');
      if (!same24(plan.routerIP, n.ip)) await ns.ip('route', 'add', `${plan.routerIP}/32`, 'dev', 'eth0');
      await ns.ip('route', 'add', 'default', 'via', plan.routerIP);
    }

    say(`creating the external client ${state.client.netns} (${plan.clientIP})`);
    const client = await topo.netns('client');
    await topo.veth(net, 'client', client, 'eth0', undefined, `${plan.clientIP}/${plan.underlayPrefix}`);
    await net.ip('link', 'set', 'client', 'master', 'br0');
    const first = plan.nodes[0]!;
    for (const n of plan.nodes) if (!same24(n.ip, plan.clientIP)) await client.ip('route', 'add', `${n.ip}/32`, 'dev', 'eth0');
    await client.ip('route', 'add', 'default', 'via', plan.routerIP);
    // External and load-balancer IPs reach the cluster through the first node, as a cloud router would send them.
    const vips = new Set<string>();
    for (const s of manifests.services) {
      for (const ip of s.externalIPs) if (ip.includes('.')) vips.add(ip);
      for (const ing of s.loadBalancerIngress) if (ing.ip?.includes('.')) vips.add(ing.ip);
    }
    for (const ip of vips) await client.ip('route', 'add', `${ip}/32`, 'via', first.ip).catch(() => undefined);

    const logs = join(dir, 'logs');
    mkdirSync(logs, { recursive: true });
    for (const [i, p] of plan.pods.entries()) {
      const node = plan.nodes.find((n) => n.name === p.node)!;
      const ns = await topo.netns(podNetnsName(p));
      say(`creating pod ${p.namespace}/${p.name} on ${p.node} (${p.ip}, tcp ${p.tcp.join(',') || '-'} udp ${p.udp.join(',') || '-'})`);
      const inside = p.ip.startsWith(node.podCIDR.split('.').slice(0, 3).join('.') + '.');
      await topo.veth(nodeNs.get(p.node)!, `vp${i}`, ns, 'eth0', undefined, inside ? `${p.ip}/${prefixLen(node.podCIDR)}` : `${p.ip}/32`);
      await nodeNs.get(p.node)!.ip('link', 'set', `vp${i}`, 'master', 'cni0');
      // kubelet's hairpin-veth mode: a pod reaching itself through its Service is sent back out its own port.
      await nodeNs.get(p.node)!.ip('link', 'set', `vp${i}`, 'type', 'bridge_slave', 'hairpin', 'on');
      if (!inside) {
        await ns.ip('route', 'add', node.gateway, 'dev', 'eth0');
        await nodeNs.get(p.node)!.ip('route', 'add', `${p.ip}/32`, 'dev', 'cni0');
      }
      await ns.ip('route', 'add', 'default', 'via', node.gateway);
      const args = [process.execPath, podServerScript, '--name', p.name, '--ip', p.ip];
      if (p.tcp.length) args.push('--tcp', p.tcp.join(','));
      if (p.udp.length) args.push('--udp', p.udp.join(','));
      const log = join(logs, `pod-${podNetnsName(p)}.log`);
      writeFileSync(log, '');
      const pid = spawnDetached(ns.name, args, log);
      state.pods.push({ namespace: p.namespace, name: p.name, netns: ns.name, node: p.node, ip: p.ip, tcp: p.tcp, udp: p.udp, pid });
      save();
    }
    for (const p of state.pods) {
      const log = join(logs, `pod-${podNetnsName(p)}.log`);
      await waitFor(`pod ${p.name}'s server`, () => readFileSync(log, 'utf8').includes('ready'), 60_000, 50).catch((e: Error) => {
        throw new Error(`${e.message}: ${readFileSync(log, 'utf8').trim()}`);
      });
    }

    const mode = opts.dataplane && opts.dataplane !== 'auto' ? opts.dataplane : await detectDataplane();
    for (const n of state.nodes) {
      n.mode = mode;
      if (mode === 'run') {
        say(`starting kproxy run in ${n.netns}`);
        n.kproxyLog = join(logs, `kproxy-${n.name}.log`);
        n.kproxyPid = spawnDetached(n.netns, [process.execPath, kproxyMain, ...kproxyRunArgs(state, n, opts.runArgs)], n.kproxyLog);
      } else if (mode === 'render') {
        say(`programming ${n.netns} with kproxy render | iptables-restore (kproxy run is not built yet)`);
        await programWithRender(state, n);
      }
      save();
    }
    if (mode === 'run') {
      // Return once every node is programmed: upstream's layout ends KUBE-SERVICES with the KUBE-NODEPORTS jump,
      // so its presence means the first sync is in the kernel.
      for (const n of state.nodes) {
        say(`waiting for kproxy on ${n.name} to program its first sync`);
        await waitFor(
          `kproxy on ${n.name} to program iptables (log: ${n.kproxyLog})`,
          async () => {
            if (!pidAlive(n.kproxyPid)) throw new Error(`kproxy on ${n.name} exited`);
            const r = await exec('ip', ['netns', 'exec', n.netns, 'iptables', '-w', '5', '-t', 'nat', '-S', 'KUBE-SERVICES'], { allowFail: true });
            return r.code === 0 && r.stdout.includes('-j KUBE-NODEPORTS');
          },
          90_000,
          200,
        ).catch((e: Error) => {
          throw new Error(`${e.message}\n${logGist(readFileSync(n.kproxyLog!, 'utf8'))}`);
        });
      }
    }
    return state;
  } catch (e) {
    await teardown(state, topo.namespaces.map((n) => n.name)).catch(() => undefined);
    rmSync(statePath(opts.name, stateDir), { force: true });
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The pre-`run` fallback: render the generated manifests for this node and load them with iptables-restore. */
export async function programWithRender(state: LabState, node: LabNodeState): Promise<void> {
  const r = await exec(process.execPath, [kproxyMain, 'render', state.generated, '--hostname-override', node.name, '--node-ip', node.ip, '--cluster-cidr', state.clusterCIDR], {
    timeoutMs: 60_000,
  });
  await exec('ip', ['netns', 'exec', node.netns, 'iptables-restore', '-w', '5', '--noflush'], { input: r.stdout });
}

/** The error lines of a log and its last lines: enough to say why a process stopped. */
function logGist(text: string): string {
  const lines = text.trim().split('\n');
  const errors = lines.filter((l) => /error|"level":"(warn|error)"|^kproxy:/i.test(l)).slice(-3);
  const tail = lines.slice(-5).filter((l) => !errors.includes(l));
  return [...errors, ...tail].join('\n');
}

export function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function killPid(pid: number | undefined): Promise<void> {
  if (!pid) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 20; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

async function teardown(state: LabState, namespaces: string[]): Promise<void> {
  await Promise.all([...state.nodes.map((n) => killPid(n.kproxyPid)), ...state.pods.map((p) => killPid(p.pid))]);
  for (const name of [...namespaces].reverse()) {
    const r = await exec('ip', ['netns', 'pids', name], { allowFail: true });
    for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await exec('ip', ['netns', 'delete', name], { allowFail: true });
  }
}

/** Removes a lab: its processes, namespaces, generated manifests and state. Returns false when no such lab. */
export async function labDown(name: string, stateDir = DEFAULT_STATE_DIR): Promise<boolean> {
  const state = readLabState(name, stateDir);
  if (!state) return false;
  // A lab interrupted while coming up may own namespaces not yet in its state file: take every
  // "<name>-…" namespace that no other recorded lab claims.
  const others = new Set(listLabs(stateDir).filter((l) => l.name !== name).flatMap((l) => l.namespaces));
  const listed = await exec('ip', ['netns', 'list'], { allowFail: true });
  const extra = listed.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${name}-`) && !others.has(n) && !state.namespaces.includes(n));
  await teardown(state, [...state.namespaces, ...extra]);
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(statePath(name, stateDir), { force: true });
  return true;
}

/** The namespace for a node name, pod name (or ns/pod), "client", or a namespace name. */
export function resolveTarget(state: LabState, target: string): string {
  if (target === 'client') return state.client.netns;
  if (target === 'net' || target === 'underlay') return state.underlay;
  const node = state.nodes.find((n) => n.name === target);
  if (node) return node.netns;
  const pod = state.pods.find((p) => p.name === target || `${p.namespace}/${p.name}` === target);
  if (pod) return pod.netns;
  if (state.namespaces.includes(target)) return target;
  const known = ['client', ...state.nodes.map((n) => n.name), ...state.pods.map((p) => p.name)];
  throw new Error(`lab "${state.name}" has no node or pod "${target}" (known: ${known.join(', ')})`);
}

/** A readable picture of the lab and how to get into it. */
export function formatTopology(state: LabState): string {
  const lines: string[] = [];
  lines.push(`lab "${state.name}" is up (manifests: ${state.manifests})`);
  lines.push('');
  lines.push(`  underlay bridge br0 ${state.router} in ${state.underlay}`);
  lines.push(`  ├─ client   ${state.client.ip.padEnd(15)} netns ${state.client.netns}`);
  state.nodes.forEach((n, i) => {
    const lastNode = i === state.nodes.length - 1;
    const dp = n.mode === 'run' ? `kproxy run (pid ${n.kproxyPid})` : n.mode === 'render' ? 'rules from kproxy render' : 'no kproxy';
    lines.push(`  ${lastNode ? '└─' : '├─'} node ${n.name.padEnd(12)} ${n.ip.padEnd(15)} netns ${n.netns}   cni0 ${n.gateway}/${n.podCIDR.split('/')[1]}   ${dp}`);
    const pods = state.pods.filter((p) => p.node === n.name);
    pods.forEach((p, j) => {
      const ports = [...p.tcp.map((x) => `${x}/tcp`), ...p.udp.map((x) => `${x}/udp`)].join(' ');
      lines.push(`  ${lastNode ? '  ' : '│ '}   ${j === pods.length - 1 ? '└─' : '├─'} pod ${(p.namespace === 'default' ? p.name : `${p.namespace}/${p.name}`).padEnd(24)} ${p.ip.padEnd(15)} ${ports}`);
    });
  });
  lines.push('');
  lines.push('Get in:');
  const n0 = state.nodes[0]!;
  const p0 = state.pods[0];
  const nameOpt = state.name === 'kproxy' ? '' : ` --name ${state.name}`;
  const cmds: [string, string][] = [[`ip netns exec ${n0.netns} iptables-save -t nat`, `the rules kproxy wrote on ${n0.name}`]];
  if (p0) cmds.push([`kproxy lab exec${nameOpt} ${p0.name} -- ip addr`, 'a shell command inside a pod']);
  cmds.push([`kproxy lab curl${nameOpt} client http://${n0.ip}:<nodePort>/ -n 10`, 'from outside the cluster: which pod answers']);
  cmds.push([`kproxy lab down${nameOpt}`, 'remove it all']);
  const w = Math.max(...cmds.map(([c]) => c.length)) + 2;
  for (const [c, why] of cmds) lines.push(`  ${c.padEnd(w)}# ${why}`);
  lines.push('');
  lines.push(`kproxy reads ${state.generated} (pod IPs filled in): edit it and the nodes follow.`);
  for (const n of state.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

export interface LabProbeResult {
  ok: boolean;
  answer?: string;
  error?: string;
  ms: number;
}

/** Sends `count` requests from a lab namespace (node, pod or client) to a URL, each on a new connection. */
export async function probeFrom(state: LabState, from: string, url: string, count: number, timeoutMs = 2000): Promise<LabProbeResult[]> {
  return probeNetns(resolveTarget(state, from), url, count, timeoutMs);
}

/** The same from any network namespace: one result per request, failures included. */
export async function probeNetns(ns: string, url: string, count: number, timeoutMs = 2000): Promise<LabProbeResult[]> {
  const r = await exec('ip', ['netns', 'exec', ns, process.execPath, probeScript, url, '--count', String(count), '--timeout', String(timeoutMs)], {
    allowFail: true,
    timeoutMs: count * (timeoutMs + 1000) + 10_000,
  });
  const out: LabProbeResult[] = [];
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    try {
      out.push(JSON.parse(line) as LabProbeResult);
    } catch {
      /* not a result line */
    }
  }
  while (out.length < count) out.push({ ok: false, error: r.stderr.trim() || `probe exited with ${r.code}`, ms: 0 });
  return out;
}
