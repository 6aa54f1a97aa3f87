// `npm run bench -- userspace`: kproxy's userspace mode against HAProxy (mode
// tcp) and a kernel DNAT baseline, the same L4 job in the same namespaces in
// one run. client ns → node ns (the proxy) → backend ns (HAProxy answering
// HTTP 200 itself, and iperf3 -s). Measures requests/s with short connections
// (wrk, Connection: close), bulk TCP throughput (iperf3) and latency at a paced
// 1,000 requests/s with a new connection per request (our own paced client).
// Options: --seconds=N (default 5), --rounds=N (default 2, the best round counts).
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Topology, waitFor, isRoot, type Netns } from '../src/lab/netns.js';
import type { UsServicePort } from '../src/dataplane/userspace/model.js';

const here = (f: string): string => new URL(f, import.meta.url).pathname;
const CLIENT = '10.10.1.2';
const NODE = '10.10.1.1';
const BACKEND = '10.10.2.2';
const VIP_KPROXY = '10.96.0.10';
const VIP_DNAT = '10.96.0.20';
const HAPROXY_WEB = 9080;
const HAPROXY_IPERF = 9201;

interface Figures {
  rps: number;
  gbps: number;
  /** Paced 1,000 req/s, a new connection per request. */
  p50: number;
  p99: number;
  /** Paced 1,000 req/s over 16 keep-alive connections. */
  kaP50: number;
  kaP99: number;
  errors: number;
}

function opt(args: string[], name: string, def: number): number {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
}

async function wrk(client: Netns, url: string, seconds: number): Promise<number> {
  const r = await client.exec('wrk', ['-t1', '-c32', `-d${seconds}s`, '-H', 'Connection: close', url], { timeoutMs: (seconds + 30) * 1000 });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`wrk output not understood:\n${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

async function iperf(client: Netns, host: string, port: number, seconds: number): Promise<number> {
  const r = await client.exec('iperf3', ['-c', host, '-p', String(port), '-t', String(seconds), '-J'], { timeoutMs: (seconds + 30) * 1000 });
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

async function paced(client: Netns, host: string, port: number, seconds: number, mode = 'close'): Promise<{ p50: number; p99: number; errors: number }> {
  const r = await client.exec(process.execPath, [here('./userspace-paced.js'), host, String(port), '1000', String(seconds), mode], { timeoutMs: (seconds + 30) * 1000 });
  return JSON.parse(r.stdout.trim()) as { p50: number; p99: number; errors: number };
}

async function measure(client: Netns, host: string, webPort: number, iperfPort: number, seconds: number): Promise<Figures> {
  const rps = await wrk(client, `http://${host}:${webPort}/`, seconds);
  const gbps = await iperf(client, host, iperfPort, seconds);
  const lat = await paced(client, host, webPort, seconds);
  const ka = await paced(client, host, webPort, seconds, 'keepalive:16');
  return { rps, gbps, ...lat, kaP50: ka.p50, kaP99: ka.p99, errors: lat.errors + ka.errors };
}

export async function run(args: string[]): Promise<void> {
  if (!isRoot()) throw new Error('bench userspace needs root (it creates network namespaces)');
  const seconds = opt(args, 'seconds', 5);
  const rounds = opt(args, 'rounds', 2);
  const topo = new Topology();
  const dir = mkdtempSync(join(tmpdir(), 'kp-bench-'));
  try {
    const client = await topo.netns('client');
    const node = await topo.netns('node');
    const backend = await topo.netns('backend');
    await topo.veth(client, 'eth0', node, 'eth-c', `${CLIENT}/24`, `${NODE}/24`);
    await topo.veth(node, 'eth-b', backend, 'eth0', '10.10.2.1/24', `${BACKEND}/24`);
    await client.ip('route', 'add', 'default', 'via', NODE);
    await backend.ip('route', 'add', 'default', 'via', '10.10.2.1');
    await node.sysctl('net.ipv4.ip_forward', '1');
    for (const ns of [client, node, backend]) await ns.sysctl('net.ipv4.ip_local_port_range', '10000 65000');
    await client.sysctl('net.ipv4.tcp_tw_reuse', '1');
    await node.sysctl('net.ipv4.tcp_tw_reuse', '1');

    // Backend: HAProxy answering HTTP itself (a C server, so the backend is not what is measured), iperf3 -s.
    writeFileSync(
      join(dir, 'backend.cfg'),
      [
        'global', '  maxconn 8000', 'defaults', '  mode http', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s',
        'frontend fe', `  bind ${BACKEND}:8080`, '  http-request return status 200 content-type text/plain string "ok"', '',
      ].join('\n'),
    );
    topo.track(backend.spawn('haproxy', ['-db', '-f', join(dir, 'backend.cfg')]));
    topo.track(backend.spawn('iperf3', ['-s', '-p', '5201']));
    // HAProxy as the L4 proxy under test, as Debian ships it (threads = cores).
    writeFileSync(
      join(dir, 'proxy.cfg'),
      [
        'global', '  maxconn 8000', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
        'listen web', `  bind ${NODE}:${HAPROXY_WEB}`, `  server be ${BACKEND}:8080`,
        'listen iperf', `  bind ${NODE}:${HAPROXY_IPERF}`, `  server be ${BACKEND}:5201`, '',
      ].join('\n'),
    );
    topo.track(node.spawn('haproxy', ['-db', '-f', join(dir, 'proxy.cfg')]));
    // The same with one thread, like kproxy's single event loop.
    writeFileSync(
      join(dir, 'proxy1.cfg'),
      [
        'global', '  maxconn 8000', '  nbthread 1', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
        'listen web', `  bind ${NODE}:${HAPROXY_WEB + 1}`, `  server be ${BACKEND}:8080`,
        'listen iperf', `  bind ${NODE}:${HAPROXY_IPERF + 1}`, `  server be ${BACKEND}:5201`, '',
      ].join('\n'),
    );
    topo.track(node.spawn('haproxy', ['-db', '-f', join(dir, 'proxy1.cfg')]));
    // Kernel DNAT baseline: what iptables mode does for a service, minus the probability chains.
    for (const [port, to] of [[80, 8080], [5201, 5201]] as const) {
      await node.exec('iptables', ['-t', 'nat', '-A', 'PREROUTING', '-d', `${VIP_DNAT}/32`, '-p', 'tcp', '--dport', String(port), '-j', 'DNAT', '--to-destination', `${BACKEND}:${to}`]);
    }
    // kproxy userspace, through its portals.
    const driver = topo.track(node.spawnNode(here('../test/kernel/userspace-driver.js'), [JSON.stringify({ hostIP: NODE, iptables: true, scheduler: 'rr' })], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const lines = createInterface({ input: driver.stdout! })[Symbol.asyncIterator]();
    const answer = async (): Promise<Record<string, unknown>> => JSON.parse(String((await lines.next()).value)) as Record<string, unknown>;
    if (!(await answer()).ready) throw new Error('kproxy userspace driver did not start');
    const svc = (key: string, port: number, to: number): UsServicePort => ({
      key, protocol: 'TCP', clusterIP: VIP_KPROXY, port, nodePort: 0, externalIPs: [], loadBalancerIPs: [],
      sessionAffinity: 'None', stickyMaxAgeSeconds: 10800, endpoints: [{ ip: BACKEND, port: to, weight: 1 }],
    });
    driver.stdin!.write(JSON.stringify({ cmd: 'sync', ports: [svc('bench/web:http', 80, 8080), svc('bench/iperf:iperf', 5201, 5201)] }) + '\n');
    const synced = await answer();
    if (!synced.ok) throw new Error(`kproxy sync failed: ${String(synced.error)}`);
    const probe = async (host: string, port: number): Promise<boolean> =>
      (await client.exec('wrk', ['-t1', '-c1', '-d1s', `http://${host}:${port}/`], { allowFail: true, timeoutMs: 10_000 })).stdout.includes('Requests/sec');
    await waitFor('backend via DNAT', () => probe(VIP_DNAT, 80), 15_000, 200);
    await waitFor('backend via HAProxy', () => probe(NODE, HAPROXY_WEB), 15_000, 200);
    await waitFor('backend via HAProxy (1 thread)', () => probe(NODE, HAPROXY_WEB + 1), 15_000, 200);
    const load = (await client.exec('cat', ['/proc/loadavg'])).stdout.trim();
    process.stdout.write(`load average at start: ${load}\n`);
    await waitFor('backend via kproxy', () => probe(VIP_KPROXY, 80), 15_000, 200);

    const best: Record<string, Figures> = {};
    const keep = (name: string, f: Figures): void => {
      const b = best[name];
      best[name] = b
        ? {
            rps: Math.max(b.rps, f.rps),
            gbps: Math.max(b.gbps, f.gbps),
            p50: Math.min(b.p50, f.p50),
            p99: Math.min(b.p99, f.p99),
            kaP50: Math.min(b.kaP50, f.kaP50),
            kaP99: Math.min(b.kaP99, f.kaP99),
            errors: b.errors + f.errors,
          }
        : f;
    };
    for (let r = 0; r < rounds; r++) {
      keep('kernel DNAT', await measure(client, VIP_DNAT, 80, 5201, seconds));
      keep('HAProxy (mode tcp)', await measure(client, NODE, HAPROXY_WEB, HAPROXY_IPERF, seconds));
      keep('HAProxy (mode tcp, nbthread 1)', await measure(client, NODE, HAPROXY_WEB + 1, HAPROXY_IPERF + 1, seconds));
      keep('kproxy userspace', await measure(client, VIP_KPROXY, 80, 5201, seconds));
    }
    const k = best['kproxy userspace']!;
    const h = best['HAProxy (mode tcp)']!;
    const d = best['kernel DNAT']!;
    const h1 = best['HAProxy (mode tcp, nbthread 1)']!;
    const rows = Object.entries(best).map(
      ([name, f]) =>
        `| ${name} | ${Math.round(f.rps)} | ${f.gbps.toFixed(2)} | ${f.p50.toFixed(2)} / ${f.p99.toFixed(2)} | ${f.kaP50.toFixed(2)} / ${f.kaP99.toFixed(2)} | ${f.errors} |`,
    );
    process.stdout.write(
      [
        `seconds per measurement: ${seconds}, rounds: ${rounds} (best round kept)`,
        '| path | req/s (wrk -c32, Connection: close) | iperf3 Gbit/s | p50 / p99 ms @1000 rps, new conn each | p50 / p99 ms @1000 rps, 16 keep-alive conns | errors |',
        '|---|---|---|---|---|---|',
        ...rows,
        '',
        `kproxy/HAProxy requests/s: ${(k.rps / h.rps).toFixed(2)}× (target ≥ 0.5×); against one HAProxy thread: ${(k.rps / h1.rps).toFixed(2)}×`,
        `kproxy/HAProxy throughput: ${(k.gbps / h.gbps).toFixed(2)}× (target ≥ 0.7×)`,
        `kproxy extra p99 over kernel DNAT: ${(k.p99 - d.p99).toFixed(2)} ms with a new connection per request, ${(k.kaP99 - d.kaP99).toFixed(2)} ms over keep-alive (target < 1 ms); HAProxy's: ${(h.p99 - d.p99).toFixed(2)} / ${(h.kaP99 - d.kaP99).toFixed(2)} ms`,
        '',
      ].join('\n'),
    );
    driver.stdin!.write(JSON.stringify({ cmd: 'stop' }) + '\n');
    await answer().catch(() => undefined);
  } finally {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
