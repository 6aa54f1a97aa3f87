// `npm run bench -- userspace`: kproxy's userspace mode against HAProxy (mode
// tcp) and a kernel DNAT baseline, the same L4 job in the same namespaces in
// one run. client ns → node ns (the proxy) → backend ns (HAProxy answering
// HTTP 200 itself, and iperf3 -s). Measures requests/s with short connections
// (wrk, Connection: close), bulk TCP throughput (iperf3) and latency at about
// 1,000 requests/s (wrk --latency, 12 connections each pausing 10 ms between
// requests), with a new connection per request and over keep-alive.
// Options: --seconds=N (default 5), --rounds=N (default 2, the best round counts),
// --datapath=handles|net (kproxy's TCP data path; default: its own default, handles).
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
  /** The rate the latency runs reached (new connections). */
  pacedRate: number;
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

/** wrk's duration units → ms. */
function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 } as Record<string, number>)[m[2]!]!;
}

/**
 * Latency at about 1,000 requests/s: wrk --latency with 12 connections, each
 * waiting 10 ms between requests (wrk's Lua delay()), so the rate is ~1,000/s
 * whatever the path. `close`: a new connection per request; otherwise keep-alive.
 */
async function paced(client: Netns, luaFile: string, host: string, port: number, seconds: number, mode = 'close'): Promise<{ p50: number; p99: number; errors: number; rate: number }> {
  const args = ['-t1', '-c12', `-d${seconds}s`, '--latency', '-s', luaFile];
  if (mode === 'close') args.push('-H', 'Connection: close');
  const r = await client.exec('wrk', [...args, `http://${host}:${port}/`], { timeoutMs: (seconds + 30) * 1000 });
  const pct = (p: string): number => ms(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(r.stdout)?.[1] ?? '');
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const errors = errs ? Number(errs[1]) + Number(errs[4]) : 0;
  return { p50: pct('50'), p99: pct('99'), errors, rate };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 2000));

async function measure(client: Netns, lua: string, host: string, webPort: number, iperfPort: number, seconds: number): Promise<Figures> {
  await settle();
  const rps = await wrk(client, `http://${host}:${webPort}/`, seconds);
  await settle();
  const gbps = await iperf(client, host, iperfPort, seconds);
  const lat = await paced(client, lua, host, webPort, seconds);
  await settle();
  const ka = await paced(client, lua, host, webPort, seconds, 'keepalive');
  return { rps, gbps, p50: lat.p50, p99: lat.p99, pacedRate: lat.rate, kaP50: ka.p50, kaP99: ka.p99, errors: lat.errors + ka.errors };
}

export async function run(args: string[]): Promise<void> {
  if (!isRoot()) throw new Error('bench userspace needs root (it creates network namespaces)');
  const seconds = opt(args, 'seconds', 5);
  const rounds = opt(args, 'rounds', 2);
  const dataPath = args.find((a) => a.startsWith('--datapath='))?.split('=')[1];
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
    // Tens of thousands of short connections per phase: with the default 120 s TIME_WAIT the
    // (machine-wide) conntrack table fills and later phases see SYNs dropped and 1 s/3 s retransmits.
    for (const ns of [client, node, backend]) await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_time_wait', '1');
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
    const driver = topo.track(node.spawnNode(here('../test/kernel/userspace-driver.js'), [JSON.stringify({ hostIP: NODE, iptables: true, scheduler: 'rr', ...(dataPath ? { dataPath } : {}) })], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const lines = createInterface({ input: driver.stdout! })[Symbol.asyncIterator]();
    const answer = async (): Promise<Record<string, unknown>> => JSON.parse(String((await lines.next()).value)) as Record<string, unknown>;
    const hello = await answer();
    if (!hello.ready) throw new Error(`kproxy userspace driver did not start: ${String(hello.error)}`);
    process.stdout.write(`kproxy TCP data path: ${String(hello.dataPath)}\n`);
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

    // ~1,000 req/s from 12 connections: each waits 10 ms before its next request.
    const lua = join(dir, 'pace.lua');
    writeFileSync(lua, 'function delay()\n  return 10\nend\n');
    const best: Record<string, Figures> = {};
    const keep = (name: string, f: Figures): void => {
      const b = best[name];
      best[name] = b
        ? {
            rps: Math.max(b.rps, f.rps),
            pacedRate: Math.max(b.pacedRate, f.pacedRate),
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
      keep('kernel DNAT', await measure(client, lua, VIP_DNAT, 80, 5201, seconds));
      keep('HAProxy (mode tcp)', await measure(client, lua, NODE, HAPROXY_WEB, HAPROXY_IPERF, seconds));
      keep('HAProxy (mode tcp, nbthread 1)', await measure(client, lua, NODE, HAPROXY_WEB + 1, HAPROXY_IPERF + 1, seconds));
      keep('kproxy userspace', await measure(client, lua, VIP_KPROXY, 80, 5201, seconds));
    }
    const k = best['kproxy userspace']!;
    const h = best['HAProxy (mode tcp)']!;
    const d = best['kernel DNAT']!;
    const h1 = best['HAProxy (mode tcp, nbthread 1)']!;
    const rows = Object.entries(best).map(
      ([name, f]) =>
        `| ${name} | ${Math.round(f.rps)} | ${f.gbps.toFixed(2)} | ${f.p50.toFixed(2)} / ${f.p99.toFixed(2)} (${Math.round(f.pacedRate)}/s) | ${f.kaP50.toFixed(2)} / ${f.kaP99.toFixed(2)} | ${f.errors} |`,
    );
    process.stdout.write(
      [
        `seconds per measurement: ${seconds}, rounds: ${rounds} (best round kept)`,
        '| path | req/s (wrk -c32, Connection: close) | iperf3 Gbit/s | p50 / p99 ms at ~1,000 req/s, new connection each | p50 / p99 ms at ~1,000 req/s, keep-alive | errors |',
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
