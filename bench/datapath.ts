// `npm run bench -- datapath [--services=10000] [--conns=3000]`: what the
// rules cost each new connection. A client namespace connects through a node
// namespace to one pod, over and over (a new TCP connection each time, timed
// from connect() to established), first straight to the pod IP with no rules,
// then through the ClusterIP of the last of N services (10 endpoints each)
// with kproxy's iptables rules and then with its nftables table, then through a
// single DNAT rule (conntrack and NAT with no lookups: the floor of any DNAT proxy), all in one
// run so the machine's noise is shared. The probed service's 10 endpoints are
// all addresses of the one pod, so every random pick reaches it; the last
// service is iptables' worst case (KUBE-SERVICES is a list). The iptables
// rules are loaded with iptables-legacy-restore, which takes 430k lines in
// one go (the matching is the same linear walk on the nft backend).
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, isRoot, runPrefix, type Netns } from '../src/lab/netns.js';
import type { ClusterState } from '../src/k8s/types.js';
import { renderIptables } from '../src/dataplane/iptables/render.js';
import { restorePayload } from '../src/dataplane/iptables/payload.js';
import { renderNftablesText } from '../src/dataplane/nftables/text.js';
import { loadManifestText } from '../src/k8s/load.js';
import { machineLine } from './machine.js';

function arg(args: string[], name: string, def: string): string {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

const POD = '10.244.0.2';
const podAddr = (k: number) => `10.250.${(k >> 8) & 255}.${k & 255}`;

function cluster(n: number): ClusterState {
  const items: object[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.96.${(i >> 8) & 255}.${i & 255}`;
    items.push({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'b', name: `s${i}` }, spec: { clusterIP: ip, ports: [{ port: 80, targetPort: 8080 }] } });
    items.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { namespace: 'b', name: `s${i}-x`, labels: { 'kubernetes.io/service-name': `s${i}` } },
      addressType: 'IPv4',
      endpoints: Array.from({ length: 10 }, (_, j) => ({ addresses: [i === n - 1 ? podAddr(j) : podAddr(1000 + ((i * 10 + j) % 50000))], conditions: { ready: true }, nodeName: 'other' })),
      ports: [{ name: '', port: 8080, protocol: 'TCP' }],
    });
  }
  return loadManifestText(JSON.stringify({ apiVersion: 'v1', kind: 'List', items }), 'bench').state;
}

const CLIENT = `
const net = require('node:net');
const [host, port, n] = process.argv.slice(1);
const out = [];
let i = 0;
const next = () => {
  if (i++ >= Number(n)) { console.log(JSON.stringify(out)); return; }
  const t = process.hrtime.bigint();
  const s = net.connect(Number(port), host, () => { out.push(Number(process.hrtime.bigint() - t) / 1000); s.destroy(); setImmediate(next); });
  s.on('error', (e) => { console.error(e.message); process.exit(1); });
};
next();`;

const SERVER = `require('node:net').createServer((s) => s.destroy()).listen(8080, '0.0.0.0', () => console.log('ready'));`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function measure(client: Netns, host: string, port: number, conns: number): Promise<string> {
  const r = await client.exec(process.execPath, ['-e', CLIENT, host, String(port), String(conns)], { timeoutMs: 300_000 });
  const xs = JSON.parse(r.stdout) as number[];
  return `p50 ${pct(xs, 50).toFixed(0)} µs, p90 ${pct(xs, 90).toFixed(0)} µs, p99 ${pct(xs, 99).toFixed(0)} µs`;
}

export async function run(args: string[]): Promise<void> {
  if (!isRoot()) {
    process.stdout.write('datapath: needs root (network namespaces); skipped\n');
    return;
  }
  const n = Number(arg(args, 'services', '10000'));
  const conns = Number(arg(args, 'conns', '3000'));
  const topo = new Topology(runPrefix('kd'));
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-dp-'));
  try {
    const node = await topo.netns('node');
    const client = await topo.netns('client');
    const pod = await topo.netns('pod');
    await topo.veth(node, 'eth0', client, 'eth0', '192.168.50.1/24', '192.168.50.2/24');
    await topo.veth(node, 'vpod', pod, 'eth0', '10.244.0.1/24', `${POD}/24`);
    for (let j = 0; j < 10; j++) await pod.ip('addr', 'add', `${podAddr(j)}/32`, 'dev', 'eth0');
    await node.ip('route', 'add', '10.250.0.0/16', 'via', POD);
    await pod.ip('route', 'add', 'default', 'via', '10.244.0.1');
    await client.ip('route', 'add', 'default', 'via', '192.168.50.1');
    await node.sysctl('net.ipv4.ip_forward', '1');
    topo.track(pod.spawn(process.execPath, ['-e', SERVER]));
    await new Promise((r) => setTimeout(r, 500));
    const st = cluster(n);
    const target = `10.96.${((n - 1) >> 8) & 255}.${(n - 1) & 255}`;
    const opts = { nodeName: 'node', nodeIPs: ['192.168.50.1'], clusterCIDRs: ['10.244.0.0/16'], families: ['IPv4' as const] };
    const lines: string[] = [];
    lines.push(`no rules, straight to the pod:            ${await measure(client, POD, 8080, conns)}`);
    const ipt = join(dir, 'ipt.txt');
    const rs = renderIptables(st, opts)[0]!;
    writeFileSync(ipt, restorePayload(rs));
    let t = Date.now();
    await node.exec('iptables-legacy-restore', [ipt], { timeoutMs: 600_000 });
    // The jumps from the built-in chains, as the agent inserts them.
    for (const j of rs.jumps) await node.exec('iptables-legacy', ['-t', j.table, '-I', j.chain, ...j.args]);
    const iptLoad = Date.now() - t;
    lines.push(`iptables (legacy), ${n} services, last:  ${await measure(client, target, 80, conns)}   (loaded in ${(iptLoad / 1000).toFixed(1)} s)`);
    for (const tb of ['nat', 'filter']) {
      await node.exec('iptables-legacy', ['-t', tb, '-F']);
      await node.exec('iptables-legacy', ['-t', tb, '-X']);
    }
    const nft = join(dir, 'nft.txt');
    writeFileSync(nft, renderNftablesText(st, opts));
    t = Date.now();
    await node.exec('nft', ['-f', nft], { timeoutMs: 600_000 });
    const nftLoad = Date.now() - t;
    lines.push(`nftables (kproxy's table), ${n} services: ${await measure(client, target, 80, conns)}   (loaded in ${(nftLoad / 1000).toFixed(1)} s)`);
    await node.exec('nft', ['flush', 'ruleset']);
    // The floor of any DNAT-based proxy: conntrack and NAT for one rule, no lookups.
    const one = `table ip one {\n chain pre { type nat hook prerouting priority -100; policy accept; ip daddr ${target} tcp dport 80 dnat to ${POD}:8080; }\n}\n`;
    await node.exec('nft', ['-f', '-'], { input: one });
    lines.push(`one DNAT rule (no service table):         ${await measure(client, target, 80, conns)}`);
    await node.exec('nft', ['flush', 'ruleset']);
    lines.push(`no rules again:                           ${await measure(client, POD, 8080, conns)}`);
    process.stdout.write(machineLine(`${conns} sequential connections each, connect() to established, client namespace → node namespace → pod`));
    for (const l of lines) process.stdout.write(l + '\n');
  } finally {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
