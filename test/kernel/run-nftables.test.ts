// `kproxy run --proxy-mode nftables --manifests` end to end, on the same node,
// pods and services as iptables mode's run-e2e.test.ts, with real traffic.
// One topology and one manifests folder serve every subtest, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Topology, runPrefix, waitFor, type Netns } from '../../src/lab/netns.js';
import { kproxyMain } from '../../src/lab/cluster.js';
import { probe as get, udpFromPort } from './lab-clients.js';
import { buildNode, CLIENT_IP, NODE_IP, PODS, service, slice, writeManifests } from './run-e2e-fixture.js';

const tcp80 = [{ port: 80, targetPort: 8080, protocol: 'TCP' }];

/** A ClientIP service with a short timeout, to watch affinity expire. */
function shortAffinity(): object[] {
  return [
    service('aff-short', {
      clusterIP: '10.96.0.19',
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } },
      ports: tcp80,
    }),
    slice('aff-short', PODS.map((p) => ({ ip: p.ip }))),
  ];
}

test('kproxy run --proxy-mode nftables programs a real node', { timeout: 240_000 }, async (t) => {
  const topo = new Topology(runPrefix('kn'));
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-nft-'));
  let logs = '';
  let agent: ChildProcess | undefined;
  let node!: Netns;
  let client!: Netns;
  let pods!: Record<string, Netns>;
  const startAgent = (...extra: string[]): ChildProcess => {
    const c = topo.track(
      node.spawn(process.execPath, [
        kproxyMain, 'run', '--proxy-mode', 'nftables', '--manifests', dir, '--hostname-override', 'node-a',
        '--cluster-cidr', '10.244.0.0/16', '--iptables-min-sync-period', '100ms', '--iptables-sync-period', '1s',
        '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '--v=1', ...extra,
      ]),
    );
    c.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    c.stdout!.resume();
    return c;
  };
  const table = async (): Promise<string> => (await node.exec('nft', ['list', 'table', 'ip', 'kproxy'], { allowFail: true })).stdout;
  const extra = shortAffinity();
  try {
    ({ node, client, pods } = await buildNode(topo));
    writeManifests(dir, ['pod-1', 'pod-2'], ['pod-1'], extra);
    agent = startAgent();
    await waitFor('the first sync', async () => (await table()).includes('10.96.0.10 . tcp . 80'), 30_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
    });
    // Nothing of iptables mode is written.
    assert.doesNotMatch((await node.exec('iptables-save')).stdout, /KUBE-/);

    await t.test('ClusterIP from a pod and from the node', async () => {
      const fromPod = await get(pods['pod-3']!, 'http://10.96.0.10/', 6);
      assert.ok(fromPod.every((a) => a.ok && ['pod-1', 'pod-2'].includes(a.pod!)), JSON.stringify(fromPod));
      const fromNode = await get(node, 'http://10.96.0.10/', 2);
      assert.ok(fromNode.every((a) => a.ok && ['pod-1', 'pod-2'].includes(a.pod!)), JSON.stringify(fromNode));
    });

    await t.test('NodePort from outside is masqueraded; eTP=Local keeps the client address and uses local endpoints', async () => {
      const np = await get(client, `http://${NODE_IP}:30080/`, 3);
      assert.ok(np.every((a) => a.ok && a.client !== CLIENT_IP), JSON.stringify(np));
      const local = await get(client, `http://${NODE_IP}:30081/`, 4);
      assert.ok(local.every((a) => a.ok && a.pod === 'pod-1' && a.client === CLIENT_IP), JSON.stringify(local));
    });

    await t.test('external IP and LoadBalancer IP with source ranges', async () => {
      const ext = await get(client, 'http://192.168.77.100/', 2);
      assert.ok(ext.every((a) => a.ok && a.pod === 'pod-2'), JSON.stringify(ext));
      const allow = await get(client, 'http://192.168.77.200/', 2);
      assert.ok(allow.every((a) => a.ok && a.pod === 'pod-3'), JSON.stringify(allow));
      const deny = await get(client, 'http://192.168.77.201/', 1, 1000);
      assert.equal(deny[0]!.ok, false);
      assert.match(deny[0]!.error!, /timeout/, 'dropped, not rejected');
    });

    await t.test('kproxy trace reads the node’s nft list ruleset', async () => {
      const dump = join(dir, '..', `${topo.prefix}-ruleset.nft`);
      writeFileSync(dump, (await node.exec('nft', ['list', 'ruleset'])).stdout);
      try {
        const tr = async (...a: string[]) => JSON.parse((await node.exec(process.execPath, [kproxyMain, 'trace', '--rules', dump, '--format', 'json', '--local-ip', NODE_IP, ...a])).stdout) as { outcomes: { probability: number; verdict: string; destination: string; masquerade: boolean }[] };
        const ext = await tr('--dst', '192.168.77.100:80', '--src', CLIENT_IP);
        assert.deepEqual(ext.outcomes.map((o) => [o.verdict, o.destination, o.masquerade, o.probability]), [['ACCEPT', '10.244.1.12:8080', true, 1]]);
        const web = await tr('--dst', '10.96.0.10:80', '--src', '10.244.1.13');
        assert.deepEqual(web.outcomes.map((o) => [o.destination, o.probability, o.masquerade]).sort(), [['10.244.1.11:8080', 0.5, false], ['10.244.1.12:8080', 0.5, false]]);
        const deny = await tr('--dst', '192.168.77.201:80', '--src', CLIENT_IP);
        assert.equal(deny.outcomes[0]!.verdict, 'DROP');
        const text = (await node.exec(process.execPath, [kproxyMain, 'trace', '--rules', dump, '--local-ip', NODE_IP, '--dst', `${NODE_IP}:30080`])).stdout;
        assert.match(text, /50\.0%\s+ACCEPT DNAT → 10\.244\.1\.1[12]:8080, masqueraded/);
      } finally {
        rmSync(dump, { force: true });
      }
    });

    await t.test('hairpin, a service without endpoints rejects', async () => {
      const hair = await get(pods['pod-1']!, 'http://10.96.0.16/', 2);
      assert.ok(hair.every((a) => a.ok && a.pod === 'pod-1' && a.client !== PODS[0]!.ip), `masqueraded to itself: ${JSON.stringify(hair)}`);
      const empty = await get(pods['pod-3']!, 'http://10.96.0.15/', 1, 3000);
      assert.equal(empty[0]!.ok, false);
      assert.match(empty[0]!.error!, /ECONNREFUSED/);
      assert.ok(empty[0]!.ms < 1000, `refused fast (${empty[0]!.ms} ms)`);
    });

    await t.test('ClientIP affinity sticks, and expires after its timeout', async () => {
      const aff = await get(pods['pod-3']!, 'http://10.96.0.14/', 8);
      assert.ok(aff.every((a) => a.ok), JSON.stringify(aff));
      assert.equal(new Set(aff.map((a) => a.pod)).size, 1, `sticky: ${aff.map((a) => a.pod)}`);
      const short = await get(pods['pod-3']!, 'http://10.96.0.19/', 4);
      assert.equal(new Set(short.map((a) => a.pod)).size, 1, `sticky: ${short.map((a) => a.pod)}`);
      const entries = async (): Promise<string> => (await node.exec('nft', ['list', 'set', 'ip', 'kproxy', 'int-aff'])).stdout;
      assert.match(await entries(), /10\.244\.1\.13 \. 10\.96\.0\.19 \. 80 \. \d+ (timeout 2s )?expires/);
      // The 2 s entry goes away on its own; the 3 h one of `aff` stays.
      await waitFor('the short affinity entry to expire', async () => !(await entries()).includes('10.96.0.19'), 6000, 200);
      assert.match(await entries(), /10\.96\.0\.14/);
      // A new pick after expiry: over a few rounds some other pod turns up (each round 2/3 likely).
      const seen = new Set(short.map((a) => a.pod));
      for (let round = 0; round < 6 && seen.size < 2; round++) {
        const again = await get(pods['pod-3']!, 'http://10.96.0.19/', 1);
        seen.add(again[0]!.pod);
        await waitFor('expiry', async () => !(await entries()).includes('10.96.0.19'), 6000, 200);
      }
      assert.ok(seen.size >= 2, `a fresh choice after expiry: ${[...seen]}`);
    });

    await t.test('scaling moves traffic within a second; a steady service never fails meanwhile; stale UDP conntrack is cleared', async () => {
      assert.equal(await udpFromPort(pods['pod-3']!, '10.96.0.17', 53, 40053), 'pod-1');
      const t0 = Date.now();
      writeManifests(dir, ['pod-3'], ['pod-2'], extra);
      // The external-IP service (pod-2) did not change: none of its connections may fail during the change.
      const steady = get(client, 'http://192.168.77.100/', 10, 1000);
      await waitFor('traffic to move to pod-3', async () => (await get(pods['pod-2']!, 'http://10.96.0.10/', 3, 1000)).every((x) => x.pod === 'pod-3'), 10_000, 50);
      const moved = Date.now() - t0;
      assert.ok(moved < 3000, `moved after ${moved} ms`);
      const s = await steady;
      assert.ok(s.every((a) => a.ok && a.pod === 'pod-2'), JSON.stringify(s));
      await waitFor('UDP from the same port to reach pod-2', async () => (await udpFromPort(pods['pod-3']!, '10.96.0.17', 53, 40053)) === 'pod-2', 5000, 100);
      assert.match(logs, /synced changed rules/);
    });

    await t.test('a deleted table is re-programmed (canary)', async () => {
      await node.exec('nft', ['delete', 'table', 'ip', 'kproxy']);
      await waitFor('the table back', async () => (await table()).includes('10.96.0.10 . tcp . 80'), 10_000, 100);
      const a = await get(pods['pod-1']!, 'http://10.96.0.10/', 2);
      assert.ok(a.every((x) => x.ok && x.pod === 'pod-3'), JSON.stringify(a));
    });

    await t.test('a failing transaction is logged with its line, changes nothing, and the next full sync repairs', async () => {
      // Drift: someone deletes the web service's cluster-IP element; the next change to web deletes it again, which fails.
      await node.exec('nft', ['delete', 'element', 'ip', 'kproxy', 'int-tcp-n1', '{ 10.96.0.10 . tcp . 80 }']);
      logs = '';
      writeManifests(dir, ['pod-1', 'pod-3'], ['pod-2'], extra);
      await waitFor('the failure in the log', () => logs.includes('nft transaction failed'), 10_000, 50);
      assert.match(logs, /"lines":\["\d+: delete element ip kproxy int-tcp-n1/, logs.slice(-2000));
      await waitFor(
        'the full sync to apply the change',
        async () => {
          const a = await get(pods['pod-2']!, 'http://10.96.0.10/', 6, 1000);
          return a.every((x) => x.ok) && new Set(a.map((x) => x.pod)).size === 2;
        },
        15_000,
        100,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; kproxy said:\n${logs.slice(-4000)}`);
      });
      const metrics = (await node.exec('curl', ['-s', 'http://127.0.0.1:10249/metrics'], { allowFail: true })).stdout;
      assert.match(metrics, /kubeproxy_sync_proxy_rules_nftables_sync_failures_total\{ip_family="IPv4"\} [1-9]/);
    });

    await t.test('kproxy doctor knows the mode: the table is there, and an element deleted by hand is named', async () => {
      const doctor = async (): Promise<{ checks: { id: string; status: string; evidence: string[] }[] }> => {
        const r = await node.exec(process.execPath, [kproxyMain, 'doctor', '--proxy-mode', 'nftables', '--manifests', dir, '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--json', '--no-agent'], { allowFail: true, timeoutMs: 60_000 });
        return JSON.parse(r.stdout) as { checks: { id: string; status: string; evidence: string[] }[] };
      };
      const before = await doctor();
      const get = (rep: typeof before, id: string) => rep.checks.find((c) => c.id === id);
      assert.equal(get(before, 'nftables.table.ipv4')?.status, 'ok', JSON.stringify(before.checks));
      assert.equal(get(before, 'nftables.drift.ipv4')?.status, 'ok', JSON.stringify(get(before, 'nftables.drift.ipv4')));
      assert.ok(!before.checks.some((c) => c.id.startsWith('rules.') || c.id.startsWith('drift.')), 'no iptables checks in nftables mode');
      await node.exec('nft', ['delete', 'element', 'ip', 'kproxy', 'ext-masq', '{ 192.168.77.100 . tcp . 80 }']);
      const after = await doctor();
      const drift = get(after, 'nftables.drift.ipv4')!;
      assert.equal(drift.status, 'fail');
      assert.ok(drift.evidence.includes('missing ext-masq: 192.168.77.100 . tcp . 80'), JSON.stringify(drift));
    });

    await t.test('SIGTERM leaves the table; a restarted agent adopts it; SIGKILL leaves traffic flowing', async () => {
      agent!.kill('SIGTERM');
      await waitFor('the agent to stop', () => agent!.exitCode !== null || agent!.signalCode !== null, 10_000, 50);
      assert.equal(agent!.exitCode, 0, logs.slice(-2000));
      assert.ok((await get(pods['pod-2']!, 'http://10.96.0.10/', 1))[0]!.ok);
      // An affinity entry made now survives the restart (the table is refilled, not re-created).
      await get(pods['pod-3']!, 'http://10.96.0.14/', 1);
      logs = '';
      agent = startAgent();
      await waitFor('a sync by the new agent', () => logs.includes('synced all rules'), 20_000, 50);
      assert.match((await node.exec('nft', ['list', 'set', 'ip', 'kproxy', 'int-aff'])).stdout, /10\.96\.0\.14/, logs.slice(0, 3000));
      agent.kill('SIGKILL');
      await waitFor('the agent to die', () => agent!.signalCode !== null || agent!.exitCode !== null, 5000, 20);
      const a = await get(client, `http://${NODE_IP}:30080/`, 2);
      assert.ok(a.every((x) => x.ok), JSON.stringify(a));
    });

    await t.test('the periodic full sync writes nothing when the kernel matches, and repairs drift it finds', async () => {
      logs = '';
      agent = startAgent('--full-sync-period', '2s');
      await waitFor('a full sync that finds nothing to write', () => /synced all rules.*"written":false/.test(logs), 20_000, 50).catch((e: Error) => {
        throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
      });
      assert.doesNotMatch(logs, /differs from what kproxy wrote/, logs.slice(-3000));
      // Someone deletes an element, adds one, and deletes a rule.
      await node.exec('nft', ['delete', 'element', 'ip', 'kproxy', 'ext-masq', '{ 192.168.77.100 . tcp . 80 }']);
      await node.exec('nft', ['add', 'element', 'ip', 'kproxy', 'int-fe', '{ 10.96.0.250 . tcp . 81 }']);
      const handle = /jump nodeports # handle (\d+)/.exec((await node.exec('nft', ['-a', 'list', 'chain', 'ip', 'kproxy', 'services'])).stdout)?.[1];
      assert.ok(handle, 'the nodeports jump rule');
      await node.exec('nft', ['delete', 'rule', 'ip', 'kproxy', 'services', 'handle', handle]);
      await waitFor('the drift to be found', () => logs.includes('differs from what kproxy wrote'), 15_000, 50);
      assert.match(logs, /"missing ext-masq: 192\.168\.77\.100 \. tcp \. 80"/);
      assert.match(logs, /"unexpected int-fe: 10\.96\.0\.250 \. tcp \. 81"/);
      assert.match(logs, /"services: \d+ rules, want \d+"/);
      await waitFor('the table repaired', async () => {
        const tb = await table();
        return tb.includes('192.168.77.100 . tcp . 80') && !tb.includes('10.96.0.250') && tb.includes('jump nodeports');
      }, 10_000, 100);
      const a = await get(client, `http://${NODE_IP}:30080/`, 2);
      assert.ok(a.every((x) => x.ok), JSON.stringify(a));
      const metrics = (await node.exec('curl', ['-s', 'http://127.0.0.1:10249/metrics'], { allowFail: true })).stdout;
      assert.match(metrics, /kproxy_sync_proxy_rules_nftables_drift_repairs_total\{ip_family="IPv4"\} [1-9]/);
      agent.kill('SIGKILL');
      await waitFor('the agent to die', () => agent!.signalCode !== null || agent!.exitCode !== null, 5000, 20);
    });

    await t.test('--cleanup removes kproxy’s tables and nothing else, from any mode', async () => {
      await node.exec('nft', ['add', 'table', 'inet', 'other']);
      await node.exec('nft', ['add', 'chain', 'inet', 'other', 'c', '{ type filter hook input priority 0; }']);
      await node.exec('nft', ['add', 'rule', 'inet', 'other', 'c', 'ip saddr 10.1.2.3 accept']);
      // Upstream's --cleanup removes every mode's leftovers: iptables mode's cleanup removes this table too.
      const r = await node.exec(process.execPath, [kproxyMain, 'run', '--cleanup'], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      let all = (await node.exec('nft', ['list', 'ruleset'])).stdout;
      assert.doesNotMatch(all, /table ip6? kproxy/);
      assert.match(all, /ip saddr 10\.1\.2\.3 accept/);
      await node.exec('nft', ['add', 'table', 'ip6', 'kproxy']);
      const r2 = await node.exec(process.execPath, [kproxyMain, 'run', '--proxy-mode', 'nftables', '--cleanup'], { timeoutMs: 60_000 });
      assert.equal(r2.code, 0, r2.stderr);
      all = (await node.exec('nft', ['list', 'ruleset'])).stdout;
      assert.doesNotMatch(all, /table ip6? kproxy/);
      assert.match(all, /ip saddr 10\.1\.2\.3 accept/);
    });
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
