// `kproxy run --manifests` end to end, in network namespaces: a node with a
// bridge (cbr0 10.244.1.1/24, br_netfilter on, hairpin on the pod ports),
// three pods answering TCP and UDP with their name, and an external client
// on the node's network. One topology and one manifests folder serve every
// subtest, in order; kproxy is restarted, killed and cleaned up along the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Topology, runPrefix, waitFor as waitForUnscaled, type Netns } from '../../src/lab/netns.js';
import { kproxyMain } from '../../src/lab/cluster.js';
import { probe, udpFromPort } from './lab-clients.js';
import { BACKEND_FLAGS, buildNode, CLIENT_IP, IPT, IPT_SAVE, NODE_IP, TIME_SCALE, writeManifests } from './run-e2e-fixture.js';

// --- clients -----------------------------------------------------------------

const get = probe;
const udpFixed = udpFromPort;
/**
 * waitFor with its bound stretched by KPROXY_E2E_TIME_SCALE (1 on the host).
 * Only the bound: a passing run on a slow kernel takes no longer for it.
 */
const waitFor = (what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs: number): Promise<void> =>
  waitForUnscaled(what, probe, timeoutMs * TIME_SCALE, intervalMs);

// --- the test ----------------------------------------------------------------

test('kproxy run --manifests programs a real node', { timeout: 240_000 * TIME_SCALE }, async (t) => {
  const topo = new Topology(runPrefix('kr'));
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-run-'));
  let logs = '';
  let agent: ChildProcess | undefined;
  const startAgent = async (extra: string[] = []): Promise<ChildProcess> => {
    const c = topo.track(
      node.spawn(process.execPath, [
        kproxyMain,
        'run',
        '--manifests',
        dir,
        '--hostname-override',
        'node-a',
        '--cluster-cidr',
        '10.244.0.0/16',
        '--iptables-min-sync-period',
        '100ms',
        '--iptables-sync-period',
        '1s',
        '--healthz-bind-address',
        '127.0.0.1:10256',
        '--metrics-bind-address',
        '127.0.0.1:10249',
        '--v=1',
        ...BACKEND_FLAGS,
        ...extra,
      ]),
    );
    c.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    c.stdout!.resume();
    return c;
  };
  const nat = async (): Promise<string> => (await node.exec(IPT_SAVE, ['-t', 'nat'])).stdout;
  let node!: Netns;
  let client!: Netns;
  let pods!: Record<string, Netns>;
  // A failing subtest says what kproxy logged (since the last reset of `logs`).
  const sub = (name: string, fn: () => Promise<void>) =>
    t.test(name, async () => {
      try {
        await fn();
      } catch (e) {
        if (e instanceof Error) e.message += `\nkproxy said (last 4000 characters):\n${logs.slice(-4000)}`;
        throw e;
      }
    });
  try {
    ({ node, client, pods } = await buildNode(topo));
    writeManifests(dir, ['pod-1', 'pod-2'], ['pod-1']);
    agent = await startAgent();
    await waitFor('the first sync', async () => (await nat()).includes('KUBE-SVC-'), 30_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
    });

    await sub('ClusterIP from a pod and from the node', async () => {
      const fromPod = await get(pods['pod-3']!, 'http://10.96.0.10/', 6);
      assert.ok(fromPod.every((a) => a.ok && ['pod-1', 'pod-2'].includes(a.pod!)), JSON.stringify(fromPod));
      const fromNode = await get(node, 'http://10.96.0.10/', 2);
      assert.ok(fromNode.every((a) => a.ok && ['pod-1', 'pod-2'].includes(a.pod!)), JSON.stringify(fromNode));
    });

    await sub('NodePort from outside is masqueraded; eTP=Local keeps the client address and uses local endpoints', async () => {
      const np = await get(client, `http://${NODE_IP}:30080/`, 3);
      assert.ok(np.every((a) => a.ok && a.client !== CLIENT_IP), JSON.stringify(np));
      const local = await get(client, `http://${NODE_IP}:30081/`, 4);
      assert.ok(local.every((a) => a.ok && a.pod === 'pod-1' && a.client === CLIENT_IP), JSON.stringify(local));
    });

    await sub('external IP and LoadBalancer IP with source ranges', async () => {
      const ext = await get(client, 'http://192.168.77.100/', 2);
      assert.ok(ext.every((a) => a.ok && a.pod === 'pod-2'), JSON.stringify(ext));
      const allow = await get(client, 'http://192.168.77.200/', 2);
      assert.ok(allow.every((a) => a.ok && a.pod === 'pod-3'), JSON.stringify(allow));
      const deny = await get(client, 'http://192.168.77.201/', 1, 1000);
      assert.equal(deny[0]!.ok, false);
      assert.match(deny[0]!.error!, /timeout/, 'dropped, not rejected');
    });

    await sub('hairpin, session affinity, and a service without endpoints rejects', async () => {
      const hair = await get(pods['pod-1']!, 'http://10.96.0.16/', 2);
      assert.ok(hair.every((a) => a.ok && a.pod === 'pod-1'), JSON.stringify(hair));
      const aff = await get(pods['pod-3']!, 'http://10.96.0.14/', 8);
      assert.ok(aff.every((a) => a.ok), JSON.stringify(aff));
      assert.equal(new Set(aff.map((a) => a.pod)).size, 1, `sticky: ${aff.map((a) => a.pod)}`);
      const empty = await get(pods['pod-3']!, 'http://10.96.0.15/', 1, 3000);
      assert.equal(empty[0]!.ok, false);
      assert.match(empty[0]!.error!, /ECONNREFUSED/);
      assert.ok(empty[0]!.ms < 1000, `refused fast (${empty[0]!.ms} ms)`);
    });

    await sub('scaling endpoints in the folder moves traffic within a second or so; stale UDP conntrack is cleared', async () => {
      // UDP first: a fixed 5-tuple keeps one conntrack entry.
      assert.equal(await udpFixed(pods['pod-3']!, '10.96.0.17', 53, 40053), 'pod-1');
      const t0 = Date.now();
      writeManifests(dir, ['pod-3'], ['pod-2']);
      await waitFor(
        'traffic to move to pod-3',
        async () => {
          const a = await get(pods['pod-2']!, 'http://10.96.0.10/', 3, 1000);
          return a.every((x) => x.pod === 'pod-3');
        },
        10_000,
        50,
      );
      const moved = Date.now() - t0;
      // The probe itself takes a few hundred ms per round here; the sync is much faster (see the logs).
      assert.ok(moved < 5000 * TIME_SCALE, `moved after ${moved} ms`);
      await waitFor('the dns service to point at pod-2', async () => (await nat()).includes('10.244.1.12:5353'), 5000, 50);
      // Same source port: without the conntrack cleanup this would keep reaching pod-1
      // (each datagram refreshes the entry). The cleanup runs just after the restore, so wait a little.
      await waitFor('UDP from the same port to reach pod-2', async () => (await udpFixed(pods['pod-3']!, '10.96.0.17', 53, 40053)) === 'pod-2', 5000, 100);
    });

    await sub('a flushed nat table is re-programmed (canary)', async () => {
      await node.exec(IPT, ['-t', 'nat', '-F']);
      await node.exec(IPT, ['-t', 'nat', '-X']);
      assert.doesNotMatch(await nat(), /KUBE-SERVICES/);
      await waitFor('nat rules back', async () => (await nat()).includes('KUBE-SVC-'), 10_000, 100);
      const a = await get(pods['pod-1']!, 'http://10.96.0.10/', 2);
      assert.ok(a.every((x) => x.ok && x.pod === 'pod-3'), JSON.stringify(a));
      const prerouting = (await nat()).split('\n').filter((l) => l.startsWith('-A PREROUTING') && l.includes('KUBE-SERVICES'));
      assert.equal(prerouting.length, 1, 'jump rule restored once');
    });

    await sub('a failing restore leaves the working rules working, is logged with its lines, and is retried', async () => {
      // A foreign rule that holds on to pod-3's endpoint chain: deleting that chain must fail.
      const sep = /^:(KUBE-SEP-\S+)/m;
      const save = await nat();
      const chain = save
        .split('\n')
        .filter((l) => l.includes('10.244.1.13:8080') && l.includes('default/web'))
        .map((l) => / (KUBE-SEP-\S+) /.exec(l)?.[1])
        .find(Boolean);
      assert.ok(chain && sep.test(save), 'found the web endpoint chain');
      await node.exec(IPT, ['-t', 'nat', '-A', 'OUTPUT', '-d', '10.99.99.99/32', '-j', chain!]);
      logs = '';
      writeManifests(dir, ['pod-1'], ['pod-2']);
      await waitFor('the failure in the log', () => logs.includes('iptables-restore failed'), 10_000, 50);
      assert.match(logs, /"lines":\["\d+: /, 'the offending payload lines are logged');
      // The previous rules still serve: web still goes to pod-3.
      const a = await get(pods['pod-2']!, 'http://10.96.0.10/', 3);
      assert.ok(a.every((x) => x.ok && x.pod === 'pod-3'), JSON.stringify(a));
      // Remove the obstacle: the retry (a full sync within the sync period) succeeds.
      await node.exec(IPT, ['-t', 'nat', '-D', 'OUTPUT', '-d', '10.99.99.99/32', '-j', chain!]);
      await waitFor(
        'the retry to apply the change',
        async () => (await get(pods['pod-2']!, 'http://10.96.0.10/', 2, 1000)).every((x) => x.pod === 'pod-1'),
        15_000,
        100,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; kproxy said:\n${logs.slice(-4000)}`);
      });
    });

    await sub('SIGTERM leaves the rules; a restarted agent adopts them; SIGKILL leaves traffic flowing', async () => {
      agent!.kill('SIGTERM');
      await waitFor('the agent to stop', () => agent!.exitCode !== null || agent!.signalCode !== null, 10_000, 50);
      assert.equal(agent!.exitCode, 0, logs.slice(-2000));
      assert.match(await nat(), /KUBE-SVC-/);
      assert.ok((await get(pods['pod-2']!, 'http://10.96.0.10/', 1))[0]!.ok);
      logs = '';
      agent = await startAgent();
      await waitFor('a sync by the new agent', () => logs.includes('synced all rules'), 20_000, 50);
      // Rules from the previous run match: nothing to restore.
      assert.match(logs, /"restores":0/, logs.slice(0, 2000));
      agent.kill('SIGKILL');
      await waitFor('the agent to die', () => agent!.signalCode !== null || agent!.exitCode !== null, 5000, 20);
      const a = await get(client, `http://${NODE_IP}:30080/`, 2);
      assert.ok(a.every((x) => x.ok && x.pod === 'pod-1'), JSON.stringify(a));
    });

    await sub('--cleanup removes kube-proxy’s chains and jumps and nothing else', async () => {
      await node.exec(IPT, ['-t', 'nat', '-N', 'MY-CHAIN']);
      await node.exec(IPT, ['-t', 'nat', '-A', 'PREROUTING', '-s', '10.1.2.3/32', '-j', 'MY-CHAIN']);
      await node.exec(IPT, ['-A', 'INPUT', '-s', '10.1.2.4/32', '-j', 'ACCEPT']);
      const r = await node.exec(process.execPath, [kproxyMain, 'run', '--cleanup', ...BACKEND_FLAGS], { timeoutMs: 60_000 * TIME_SCALE });
      assert.equal(r.code, 0);
      const all = (await node.exec(IPT_SAVE)).stdout;
      // KUBE-FIREWALL stays, as upstream leaves it (kubelet owns it too).
      const left = all.split('\n').filter((l) => /KUBE-/.test(l) && !/KUBE-FIREWALL/.test(l));
      assert.deepEqual(left, []);
      assert.match(all, /-A PREROUTING -s 10\.1\.2\.3\/32 -j MY-CHAIN/);
      assert.match(all, /-A INPUT -s 10\.1\.2\.4\/32 -j ACCEPT/);
    });
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
