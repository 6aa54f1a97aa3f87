// Differential tests: the simulator against the real kernel.
//
//   client ns (10.10.0.2) ── ncl|node ns|nbk ── backend ns (10.20.0.2 … 10.20.0.5, servers on 8080/8081 tcp+udp)
//
// Each ruleset is loaded into the node namespace with iptables-restore. Real TCP
// connections and UDP datagrams go from the client to a virtual IP; the backend
// servers answer with the address:port that accepted and the source they saw.
// Every kernel result must be one of the simulator's outcomes, and over N
// connections each outcome's count must lie within 4 binomial standard
// deviations (+1) of N·p. The random rulesets come from a seeded PRNG; the seed
// is printed and can be forced with NETFILTER_DIFF_SEED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix, type Netns } from '../../src/lab/netns.js';
import { parseSave } from '../../src/netfilter/parse-save.js';
import { trace, type Outcome, type TraceRequest } from '../../src/netfilter/simulate.js';
import { renderIptables } from '../../src/dataplane/iptables/render.js';
import { ep, makeService, makeSlice, state, tcpPort } from '../unit/iptables-helpers.js';
import { nodeDump } from '../unit/netfilter-helpers.js';
import type { Protocol, ServicePort } from '../../src/k8s/types.js';

const CLIENT = '10.10.0.2';
const NODE_CL = '10.10.0.1';
const NODE_BK = '10.20.0.1';
const BACKENDS = ['10.20.0.2', '10.20.0.3', '10.20.0.4', '10.20.0.5'];
const PORTS = [8080, 8081];
const TIMEOUT_MS = 300;
const NODE_SK = '10.30.0.1';
const SINK = '10.30.0.2';

const SERVER = `
const net = require('net'), dgram = require('dgram');
for (const port of ${JSON.stringify(PORTS)}) {
  net.createServer((s) => { s.end(JSON.stringify({ l: s.localAddress + ':' + s.localPort, r: s.remoteAddress })); }).listen(port, '0.0.0.0');
  const u = dgram.createSocket('udp4');
  u.on('message', (m, ri) => { const a = u.address(); u.send(JSON.stringify({ r: ri.address }), ri.port, ri.address); });
  u.bind(port, '0.0.0.0');
}
setInterval(() => {}, 1000);
`;

// UDP replies cannot carry the server's local address without IP_PKTINFO, so each
// address gets its own socket: bind per (ip, port).
const SERVER_UDP = `
const dgram = require('dgram');
for (const ip of ${JSON.stringify(BACKENDS)}) for (const port of ${JSON.stringify(PORTS)}) {
  const u = dgram.createSocket('udp4');
  u.on('message', (m, ri) => u.send(JSON.stringify({ l: ip + ':' + port, r: ri.address }), ri.port, ri.address));
  u.bind(port, ip);
}
setInterval(() => {}, 1000);
`;

const SERVER_TCP = `
const net = require('net');
for (const port of ${JSON.stringify(PORTS)})
  net.createServer((s) => s.end(JSON.stringify({ l: s.localAddress + ':' + s.localPort, r: s.remoteAddress }))).listen(port, '0.0.0.0');
setInterval(() => {}, 1000);
`;
void SERVER;

/** Runs n connections (or datagrams) and prints one result string per connection. */
const CLIENT_SCRIPT = `
const net = require('net'), dgram = require('dgram');
const [proto, host, port, n, timeout] = [process.argv[1], process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
function one() {
  return new Promise((resolve) => {
    let done = false;
    const fin = (r) => { if (!done) { done = true; clearTimeout(t); try { s.destroy ? s.destroy() : s.close(); } catch {} resolve(r); } };
    let s;
    // On expiry, let already-arrived I/O run first (a loaded machine may have paused this process).
    const t = setTimeout(() => setImmediate(() => setImmediate(() => fin('timeout'))), timeout);
    const onData = (d) => { try { const j = JSON.parse(String(d)); fin('ok ' + j.l + ' ' + j.r); } catch { fin('garbled'); } };
    const onErr = (e) => fin(e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' ? 'refused' : 'error ' + e.code);
    if (proto === 'tcp') {
      s = net.connect({ host, port });
      let buf = '';
      s.on('data', (d) => (buf += d));
      s.on('end', () => onData(buf));
      s.on('error', onErr);
    } else {
      s = dgram.createSocket('udp4');
      s.on('message', onData);
      s.on('error', onErr);
      s.connect(port, host, () => s.send('x'));
    }
  });
}
(async () => {
  const out = [];
  const conc = 16;
  for (let i = 0; i < n; i += conc) out.push(...(await Promise.all(Array.from({ length: Math.min(conc, n - i) }, one))));
  process.stdout.write(JSON.stringify(out));
})();
`;

interface Lab {
  topo: Topology;
  client: Netns;
  node: Netns;
}

async function makeLab(): Promise<Lab> {
  const topo = new Topology(runPrefix('nfd'));
  const client = await topo.netns('cl');
  const node = await topo.netns('nd');
  const backend = await topo.netns('bk');
  await topo.veth(client, 'eth0', node, 'ncl', `${CLIENT}/24`, `${NODE_CL}/24`);
  await topo.veth(node, 'nbk', backend, 'eth0', `${NODE_BK}/24`, `${BACKENDS[0]}/24`);
  for (const ip of BACKENDS.slice(1)) await backend.ip('addr', 'add', `${ip}/24`, 'dev', 'eth0');
  await client.ip('route', 'add', 'default', 'via', NODE_CL);
  await backend.ip('route', 'add', 'default', 'via', NODE_BK);
  await node.sysctl('net.ipv4.ip_forward', '1');
  // REJECT answers with ICMP; the kernel's per-destination ICMP rate limit (6 then 1/s) would turn
  // most of a burst of rejected connections into timeouts. The simulator answers per packet.
  await node.sysctl('net.ipv4.icmp_ratelimit', '0');
  // Virtual IPs that nobody DNATs are routed on to a sink that drops them silently
  // (a plain route, so FORWARD still sees them, as in a cluster).
  const sink = await topo.netns('sk');
  await topo.veth(node, 'nsk', sink, 'eth0', `${NODE_SK}/24`, `${SINK}/24`);
  await node.ip('route', 'add', '10.96.0.0/12', 'via', SINK);
  await sink.exec('iptables', ['-t', 'raw', '-A', 'PREROUTING', '-j', 'DROP']);
  const tcp = topo.track(backend.spawn(process.execPath, ['-e', SERVER_TCP]));
  const udp = topo.track(backend.spawn(process.execPath, ['-e', SERVER_UDP]));
  void tcp;
  void udp;
  // Wait until both servers answer directly.
  for (let i = 0; i < 100; i++) {
    const r = await runClient(client, 'tcp', BACKENDS[3]!, 8081, 1).catch(() => ['x']);
    const u = await runClient(client, 'udp', BACKENDS[3]!, 8081, 1).catch(() => ['x']);
    if (r[0]!.startsWith('ok') && u[0]!.startsWith('ok')) return { topo, client, node };
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('backend servers did not come up');
}

async function runClient(ns: Netns, proto: 'tcp' | 'udp', host: string, port: number, n: number): Promise<string[]> {
  const r = await ns.exec(process.execPath, ['-e', CLIENT_SCRIPT, proto, host, String(port), String(n), String(TIMEOUT_MS)], { timeoutMs: 30_000 });
  return JSON.parse(r.stdout) as string[];
}

async function load(node: Netns, dump: string): Promise<void> {
  const r = await node.exec('iptables-restore', [], { input: dump, allowFail: true });
  if (r.code !== 0) throw new Error(`iptables-restore: ${r.stderr.trim()}\n--- dump ---\n${dump.split('\n').map((l, i) => `${i + 1}: ${l}`).join('\n')}`);
  await node.exec('conntrack', ['-F'], { allowFail: true });
}

/** What the client would observe for one simulated outcome. */
function expectedObservation(o: Outcome, proto: string): string {
  if (o.verdict === 'DROP') return 'timeout';
  if (o.verdict === 'REJECT') return o.rejectWith === 'icmp-host-unreachable' || o.rejectWith === 'icmp-net-unreachable' ? 'error EHOSTUNREACH' : 'refused';
  if (o.verdict !== 'ACCEPT') return `unexpected ${o.verdict}`;
  const [host, port] = o.destination.split(':');
  if (!BACKENDS.includes(host!) || !PORTS.includes(Number(port))) return 'timeout';
  void proto;
  return `ok ${o.destination} ${o.source.split(':')[0]}`;
}

/** Checks the kernel's results against the simulator's distribution; returns a description for failures. */
function compare(outcomes: Outcome[], proto: string, observed: string[]): string | null {
  const want = new Map<string, number>();
  for (const o of outcomes) {
    const k = expectedObservation(o, proto);
    want.set(k, (want.get(k) ?? 0) + o.probability);
  }
  const got = new Map<string, number>();
  for (const k of observed) got.set(k, (got.get(k) ?? 0) + 1);
  const n = observed.length;
  const problems: string[] = [];
  for (const [k, c] of got) if (!want.has(k)) problems.push(`kernel result "${k}" ×${c} is not a simulated outcome`);
  for (const [k, p] of want) {
    const c = got.get(k) ?? 0;
    const bound = 4 * Math.sqrt(n * p * (1 - p)) + 1;
    if (Math.abs(c - n * p) > bound) problems.push(`"${k}": ${c}/${n} observed, expected ${(n * p).toFixed(1)} ± ${bound.toFixed(1)} (p=${p})`);
  }
  if (problems.length === 0) return null;
  return `${problems.join('; ')}\n  simulated: ${[...want].map(([k, p]) => `${k} p=${p.toFixed(4)}`).join(', ')}\n  observed: ${[...got].map(([k, c]) => `${k} ×${c}`).join(', ')}`;
}

function simulate(dump: string, proto: 'tcp' | 'udp', dst: string, dport: number, extra: Partial<TraceRequest> = {}): Outcome[] {
  const rs = parseSave(dump, { source: 'generated' });
  const r = trace(rs, {
    proto,
    dst,
    dport,
    src: CLIENT,
    sport: 45000,
    from: 'ncl',
    localIps: [`${NODE_CL}@ncl`, `${NODE_BK}@nbk`, `${NODE_SK}@nsk`],
    routes: [`10.20.0.0/24=nbk`, `10.10.0.0/24=ncl`, `10.96.0.0/12=nsk`],
    ...extra,
  });
  const unsure = r.outcomes.filter((o) => o.uncertain);
  assert.equal(unsure.length, 0, `the generated ruleset must be fully modelled: ${JSON.stringify(unsure.map((o) => o.uncertainties))}`);
  return r.outcomes;
}

// ---------------------------------------------------------------------------
// Seeded random rulesets.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Generated {
  dump: string;
  vip: string;
  vport: number;
}

function generate(rand: () => number, idx: number): Generated {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const vip = `10.96.${idx}.${1 + Math.floor(rand() * 200)}`;
  const vport = pick([80, 443, 53, 9000]);
  const nChains = 2 + Math.floor(rand() * 5);
  const chains = Array.from({ length: nChains }, (_, i) => `G${idx}-${i}`);
  const dnat = () => `-p PROTO -j DNAT --to-destination ${pick(BACKENDS)}:${pick(PORTS)}`;
  const prob = () => pick(['0.10000000009', '0.25000000000', '0.33333333349', '0.50000000000', '0.66666666651', '0.75000000000', '0.90000000000']);
  const nat: string[] = [];
  const entry = rand() < 0.5 ? `-d ${vip}/32 -p PROTO -m PROTO --dport ${vport}` : `-d ${vip}/32 -p PROTO -m multiport --dports 1,${vport},65000`;
  nat.push(`-A PREROUTING ${entry} -j ${chains[0]}`);
  chains.forEach((c, i) => {
    const child = () => (i + 1 < nChains ? chains[i + 1 + Math.floor(rand() * (nChains - i - 1))]! : null);
    const nRules = 1 + Math.floor(rand() * 4);
    for (let r = 0; r < nRules; r++) {
      const kind = Math.floor(rand() * 9);
      const ch = child();
      switch (kind) {
        case 0:
          nat.push(`-A ${c} -m statistic --mode random --probability ${prob()} ${ch ? `-j ${ch}` : dnat()}`);
          break;
        case 1:
          nat.push(`-A ${c} -j MARK --set-xmark 0x1/0x1`);
          break;
        case 2:
          nat.push(`-A ${c} -m mark --mark 0x1/0x1 ${ch ? `-j ${ch}` : dnat()}`);
          break;
        case 3:
          nat.push(`-A ${c} ${pick(['-s 10.10.0.0/24', '! -s 10.10.0.0/24', '-m iprange --src-range 10.10.0.1-10.10.0.9', '-m iprange --src-range 10.10.0.3-10.10.0.9'])} ${ch ? `-j ${ch}` : dnat()}`);
          break;
        case 4:
          nat.push(`-A ${c} -m statistic --mode random --probability ${prob()} -j RETURN`);
          break;
        case 5:
          if (ch) nat.push(`-A ${c} -m statistic --mode random --probability ${prob()} -g ${ch}`);
          break;
        case 6:
          nat.push(`-A ${c} -p PROTO -m PROTO ${pick(['--sport 1:1023', '--sport 1024:65535', '! --dport 1:10'])} -j DNAT --to-destination ${pick(BACKENDS)}:${pick(PORTS)}`);
          break;
        case 7:
          nat.push(`-A ${c} -m mark ! --mark 0x2/0x2 -j MARK --set-xmark 0x2/0x2`);
          break;
        default:
          nat.push(`-A ${c} -m statistic --mode random --probability ${prob()} ${dnat()}`);
      }
    }
    if (rand() < 0.6) nat.push(`-A ${c} ${dnat()}`);
  });
  const post = rand() < 0.7 ? ['-A POSTROUTING -m mark --mark 0x1/0x1 -j MASQUERADE'] : ['-A POSTROUTING -o nbk -m mark --mark 0x2/0x2 -j MASQUERADE'];
  const filter: string[] = [];
  if (rand() < 0.5) filter.push(`-A FORWARD -d ${pick(BACKENDS)}/32 -p PROTO -m PROTO --dport ${pick(PORTS)} -j ${pick(['DROP', 'REJECT --reject-with icmp-port-unreachable', 'ACCEPT'])}`);
  if (rand() < 0.3) filter.push(`-A FORWARD -m conntrack --ctstate DNAT -m mark --mark 0x2/0x2 -j ${pick(['DROP', 'ACCEPT'])}`);
  const decl = (names: string[]) => names.map((n) => `:${n} - [0:0]`);
  const dump = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...decl(chains),
    ...nat,
    ...post,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ...filter,
    'COMMIT',
    '',
  ].join('\n');
  return { dump, vip, vport };
}

test('differential: random rulesets (seeded) — the kernel does what the simulator says, in the proportions it says', { timeout: 170_000 }, async (t) => {
  const seed = process.env.NETFILTER_DIFF_SEED ? Number(process.env.NETFILTER_DIFF_SEED) : Math.floor(Math.random() * 2 ** 31);
  t.diagnostic(`seed ${seed} (rerun with NETFILTER_DIFF_SEED=${seed})`);
  const rand = mulberry32(seed);
  const lab = await makeLab();
  let cases = 0;
  const started = Date.now();
  try {
    for (let i = 0; i < 14 && Date.now() - started < 90_000; i++) {
      const g = generate(rand, i);
      for (const proto of ['tcp', 'udp'] as const) {
        const dump = g.dump.replace(/PROTO/g, proto);
        const outcomes = simulate(dump, proto, g.vip, g.vport);
        await load(lab.node, dump);
        const n = 24;
        const observed = await runClient(lab.client, proto, g.vip, g.vport, n);
        cases += n;
        const bad = compare(outcomes, proto, observed);
        assert.equal(bad, null, `seed ${seed}, ruleset ${i} (${proto} → ${g.vip}:${g.vport}):\n${bad}\n--- dump ---\n${dump}`);
      }
    }
  } finally {
    await lab.topo.destroy();
  }
  t.diagnostic(`${cases} connections compared`);
  assert.ok(cases >= 300, `at least 300 connections (got ${cases})`);
});

test('differential: kube-proxy rules from our renderer — ClusterIP 1/3 each, NodePort masquerade, no endpoints REJECT, LB source ranges DROP, UDP, ClientIP affinity, conntrack entries', { timeout: 120_000 }, async (t) => {
  const port = (name: string, p: number, nodePort = 0, protocol: Protocol = 'TCP'): ServicePort => ({ ...tcpPort(name, p, nodePort), protocol });
  const st = state(
    [
      makeService('ns1', 'three', (s) => {
        s.clusterIPs = ['10.96.0.10'];
        s.ports = [port('http', 80)];
      }),
      makeService('ns1', 'np', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['10.96.0.11'];
        s.ports = [port('http', 80, 30080)];
      }),
      makeService('ns1', 'empty', (s) => {
        s.clusterIPs = ['10.96.0.12'];
        s.ports = [port('http', 80)];
      }),
      makeService('ns1', 'lb', (s) => {
        s.type = 'LoadBalancer';
        s.clusterIPs = ['10.96.0.13'];
        s.ports = [port('http', 80, 30081)];
        s.loadBalancerIngress = [{ ip: '10.97.0.1' }];
        s.loadBalancerSourceRanges = ['192.0.2.0/24'];
      }),
      makeService('ns1', 'sticky', (s) => {
        s.clusterIPs = ['10.96.0.20'];
        s.ports = [port('http', 80)];
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = 10800;
      }),
      makeService('ns1', 'dns', (s) => {
        s.clusterIPs = ['10.96.0.53'];
        s.ports = [port('dns', 53, 0, 'UDP')];
      }),
    ],
    [
      makeSlice('ns1', 'three', 1, [ep('10.20.0.2'), ep('10.20.0.3'), ep('10.20.0.4')], [{ name: 'http', port: 8080 }]),
      makeSlice('ns1', 'np', 1, [ep('10.20.0.5'), ep('10.20.0.2')], [{ name: 'http', port: 8081 }]),
      makeSlice('ns1', 'lb', 1, [ep('10.20.0.3')], [{ name: 'http', port: 8080 }]),
      makeSlice('ns1', 'sticky', 1, [ep('10.20.0.2'), ep('10.20.0.4'), ep('10.20.0.5')], [{ name: 'http', port: 8081 }]),
      makeSlice('ns1', 'dns', 1, [ep('10.20.0.3'), ep('10.20.0.4')], [{ name: 'dns', port: 8080, protocol: 'UDP' }]),
    ],
  );
  const [rendered] = renderIptables(st, { nodeName: 'node1', nodeIPs: [NODE_CL], clusterCIDRs: ['10.244.0.0/16'], families: ['IPv4'], localAddresses: ['127.0.0.1', NODE_CL, NODE_BK] });
  const dump = nodeDump(rendered!);
  const lab = await makeLab();
  let cases = 0;
  try {
    await load(lab.node, dump);
    const flows: { proto: 'tcp' | 'udp'; dst: string; port: number; n: number; expect: string[] }[] = [
      { proto: 'tcp', dst: '10.96.0.10', port: 80, n: 90, expect: ['10.20.0.2:8080', '10.20.0.3:8080', '10.20.0.4:8080'] },
      { proto: 'tcp', dst: NODE_CL, port: 30080, n: 60, expect: ['10.20.0.2:8081', '10.20.0.5:8081'] },
      { proto: 'tcp', dst: '10.96.0.12', port: 80, n: 16, expect: ['REJECT'] },
      { proto: 'tcp', dst: '10.97.0.1', port: 80, n: 16, expect: ['DROP'] },
      { proto: 'udp', dst: '10.96.0.53', port: 53, n: 60, expect: ['10.20.0.3:8080', '10.20.0.4:8080'] },
    ];
    for (const f of flows) {
      const outcomes = simulate(dump, f.proto, f.dst, f.port);
      assert.deepEqual(
        outcomes.map((o) => (o.verdict === 'ACCEPT' ? o.destination : o.verdict)).sort(),
        f.expect,
        `${f.dst}:${f.port}: the simulator's outcomes`,
      );
      await lab.node.exec('conntrack', ['-F'], { allowFail: true });
      const observed = await runClient(lab.client, f.proto, f.dst, f.port, f.n);
      cases += f.n;
      const bad = compare(outcomes, f.proto, observed);
      assert.equal(bad, null, `${f.proto} → ${f.dst}:${f.port}:\n${bad}`);
      if (f.proto === 'tcp' && outcomes[0]!.verdict === 'ACCEPT') {
        // The kernel's conntrack entries: each reply tuple is one the simulator predicted.
        const ct = await lab.node.exec('conntrack', ['-L', '-p', 'tcp', '-d', f.dst], { allowFail: true });
        const want = new Set(outcomes.map((o) => o.conntrack!.replace(/ sport=\d+ dport=\d+/g, '')));
        const seen = ct.stdout
          .split('\n')
          .map((l) => /src=(\S+) dst=(\S+) sport=\d+ dport=\d+ .*?src=(\S+) dst=(\S+) sport=\d+ dport=\d+/.exec(l))
          .filter((m): m is RegExpExecArray => !!m && m[2] === f.dst)
          .map((m) => `tcp src=${m[1]} dst=${m[2]} src=${m[3]} dst=${m[4]}`);
        assert.ok(seen.length >= f.n / 2, `conntrack shows the connections (${seen.length})`);
        for (const s of seen) assert.ok(want.has(s), `conntrack entry "${s}" is one of ${[...want].join(' | ')}`);
      }
    }
    // ClientIP affinity (-m recent): the first connection picks any endpoint; the simulator, seeded
    // with that choice (--recent), must then predict every later connection exactly.
    await lab.node.exec('conntrack', ['-F'], { allowFail: true });
    const first = simulate(dump, 'tcp', '10.96.0.20', 80);
    const [picked] = await runClient(lab.client, 'tcp', '10.96.0.20', 80, 1);
    cases += 1;
    const chosen = first.find((o) => picked === `ok ${o.destination} ${o.source.split(':')[0]}`);
    assert.ok(chosen, `first sticky connection "${picked}" is one of ${first.map((o) => o.destination).join(', ')}`);
    const sep = chosen.path.find((s) => s.kind === 'rule' && s.chain?.startsWith('KUBE-SEP-'))!.chain!;
    const seeded = simulate(dump, 'tcp', '10.96.0.20', 80, { recent: [[sep, CLIENT]] });
    assert.deepEqual(seeded.map((o) => o.destination), [chosen.destination], 'seeded with the client, the affinity rule decides alone');
    assert.ok(seeded[0]!.path.some((s) => s.rule.includes('--rcheck')), 'through the recent --rcheck rule');
    const later = await runClient(lab.client, 'tcp', '10.96.0.20', 80, 20);
    cases += 20;
    assert.equal(compare(seeded, 'tcp', later), null);
  } finally {
    await lab.topo.destroy();
  }
  t.diagnostic(`${cases} connections compared`);
});
