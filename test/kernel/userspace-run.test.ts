// `kproxy run --proxy-mode userspace --manifests examples/hello-world` end to
// end, once per scheduler: the seeds' hello-world Service (10.96.103.220:4000,
// NodePort 30001) served by kproxy itself on node k8s-n-1, from a pod, from
// outside through the NodePort, and `--cleanup` removing the portal chains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Topology, waitFor, type Netns } from '../../src/lab/netns.js';
import { schedulerNames } from '../../src/dataplane/schedulers/index.js';

const here = (f: string): string => new URL(f, import.meta.url).pathname;
const CLI = here('../../src/cli/main.js');
const MANIFESTS = here('../../../examples/hello-world');
const PODS = ['10.244.1.5', '10.244.1.6', '10.244.2.3'];

async function client(ns: Netns, ...args: string[]): Promise<string[]> {
  const r = await ns.exec(process.execPath, [here('./userspace-client.js'), ...args], { timeoutMs: 60_000, allowFail: true });
  return r.stdout.split('\n').filter(Boolean);
}

test('kproxy run --proxy-mode userspace serves hello-world with every scheduler', async () => {
  const topo = new Topology();
  let agent: ChildProcess | undefined;
  const stopAgent = async (): Promise<void> => {
    if (!agent) return;
    const a = agent;
    agent = undefined;
    const exited = new Promise<void>((r) => a.once('exit', () => r()));
    a.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (a.exitCode === null) a.kill('SIGKILL');
  };
  try {
    const node = await topo.netns('node');
    const ext = await topo.netns('ext');
    const cl = await topo.netns('client');
    await topo.bridge(node, 'cni0', '10.244.1.1/24');
    const pods: Netns[] = [];
    const attach = async (ns: Netns, hostIf: string, ip: string, gw: string, bridge?: string, nodeAddr?: string): Promise<void> => {
      await topo.veth(node, hostIf, ns, 'eth0', nodeAddr, `${ip}/24`);
      if (bridge) await node.ip('link', 'set', hostIf, 'master', bridge);
      await ns.ip('route', 'add', 'default', 'via', gw);
    };
    for (const [i, ip] of PODS.entries()) {
      const ns = await topo.netns(`p${i}`);
      if (ip.startsWith('10.244.1.')) await attach(ns, `hp${i}`, ip, '10.244.1.1', 'cni0');
      else await attach(ns, `hp${i}`, ip, '10.244.2.1', undefined, '10.244.2.1/24');
      pods.push(ns);
      topo.track(ns.spawnNode(here('./userspace-backend.js'), [`pod${i}`, '0.0.0.0', '8080']));
    }
    await attach(cl, 'hcl', '10.244.1.100', '10.244.1.1', 'cni0');
    await topo.veth(node, 'eth0', ext, 'eth0', '192.168.56.11/24', '192.168.56.1/24');
    await node.ip('route', 'add', 'default', 'via', '192.168.56.1');
    for (const ip of PODS) await waitFor(`backend ${ip}`, async () => /^pod\d$/.test((await client(node, 'greet', ip, '8080', '1'))[0] ?? ''), 10_000, 100);

    const seen: Record<string, string[]> = {};
    for (const sched of schedulerNames) {
      agent = topo.track(
        node.spawn(process.execPath, [CLI, 'run', '--manifests', MANIFESTS, '--hostname-override', 'k8s-n-1', '--node-ip', '192.168.56.11', '--proxy-mode', 'userspace', '--ipvs-scheduler', sched, '--v', '2'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      let stderr = '';
      agent.stderr!.on('data', (d) => (stderr += d.toString()));
      agent.stdout!.on('data', (d) => (stderr += d.toString()));
      const a = agent;
      await waitFor(`kproxy (${sched}) serving 10.96.103.220:4000`, async () => /^pod\d$/.test((await client(cl, 'greet', '10.96.103.220', '4000', '1'))[0] ?? ''), 20_000, 200).catch(async (e) => {
        throw new Error(`${(e as Error).message}\nkproxy exit ${a.exitCode}, output:\n${stderr}\nclient: ${JSON.stringify(await client(cl, 'greet', '10.96.103.220', '4000', '1'))}\n${(await node.exec('iptables-save', ['-t', 'nat'])).stdout}`);
      });
      const lines = await client(cl, 'greet', '10.96.103.220', '4000', '6');
      assert.equal(lines.length, 6);
      assert.ok(lines.every((l) => /^pod[012]$/.test(l)), `${sched}: ${lines.join(',')}`);
      seen[sched] = lines;
      if (sched === 'rr') {
        assert.deepEqual([...new Set(lines)].sort(), ['pod0', 'pod1', 'pod2'], lines.join(','));
        const np = await client(ext, 'greet', '192.168.56.11', '30001', '3');
        assert.ok(np.length === 3 && np.every((l) => /^pod[012]$/.test(l)), np.join(','));
        const saved = (await node.exec('iptables-save', ['-t', 'nat'])).stdout;
        assert.match(saved, /-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "?default\/hello-world-service"? -m tcp --dport 30001 -j REDIRECT --to-ports \d+/);
      }
      if (sched === 'sh' || sched === 'mh' || sched === 'dh') assert.equal(new Set(lines).size, 1, `${sched}: ${lines.join(',')}`);
      await stopAgent();
    }

    const bad = await node.exec(process.execPath, [CLI, 'run', '--manifests', MANIFESTS, '--hostname-override', 'k8s-n-1', '--node-ip', '192.168.56.11', '--proxy-mode', 'userspace', '--ipvs-scheduler', 'fifo'], { allowFail: true, timeoutMs: 30_000 });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unknown scheduler "fifo"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);

    const cleanup = await node.exec(process.execPath, [CLI, 'run', '--cleanup', '--proxy-mode', 'userspace'], { allowFail: true, timeoutMs: 30_000 });
    assert.equal(cleanup.code, 0, cleanup.stderr);
    const after = (await node.exec('iptables-save')).stdout;
    assert.doesNotMatch(after, /KUBE-PORTALS|KUBE-NODEPORT-(CONTAINER|HOST|NON-LOCAL)/);
  } finally {
    await stopAgent();
    await topo.destroy();
  }
});
