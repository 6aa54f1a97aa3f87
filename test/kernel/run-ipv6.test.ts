// `kproxy run --manifests` on a dual-stack node, in network namespaces: the
// node has IPv4 and IPv6 on its uplink (eth0, to an external client) and on
// the pod bridge (cbr0), forwards both families, and runs kproxy, which must
// program iptables and ip6tables from one Node and one RequireDualStack
// Service with an IPv4 and an IPv6 EndpointSlice. The v4 slice names pod-1 and
// the v6 slice pod-2, so an answer tells which family's rules served it.
// pod-3 runs a server too but is never an endpoint: it is the in-cluster client.
// A single-stack IPv6 UDP service (dns6) checks the IPv6 conntrack cleanup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Topology, runPrefix, waitFor, type Netns } from '../../src/lab/netns.js';
import { kproxyMain } from '../../src/lab/cluster.js';
import { probe, startPodServer, udpFromPort } from './lab-clients.js';

const NODE_IP4 = '192.168.78.10';
const NODE_IP6 = 'fd00:78::10';
const CLIENT_IP4 = '192.168.78.2';
const CLIENT_IP6 = 'fd00:78::2';
const BRIDGE_IP4 = '10.244.1.1';
const BRIDGE_IP6 = 'fd00:10:244:1::1';
const CLUSTER_IP4 = '10.96.0.10';
const CLUSTER_IP6 = 'fd00:96::10';
const DNS_IP6 = 'fd00:96::53';
const NODE_PORT = 30080;
const PODS = [
  { name: 'pod-1', ip4: '10.244.1.11', ip6: 'fd00:10:244:1::11' },
  { name: 'pod-2', ip4: '10.244.1.12', ip6: 'fd00:10:244:1::12' },
  { name: 'pod-3', ip4: '10.244.1.13', ip6: 'fd00:10:244:1::13' },
];
const pod = (name: string) => PODS.find((p) => p.name === name)!;

// --- manifests ---------------------------------------------------------------

function slice(svc: string, family: 'IPv4' | 'IPv6', pods: string[], protocol = 'TCP', port = 8080) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc}-${family.toLowerCase()}`, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
    addressType: family,
    endpoints: pods.map((n) => ({
      addresses: [family === 'IPv4' ? pod(n).ip4 : pod(n).ip6],
      conditions: { ready: true },
      nodeName: 'node-a',
    })),
    ports: [{ name: '', port, protocol }],
  };
}

/** web: the dual-stack service (v4 and v6 endpoints); dns6: a single-stack IPv6 UDP service. */
function writeManifests(dir: string, v4: string[], v6: string[], dns6: string[]): void {
  const items = [
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-a' },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] },
      status: {
        addresses: [
          { type: 'InternalIP', address: NODE_IP4 },
          { type: 'InternalIP', address: NODE_IP6 },
        ],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'default' },
      spec: {
        type: 'NodePort',
        ipFamilyPolicy: 'RequireDualStack',
        ipFamilies: ['IPv4', 'IPv6'],
        clusterIP: CLUSTER_IP4,
        clusterIPs: [CLUSTER_IP4, CLUSTER_IP6],
        ports: [{ port: 80, targetPort: 8080, protocol: 'TCP', nodePort: NODE_PORT }],
      },
    },
    slice('web', 'IPv4', v4),
    slice('web', 'IPv6', v6),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'dns6', namespace: 'default' },
      spec: {
        ipFamilyPolicy: 'SingleStack',
        ipFamilies: ['IPv6'],
        clusterIP: DNS_IP6,
        clusterIPs: [DNS_IP6],
        ports: [{ port: 53, targetPort: 5353, protocol: 'UDP' }],
      },
    },
    slice('dns6', 'IPv6', dns6, 'UDP', 5353),
  ];
  // Written whole and renamed, so the watcher never reads half a file.
  const tmp = join(dir, '.all.json.tmp');
  writeFileSync(tmp, JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 1));
  renameSync(tmp, join(dir, 'all.json'));
}

// --- clients -----------------------------------------------------------------

const get = probe;
const udp6Fixed = udpFromPort;

const url6 = (ip: string, port = 80) => `http://[${ip}]:${port}/`;
const url4 = (ip: string, port = 80) => `http://${ip}:${port}/`;

// --- the test ----------------------------------------------------------------

for (const mode of ['iptables', 'nftables'] as const) {
test(`kproxy run --proxy-mode ${mode} --manifests programs IPv6 next to IPv4 on a dual-stack node`, { timeout: 120_000 }, async (t) => {
  const nft = mode === 'nftables';
  const topo = new Topology(runPrefix(nft ? 'k6n' : 'k6'));
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-run6-'));
  let logs = '';
  let agent: ChildProcess | undefined;
  let node!: Netns;
  const save = async (cmd: 'iptables-save' | 'ip6tables-save', table = 'nat'): Promise<string> =>
    (await node.exec(cmd, ['-t', table])).stdout;
  /** nftables mode: kproxy's table of a family as `nft list` prints it (elements are "ip . port"). */
  const table = async (fam: 'ip' | 'ip6'): Promise<string> => (await node.exec('nft', ['list', 'table', fam, 'kproxy'], { allowFail: true })).stdout;
  /** Whether the family's rules send something to this endpoint ("[ip]:port" in iptables, "ip . port" in an nftables map). */
  const programs6 = async (ip: string, port: number): Promise<boolean> =>
    nft ? (await table('ip6')).includes(`: ${ip} . ${port}`) : (await save('ip6tables-save')).includes(`[${ip}]:${port}`);
  try {
    // Topology. IPv6 addresses are added with nodad: duplicate address detection
    // would keep them tentative (unusable) for a second or more after they appear.
    node = await topo.netns('node');
    const client = await topo.netns('client');
    await topo.veth(node, 'eth0', client, 'eth0', `${NODE_IP4}/24`, `${CLIENT_IP4}/24`);
    await node.ip('-6', 'addr', 'add', `${NODE_IP6}/64`, 'dev', 'eth0', 'nodad');
    await client.ip('-6', 'addr', 'add', `${CLIENT_IP6}/64`, 'dev', 'eth0', 'nodad');
    // The client plays the node's router, as in run-e2e.
    await node.ip('route', 'add', 'default', 'via', CLIENT_IP4);
    await node.ip('-6', 'route', 'add', 'default', 'via', CLIENT_IP6);
    await client.ip('route', 'add', 'default', 'via', NODE_IP4);
    await client.ip('-6', 'route', 'add', 'default', 'via', NODE_IP6);
    await topo.bridge(node, 'cbr0', `${BRIDGE_IP4}/24`);
    await node.ip('-6', 'addr', 'add', `${BRIDGE_IP6}/64`, 'dev', 'cbr0', 'nodad');
    await node.sysctl('net.ipv4.ip_forward', '1');
    await node.sysctl('net.ipv6.conf.all.forwarding', '1');
    await node.sysctl('net.bridge.bridge-nf-call-iptables', '1');
    await node.sysctl('net.bridge.bridge-nf-call-ip6tables', '1');
    const pods: Record<string, Netns> = {};
    for (const [i, p] of PODS.entries()) {
      const ns = await topo.netns(p.name);
      pods[p.name] = ns;
      await topo.veth(node, `vp${i}`, ns, 'eth0', undefined, `${p.ip4}/24`);
      await ns.ip('-6', 'addr', 'add', `${p.ip6}/64`, 'dev', 'eth0', 'nodad');
      await node.ip('link', 'set', `vp${i}`, 'master', 'cbr0');
      await ns.ip('route', 'add', 'default', 'via', BRIDGE_IP4);
      await ns.ip('-6', 'route', 'add', 'default', 'via', BRIDGE_IP6);
      // Listens on :: with IPv4-mapped addresses allowed: one socket serves both families.
      await startPodServer(topo, ns, ['--name', p.name, '--ip', p.ip6, '--tcp', '8080', '--udp', '5353']);
    }
    // No tentative addresses left anywhere (nodad should have seen to it).
    for (const ns of [node, client, ...Object.values(pods)]) {
      await waitFor(`${ns.name}: addresses out of tentative state`, async () => !(await ns.ip('-6', 'addr', 'show', 'tentative')).stdout.includes('inet6 fd00'), 5000, 50);
    }
    // Plain routing works before kproxy is involved: a failure below is then kproxy's.
    const direct = await get(pods['pod-3']!, url6(pod('pod-2').ip6, 8080));
    assert.ok(direct[0]!.ok && direct[0]!.pod === 'pod-2', `pod-3 → pod-2 over IPv6 without a service: ${JSON.stringify(direct)}`);

    writeManifests(dir, ['pod-1'], ['pod-2'], ['pod-1']);
    agent = topo.track(
      node.spawn(process.execPath, [
        kproxyMain,
        'run',
        '--proxy-mode',
        mode,
        '--manifests',
        dir,
        '--hostname-override',
        'node-a',
        '--cluster-cidr',
        '10.244.0.0/16,fd00:10:244::/56',
        '--iptables-min-sync-period',
        '100ms',
        '--iptables-sync-period',
        '1s',
        '--healthz-bind-address',
        '127.0.0.1:10256',
        '--metrics-bind-address',
        '127.0.0.1:10249',
        '--v=1',
      ]),
    );
    agent.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    agent.stdout!.resume();
    await waitFor(
      'the first sync of both families',
      async () =>
        nft
          ? (await table('ip')).includes('10.96.0.10 . tcp . 80') && (await table('ip6')).includes(`${CLUSTER_IP6} . tcp . 80`)
          : (await save('iptables-save')).includes('KUBE-SVC-') && (await save('ip6tables-save')).includes('KUBE-SVC-'),
      30_000,
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
    });

    if (nft) await t.test('table ip6 kproxy holds the IPv6 addresses only, table ip the IPv4 ones', async () => {
      const v6 = await table('ip6');
      assert.match(v6, new RegExp(`${CLUSTER_IP6.replace(/[.]/g, '\\.')} \\. tcp \\. 80`));
      assert.match(v6, /dnat ip6 to ip6 daddr/);
      assert.ok(v6.includes(': fd00:10:244:1::12 . 8080'), v6);
      assert.doesNotMatch(v6, /10\.96\.0\.10|10\.244\.1\.11/);
      const v4 = await table('ip');
      assert.match(v4, /10\.96\.0\.10 \. tcp \. 80/);
      assert.doesNotMatch(v4, /fd00:/);
      assert.doesNotMatch(await save('ip6tables-save'), /KUBE-/, 'nothing of iptables mode');
    });

    if (!nft) await t.test('ip6tables holds the service chains, with the IPv6 addresses only', async () => {
      const v6 = await save('ip6tables-save');
      assert.match(v6, /^:KUBE-SERVICES /m);
      assert.match(v6, /^-A PREROUTING .*-j KUBE-SERVICES/m);
      assert.match(v6, /^-A OUTPUT .*-j KUBE-SERVICES/m);
      const svc = v6.split('\n').find((l) => l.startsWith('-A KUBE-SERVICES') && l.includes(`${CLUSTER_IP6}/128`));
      assert.ok(svc, `a KUBE-SERVICES rule for ${CLUSTER_IP6}:\n${v6}`);
      assert.match(svc!, /default\/web/);
      const chain = /-j (KUBE-SVC-\S+)/.exec(svc!)?.[1];
      assert.ok(chain, svc);
      assert.match(v6, new RegExp(`^:${chain} `, 'm'), 'the service chain is declared');
      assert.match(v6, new RegExp(`^-A ${chain} .*-j KUBE-SEP-`, 'm'), 'and jumps to an endpoint chain');
      assert.match(v6, /^-A KUBE-NODEPORTS .*--dport 30080/m);
      assert.match(v6, /--to-destination \[fd00:10:244:1::12\]:8080/);
      assert.doesNotMatch(v6, /10\.96\.0\.10|10\.244\.1\.11/, 'no IPv4 address in the IPv6 rules');
      const v4 = await save('iptables-save');
      assert.match(v4, /10\.96\.0\.10\/32/);
      assert.doesNotMatch(v4, /fd00:/, 'no IPv6 address in the IPv4 rules');
    });

    await t.test('the IPv6 ClusterIP from a pod reaches the IPv6 endpoint, unmasqueraded', async () => {
      const a = await get(pods['pod-3']!, url6(CLUSTER_IP6), 4);
      assert.ok(
        a.every((x) => x.ok && x.pod === 'pod-2' && x.ip === pod('pod-2').ip6 && x.client === pod('pod-3').ip6),
        JSON.stringify(a),
      );
    });

    await t.test('the IPv6 ClusterIP from the node itself', async () => {
      const a = await get(node, url6(CLUSTER_IP6), 2);
      assert.ok(a.every((x) => x.ok && x.pod === 'pod-2' && x.ip === pod('pod-2').ip6), JSON.stringify(a));
    });

    await t.test('the IPv4 ClusterIP still reaches the IPv4 endpoint', async () => {
      const fromPod = await get(pods['pod-3']!, url4(CLUSTER_IP4), 3);
      assert.ok(fromPod.every((x) => x.ok && x.pod === 'pod-1' && x.ip === pod('pod-1').ip4), JSON.stringify(fromPod));
      const fromNode = await get(node, url4(CLUSTER_IP4), 1);
      assert.ok(fromNode.every((x) => x.ok && x.pod === 'pod-1'), JSON.stringify(fromNode));
    });

    await t.test('the NodePort answers over the node’s IPv6 address from outside, masqueraded; and over IPv4', async () => {
      const v6 = await get(client, url6(NODE_IP6, NODE_PORT), 3);
      assert.ok(v6.every((x) => x.ok && x.pod === 'pod-2' && x.ip === pod('pod-2').ip6), JSON.stringify(v6));
      // Masqueraded to the node's address towards the pod (eTP=Cluster).
      assert.ok(v6.every((x) => x.client === BRIDGE_IP6), JSON.stringify(v6));
      const v4 = await get(client, url4(NODE_IP4, NODE_PORT), 2);
      assert.ok(v4.every((x) => x.ok && x.pod === 'pod-1' && x.client !== CLIENT_IP4), JSON.stringify(v4));
    });

    await t.test('scaling the IPv6 slice in the folder moves IPv6 traffic within a few seconds, IPv4 untouched; stale IPv6 UDP conntrack is cleared', async () => {
      // UDP first: a fixed 5-tuple keeps one conntrack entry.
      assert.equal(await udp6Fixed(pods['pod-3']!, DNS_IP6, 53, 40053), 'pod-1');
      const t0 = Date.now();
      writeManifests(dir, ['pod-1'], ['pod-1'], ['pod-2']);
      await waitFor(
        'IPv6 traffic to move to pod-1',
        async () => (await get(pods['pod-3']!, url6(CLUSTER_IP6), 2, 1000)).every((x) => x.pod === 'pod-1' && x.ip === pod('pod-1').ip6),
        10_000,
        50,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; kproxy said:\n${logs.slice(-3000)}`);
      });
      const moved = Date.now() - t0;
      assert.ok(moved < 5000, `moved after ${moved} ms`);
      assert.ok(await programs6('fd00:10:244:1::11', 8080));
      assert.ok(!(await programs6('fd00:10:244:1::12', 8080)));
      const v4 = await get(pods['pod-3']!, url4(CLUSTER_IP4), 2);
      assert.ok(v4.every((x) => x.ok && x.pod === 'pod-1' && x.ip === pod('pod-1').ip4), JSON.stringify(v4));
      await waitFor('dns6 to point at pod-2', () => programs6('fd00:10:244:1::12', 5353), 5000, 50);
      // Same source port: without the IPv6 conntrack cleanup this would keep reaching pod-1
      // (each datagram refreshes the entry). The cleanup runs just after the restore, so wait a little.
      await waitFor('UDP from the same port to reach pod-2', async () => (await udp6Fixed(pods['pod-3']!, DNS_IP6, 53, 40053)) === 'pod-2', 5000, 100);
    });

    await t.test('with no IPv6 endpoints the IPv6 ClusterIP rejects while IPv4 keeps serving', async () => {
      writeManifests(dir, ['pod-1'], [], ['pod-2']);
      await waitFor(
        'the IPv6 service to lose its endpoints',
        async () => (nft ? /set reject-int \{[^}]*elements = \{[^}]*fd00/.test(await table('ip6')) : (await save('ip6tables-save', 'filter')).includes(`-d ${CLUSTER_IP6}/128`)),
        10_000,
        50,
      );
      const v6 = await get(pods['pod-3']!, url6(CLUSTER_IP6), 1, 3000);
      assert.equal(v6[0]!.ok, false, JSON.stringify(v6));
      assert.match(v6[0]!.error!, /ECONNREFUSED/);
      // Refused, not dropped, but after one SYN retransmission (~1 s), not at once as
      // over IPv4: the ICMPv6 error for the first SYN comes back while connect() still
      // holds the socket, so TCP keeps it as a soft error (TcpExtLockDroppedIcmps in the
      // pod counts one per connection). The same rules upstream writes behave alike.
      assert.ok(v6[0]!.ms < 2500, `refused after at most one retransmission (${v6[0]!.ms} ms)`);
      // The node would refuse an unclaimed port by itself: check the rule too.
      if (nft) assert.match(await table('ip6'), /set reject-np \{[^}]*elements = \{ tcp \. 30080 \}/);
      else assert.match(await save('ip6tables-save', 'filter'), /^-A KUBE-EXTERNAL-SERVICES .*--dport 30080 .*-j REJECT/m);
      const np = await get(client, url6(NODE_IP6, NODE_PORT), 1, 3000);
      assert.equal(np[0]!.ok, false, JSON.stringify(np));
      assert.match(np[0]!.error!, /ECONNREFUSED/);
      const v4 = await get(pods['pod-3']!, url4(CLUSTER_IP4), 2);
      assert.ok(v4.every((x) => x.ok && x.pod === 'pod-1'), JSON.stringify(v4));
    });
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
}
