// The tracer against the kernel on upstream kube-proxy's nftables table: the
// fixture (test/fixtures/kube-proxy-nft) loaded into a node namespace of our
// own, traced from the kernel's own listing, and the same packets sent for real
// from a client namespace to pod addresses behind the node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Topology, runPrefix } from '../../src/lab/netns.js';
import { parseNft, traceNft, type NftTraceResult } from '../../src/netfilter/nft-trace.js';
import { probe, startPodServer } from './lab-clients.js';

const fixture = new URL('../../../test/fixtures/kube-proxy-nft/table.nft', import.meta.url);
const NODE = '192.168.0.2';
const CLIENT = '192.168.0.9';
const WEB = ['10.1.0.11', '10.1.0.12', '10.1.0.13'];

test('kube-proxy nftables table: the trace of the live table matches real connections', async () => {
  const topo = new Topology(runPrefix('kpnft'));
  try {
    const node = await topo.netns('node');
    const client = await topo.netns('client');
    const pods = await topo.netns('pods');
    await topo.veth(node, 'eth0', client, 'eth0', `${NODE}/24`, `${CLIENT}/24`);
    await topo.veth(node, 'pods', pods, 'eth0', '10.1.0.1/24', `${WEB[0]}/24`);
    for (const ip of WEB.slice(1)) await pods.ip('addr', 'add', `${ip}/24`, 'dev', 'eth0');
    await client.ip('route', 'add', 'default', 'via', NODE);
    await pods.ip('route', 'add', 'default', 'via', '10.1.0.1');
    await node.sysctl('net.ipv4.ip_forward', '1');
    await node.exec('nft', ['-f', '-'], { input: readFileSync(fixture, 'utf8') });
    await startPodServer(topo, pods, ['--name', 'web', '--tcp', '8080']);

    const live = parseNft((await node.exec('nft', ['list', 'ruleset'])).stdout);
    const trace = (dst: string, dport: number): NftTraceResult => traceNft(live, { proto: 'tcp', src: CLIENT, dst, dport, localIps: [NODE] });

    for (const [dst, dport] of [[NODE, 30080], ['172.30.1.10', 80]] as const) {
      const r = trace(dst, dport);
      assert.deepEqual(r.outcomes.map((o) => `${o.verdict} ${o.destination} ${o.masquerade}`).sort(), WEB.map((ip) => `ACCEPT ${ip}:8080 true`));
      // 30 new connections: each endpoint is 1/3, so all three answer (a miss has probability 3·(2/3)^30 ≈ 2e-5).
      const answers = await probe(client, `http://${dst}:${dport}/`, 30);
      assert.ok(answers.every((a) => a.ok), `all connect: ${answers.find((a) => !a.ok)?.error}`);
      assert.deepEqual([...new Set(answers.map((a) => a.ip))].sort(), WEB, `${dst}:${dport}: every traced endpoint answered`);
      assert.ok(answers.every((a) => a.client === '10.1.0.1'), `masqueraded to the node's pod-side address, as traced: ${answers[0]?.client}`);
    }

    // Traced as dropped (outside the LB's source ranges) and rejected (no endpoints; a port no service has).
    const closed: [string, number, 'DROP' | 'REJECT'][] = [['198.51.100.20', 443, 'DROP'], ['172.30.1.99', 80, 'REJECT'], ['172.30.1.10', 81, 'REJECT']];
    for (const [dst, dport, verdict] of closed) {
      assert.deepEqual(trace(dst, dport).outcomes.map((o) => o.verdict), [verdict], `${dst}:${dport}`);
      const [a] = await probe(client, `http://${dst}:${dport}/`, 1, 1500);
      assert.equal(a!.ok, false, `${dst}:${dport} does not connect`);
      // A reject answers at once; a drop leaves the client waiting until its timeout.
      if (verdict === 'REJECT') assert.ok(a!.ms < 1000, `${dst}:${dport} refused at once (${a!.ms} ms: ${a!.error})`);
      else assert.ok(a!.ms >= 1000, `${dst}:${dport} dropped: no answer (${a!.ms} ms: ${a!.error})`);
    }
  } finally {
    await topo.destroy();
  }
});
