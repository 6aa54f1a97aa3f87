// Userspace mode end to end in network namespaces: the proxy runs in a "node"
// namespace with its iptables portals; pods on a bridge, an outside client on
// another link. Covers ClusterIP from a pod and from the node, NodePort from
// outside, TCP and UDP, rr/lc/sh, session affinity, retry past a dead endpoint,
// draining, services coming and going under traffic, RST when all are down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { Topology, waitFor, type Netns } from '../../src/lab/netns.js';
import type { UsServicePort } from '../../src/dataplane/userspace/model.js';
import type { UserspaceOptions } from '../../src/dataplane/userspace/proxier.js';

const here = (f: string): string => new URL(f, import.meta.url).pathname;
const NODE_IP = '192.168.50.1';
const BE = ['10.0.1.21', '10.0.1.22', '10.0.1.23'];

class Driver {
  private lines: Interface;
  private waiting: ((l: string) => void)[] = [];
  private buffered: string[] = [];
  constructor(readonly child: ChildProcess) {
    this.lines = createInterface({ input: child.stdout! });
    this.lines.on('line', (l) => {
      const w = this.waiting.shift();
      if (w) w(l);
      else this.buffered.push(l);
    });
    child.stderr!.on('data', () => {});
  }
  next(timeoutMs = 15_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('driver did not answer')), timeoutMs);
      const take = (l: string): void => {
        clearTimeout(t);
        resolve(JSON.parse(l) as Record<string, unknown>);
      };
      const b = this.buffered.shift();
      if (b !== undefined) take(b);
      else this.waiting.push(take);
    });
  }
  async call(msg: object): Promise<Record<string, unknown>> {
    this.child.stdin!.write(JSON.stringify(msg) + '\n');
    const r = await this.next();
    if (!r.ok) throw new Error(`driver: ${String(r.error)}`);
    return r;
  }
  sync(ports: UsServicePort[]): Promise<Record<string, unknown>> {
    return this.call({ cmd: 'sync', ports });
  }
  async stop(): Promise<void> {
    await this.call({ cmd: 'stop' }).catch(() => {});
    this.child.kill('SIGKILL');
  }
}

function sp(key: string, clusterIP: string, port: number, eps: string[], extra: Partial<UsServicePort> = {}): UsServicePort {
  return {
    key,
    protocol: 'TCP',
    clusterIP,
    port,
    nodePort: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    sessionAffinity: 'None',
    stickyMaxAgeSeconds: 10800,
    endpoints: eps.map((e) => {
      const [ip, p] = e.split(':');
      return { ip: ip!, port: Number(p ?? 8080), weight: 1 };
    }),
    ...extra,
  };
}

async function client(ns: Netns, ...args: string[]): Promise<string[]> {
  const r = await ns.exec(process.execPath, [here('./userspace-client.js'), ...args], { timeoutMs: 60_000, allowFail: true });
  return r.stdout.split('\n').filter(Boolean);
}

function count(lines: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const l of lines) c[l] = (c[l] ?? 0) + 1;
  return c;
}

test('userspace mode in namespaces', async (t) => {
  const topo = new Topology();
  let driver: Driver | undefined;
  const start = async (opts: UserspaceOptions): Promise<Driver> => {
    if (driver) await driver.stop();
    const child = topo.track(node.spawnNode(here('./userspace-driver.js'), [JSON.stringify({ hostIP: NODE_IP, iptables: true, ...opts })], { stdio: ['pipe', 'pipe', 'pipe'] }));
    driver = new Driver(child);
    const hello = await driver.next();
    assert.equal(hello.ready, true, JSON.stringify(hello));
    return driver;
  };
  let node!: Netns;
  try {
    node = await topo.netns('node');
    const ext = await topo.netns('ext');
    await topo.bridge(node, 'br0', '10.0.1.1/24');
    const pods: Netns[] = [];
    const addPod = async (name: string, ip: string): Promise<Netns> => {
      const ns = await topo.netns(name);
      await topo.veth(node, `h-${name}`, ns, 'eth0', undefined, `${ip}/24`);
      await node.ip('link', 'set', `h-${name}`, 'master', 'br0');
      await ns.ip('route', 'add', 'default', 'via', '10.0.1.1');
      return ns;
    };
    const pod1 = await addPod('pod1', '10.0.1.10');
    const pod2 = await addPod('pod2', '10.0.1.11');
    const bes: Netns[] = [];
    for (let i = 0; i < 3; i++) bes.push(await addPod(`be${i + 1}`, BE[i]!));
    await topo.veth(node, 'eth-ext', ext, 'eth0', `${NODE_IP}/24`, '192.168.50.2/24');
    // A node has a default route; without one, connecting to a VIP fails before OUTPUT's DNAT runs.
    await node.ip('route', 'add', 'default', 'via', '192.168.50.2');
    for (let i = 0; i < 3; i++) topo.track(bes[i]!.spawnNode(here('./userspace-backend.js'), [`be${i + 1}`, '0.0.0.0', '8080']));
    await waitFor('backends', async () => (await client(node, 'greet', BE[2]!, '8080', '1'))[0] === 'be3', 10_000, 100);
    await waitFor('backends', async () => (await client(node, 'greet', BE[0]!, '8080', '1'))[0] === 'be1', 10_000, 100);

    const web = sp('default/web:http', '10.96.0.10', 80, BE, { nodePort: 30080 });
    const dns = sp('kube-system/dns:dns', '10.96.0.53', 53, BE, { protocol: 'UDP' });

    await t.test('rr: ClusterIP from a pod spreads evenly; from the node; NodePort from outside; UDP', async () => {
      const d = await start({ scheduler: 'rr' });
      await d.sync([web, dns]);
      const fromPod = await client(pod1, 'greet', '10.96.0.10', '80', '30');
      assert.deepEqual(count(fromPod), { be1: 10, be2: 10, be3: 10 }, fromPod.join(','));
      const fromNode = await client(node, 'greet', '10.96.0.10', '80', '3');
      assert.deepEqual(fromNode.sort(), ['be1', 'be2', 'be3']);
      const nodePort = await client(ext, 'greet', NODE_IP, '30080', '3');
      assert.deepEqual(nodePort.sort(), ['be1', 'be2', 'be3']);
      const udp = await client(pod1, 'udp', '10.96.0.53', '53', '3');
      assert.deepEqual(udp.map((l) => l.split(':')[0]).sort(), ['be1', 'be2', 'be3'], udp.join(','));
      assert.ok(udp.every((l) => /^be\d:ping\d$/.test(l)), udp.join(','));
      const saved = await node.exec('iptables-save', ['-t', 'nat']);
      assert.match(saved.stdout, /-A KUBE-PORTALS-CONTAINER -d 10\.96\.0\.10\/32 -p tcp -m comment --comment "?default\/web:http"? -m tcp --dport 80 -j REDIRECT --to-ports \d+/);
      assert.match(saved.stdout, /-A PREROUTING .*-j KUBE-PORTALS-CONTAINER/);
    });

    await t.test('a dead endpoint is skipped by retry; all endpoints down gives RST', async () => {
      const d = driver!;
      await d.sync([sp('default/web:http', '10.96.0.10', 80, [`${BE[0]}:9999`, BE[1]!, BE[2]!])]);
      const lines = await client(pod1, 'greet', '10.96.0.10', '80', '12');
      assert.equal(lines.length, 12);
      assert.ok(lines.every((l) => l === 'be2' || l === 'be3'), lines.join(','));
      await d.sync([sp('default/web:http', '10.96.0.10', 80, [`${BE[0]}:9999`, `${BE[1]}:9999`])]);
      const t0 = Date.now();
      const down = await client(pod1, 'greet', '10.96.0.10', '80', '2');
      assert.deepEqual(down, ['error ECONNRESET', 'error ECONNRESET']);
      assert.ok(Date.now() - t0 < 5000);
    });

    await t.test('an endpoint removed during a long transfer: the transfer completes', async () => {
      const d = driver!;
      await d.sync([sp('default/web:http', '10.96.0.10', 80, [BE[0]!])]);
      const bytes = 6 * 1024 * 1024;
      const transfer = client(pod1, 'slowbulk', '10.96.0.10', '80', String(bytes));
      await waitFor('the transfer to start', async () => {
        const r = await d.call({ cmd: 'lb', key: 'default/web:http' });
        return (r.endpoints as { key: string; activeConns: number }[]).some((e) => e.key === `${BE[0]}:8080` && e.activeConns === 1);
      });
      await d.sync([sp('default/web:http', '10.96.0.10', 80, [BE[1]!])]);
      assert.deepEqual(await client(pod2, 'greet', '10.96.0.10', '80', '1'), ['be2']);
      assert.deepEqual(await transfer, [`received ${bytes} from be1`]);
    });

    await t.test('services added and removed while traffic flows', async () => {
      const d = driver!;
      await d.sync([web]);
      const traffic = client(pod1, 'greet', '10.96.0.10', '80', '200');
      for (let i = 0; i < 6; i++) {
        await d.sync([web, sp(`default/extra${i}`, `10.96.1.${i + 1}`, 80, [BE[i % 3]!])]);
        assert.deepEqual(await client(pod2, 'greet', `10.96.1.${i + 1}`, '80', '1'), [`be${(i % 3) + 1}`]);
        await d.sync([web]);
      }
      const lines = await traffic;
      assert.equal(lines.length, 200);
      assert.deepEqual(lines.filter((l) => l.startsWith('error')), []);
      // The removed ones no longer answer (no portal: the VIP is nobody's).
      const gone = await client(pod2, 'greet', '10.96.1.1', '80', '1');
      assert.match(gone[0]!, /^error/);
    });

    await t.test('session affinity ClientIP pins each client', async () => {
      const d = driver!;
      await d.sync([{ ...web, sessionAffinity: 'ClientIP', stickyMaxAgeSeconds: 30 }]);
      const a = await client(pod1, 'greet', '10.96.0.10', '80', '8');
      assert.equal(new Set(a).size, 1, a.join(','));
      const b = await client(pod2, 'greet', '10.96.0.10', '80', '8');
      assert.equal(new Set(b).size, 1, b.join(','));
    });

    await t.test('lc sends new connections away from a server holding long ones', async () => {
      const d = await start({ scheduler: 'lc' });
      await d.sync([sp('default/web:http', '10.96.0.10', 80, [BE[0]!])]);
      // Two long connections to be1, then be2 and be3 join.
      const holders = [0, 1].map(() => topo.track(pod1.spawnNode(here('./userspace-client.js'), ['hold', '10.96.0.10', '80', '20000'])));
      await waitFor('long connections', async () => {
        const r = await d.call({ cmd: 'lb', key: 'default/web:http' });
        return (r.endpoints as { activeConns: number }[]).reduce((n, e) => n + e.activeConns, 0) === 2;
      });
      await d.sync([web]);
      const lines = await client(pod2, 'greet', '10.96.0.10', '80', '10');
      assert.equal(lines.length, 10);
      assert.ok(!lines.includes('be1'), lines.join(','));
      const r = await d.call({ cmd: 'lb', key: 'default/web:http' });
      assert.deepEqual((r.endpoints as { key: string; activeConns: number }[]).find((e) => e.key === `${BE[0]}:8080`)?.activeConns, 2);
      for (const h of holders) h.kill('SIGKILL');
    });

    await t.test('sh keeps each client on its server (kernel hash of the source address)', async () => {
      const d = await start({ scheduler: 'sh' });
      await d.sync([web]);
      // hash_32(ntohl(src), 8): 10.0.1.10 → bucket 96 → 96 % 3 = 0 → be1; 10.0.1.11 → 194 → 2 → be3
      assert.deepEqual(count(await client(pod1, 'greet', '10.96.0.10', '80', '10')), { be1: 10 });
      assert.deepEqual(count(await client(pod2, 'greet', '10.96.0.10', '80', '10')), { be3: 10 });
    });

    await t.test('an endpoint that never answers: each dial gives up after 250 ms and goes elsewhere (both data paths)', async () => {
      for (const dataPath of ['handles', 'net'] as const) {
        const d = await start({ scheduler: 'rr', dataPath });
        // 10.0.1.99 is on the pod bridge but nobody has it: the SYN waits on ARP, which
        // gives up only after about 3 s, so a fast answer means the dial timeout fired.
        await d.sync([sp('default/web:http', '10.96.0.10', 80, ['10.0.1.99', BE[1]!])]);
        const t0 = Date.now();
        const lines = await client(pod1, 'greet', '10.96.0.10', '80', '4');
        const took = Date.now() - t0;
        assert.deepEqual(lines, ['be2', 'be2', 'be2', 'be2'], `${dataPath}: ${lines.join(',')}`);
        // rr offers the dead endpoint to 2 of the 4 connections: 2 × 250 ms, far less than one ARP timeout each.
        assert.ok(took >= 450 && took < 2500, `${dataPath}: took ${took} ms`);
        const r = await d.call({ cmd: 'lb', key: 'default/web:http' });
        for (const e of r.endpoints as { key: string; activeConns: number; inactiveConns: number }[]) assert.equal(e.activeConns + e.inactiveConns, 0, `${dataPath}: ${e.key}`);
      }
    });

    await t.test('an unknown scheduler is refused at start', async () => {
      if (driver) await driver.stop();
      driver = undefined;
      const child = topo.track(node.spawnNode(here('./userspace-driver.js'), [JSON.stringify({ hostIP: NODE_IP, scheduler: 'random' })], { stdio: ['pipe', 'pipe', 'pipe'] }));
      const d = new Driver(child);
      const r = await d.next();
      assert.equal(r.ok, false);
      assert.match(String(r.error), /unknown scheduler "random"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);
    });
  } finally {
    if (driver) await driver.stop();
    await topo.destroy();
  }
});
