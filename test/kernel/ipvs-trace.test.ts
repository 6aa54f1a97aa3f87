// `kproxy trace --ipvs` on a rendered ipvs node: the ipset and iptables parts
// are loaded for real in a namespace (with upstream's jumps from the built-in
// chains) and dumped back with iptables-save / ipset save; the IPVS part is
// the rendered ipvsadm -Sn text (this kernel has no IPVS). Then packets are
// traced through the CLI: rr splits equally, sh names the exact server for a
// source, hairpin and NodePort traffic is masqueraded, other ports on a VIP
// are rejected, a service without endpoints drops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Topology, runPrefix } from '../../src/lab/netns.js';
import { renderIpvs } from '../../src/dataplane/ipvs/render.js';
import type { IpvsRender } from '../../src/dataplane/ipvs/model.js';
import { createScheduler } from '../../src/dataplane/schedulers/index.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { ep, port, slice, state, svc } from '../fixtures/ipvs/build.js';
import { loadRuleset, parseIpsetSave, trace, type TraceRequest } from '../../src/netfilter/index.js';
import { withIpvs } from '../../src/netfilter/ipvs.js';
import { splitHostPort } from '../../src/util/ip.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const NODE_IP = '192.168.1.10';

function cluster(): ClusterState {
  return state(
    [
      svc('default', 'web', (s) => {
        s.clusterIPs = ['10.96.0.10'];
        s.ports = [port('http', 'TCP', 80)];
      }),
      svc('kube-system', 'dns', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['10.96.0.53'];
        s.ports = [port('dns', 'UDP', 53, 30053)];
      }),
      svc('default', 'empty', (s) => {
        s.clusterIPs = ['10.96.0.99'];
        s.ports = [port('http', 'TCP', 80)];
      }),
    ],
    [
      slice('default', 'web', 1, 'IPv4', [ep('10.244.1.5', 'node-a'), ep('10.244.2.5', 'node-b'), ep('10.244.3.5', 'node-c')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      slice('kube-system', 'dns', 1, 'IPv4', [ep('10.244.1.6', 'node-a'), ep('10.244.2.6', 'node-b')], [{ name: 'dns', port: 53, protocol: 'UDP' }]),
    ],
  );
}

interface Outcome {
  probability: number;
  verdict: string;
  destination: string;
  source: string;
  masquerade: boolean;
}

async function loadedNode(r: IpvsRender, dir: string): Promise<void> {
  const topo = new Topology(runPrefix('kpit'));
  try {
    const ns = await topo.netns('node');
    await ns.exec('ipset', ['restore'], { input: r.ipsetRestore });
    await ns.exec('iptables-restore', ['--noflush'], { input: r.iptablesRestore });
    for (const j of r.jumps) await ns.exec('iptables', ['-t', j.table, '-I', j.chain, ...j.args.map((a) => a.replace(/^"(.*)"$/, '$1'))]);
    await writeFile(join(dir, 'iptables.txt'), (await ns.exec('iptables-save')).stdout);
    await writeFile(join(dir, 'ipset.txt'), (await ns.exec('ipset', ['save'])).stdout);
    await writeFile(join(dir, 'ipvs.txt'), r.ipvsadmRestore);
  } finally {
    await topo.destroy();
  }
}

/** The same trace in-process (the CLI's startup costs seconds on a loaded machine); one CLI run checks the wiring. */
function traceLib(dir: string, o: { dst: string; src: string; proto?: 'tcp' | 'udp'; from: string }): Outcome[] {
  const rs = loadRuleset(readFileSync(join(dir, 'iptables.txt'), 'utf8'));
  const dst = splitHostPort(o.dst);
  const src = splitHostPort(o.src);
  const req: TraceRequest = {
    proto: o.proto ?? 'tcp',
    dst: dst.host,
    dport: dst.port,
    src: src.host,
    sport: src.port,
    from: o.from,
    localIps: [`${NODE_IP}@eth0`],
    ipsets: parseIpsetSave(readFileSync(join(dir, 'ipset.txt'), 'utf8')),
  };
  withIpvs(req, rs, readFileSync(join(dir, 'ipvs.txt'), 'utf8'), 'ipvs.txt');
  return trace(rs, req).outcomes;
}

function traceOut(dir: string, ...args: string[]): Outcome[] {
  const res = spawnSync(
    process.execPath,
    [main, 'trace', '--rules', join(dir, 'iptables.txt'), '--ipset', join(dir, 'ipset.txt'), '--ipvs', join(dir, 'ipvs.txt'), '--local-ip', `${NODE_IP}@eth0`, '--format', 'json', ...args],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(res.status, 0, res.stderr);
  return (JSON.parse(res.stdout) as { outcomes: Outcome[] }).outcomes;
}

test('trace --ipvs on a loaded rr node: equal split, hairpin and NodePort masquerade, REJECT off-service, DROP without endpoints', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kp-ipvs-trace-'));
  try {
    const r = renderIpvs(cluster(), { family: 'IPv4', nodeName: 'node-a', nodeIPs: [NODE_IP], clusterCIDR: '10.244.0.0/16' });
    await loadedNode(r, dir);

    const rr = traceOut(dir, '--dst', '10.96.0.10:80', '--src', '10.244.1.20', '--from', 'cni0');
    assert.deepEqual(
      rr.map((o) => [o.verdict, o.destination, Number(o.probability.toFixed(6)), o.masquerade]),
      [
        ['ACCEPT', '10.244.1.5:8080', 0.333333, false],
        ['ACCEPT', '10.244.2.5:8080', 0.333333, false],
        ['ACCEPT', '10.244.3.5:8080', 0.333333, false],
      ],
    );

    // A pod reaching itself through its service: KUBE-LOOP-BACK masquerades only that outcome.
    const hairpin = traceLib(dir, { dst: '10.96.0.10:80', src: '10.244.1.5:40000', from: 'cni0' });
    assert.deepEqual(hairpin.map((o) => [o.destination, o.masquerade]), [
      ['10.244.1.5:8080', true],
      ['10.244.2.5:8080', false],
      ['10.244.3.5:8080', false],
    ]);

    // From outside to a UDP NodePort: KUBE-NODE-PORT-UDP marks, KUBE-POSTROUTING masquerades.
    const np = traceLib(dir, { dst: `${NODE_IP}:30053`, proto: 'udp', src: '203.0.113.7:40000', from: 'eth0' });
    assert.deepEqual(np.map((o) => [o.destination, o.probability, o.masquerade]), [
      ['10.244.1.6:53', 0.5, true],
      ['10.244.2.6:53', 0.5, true],
    ]);

    // From outside to a ClusterIP: not from the cluster CIDR, so marked and masqueraded.
    const ext = traceLib(dir, { dst: '10.96.0.10:80', src: '203.0.113.7:40000', from: 'eth0' });
    assert.ok(ext.every((o) => o.masquerade && o.verdict === 'ACCEPT'));

    // A port on a VIP that is no service: KUBE-IPVS-FILTER rejects it before IPVS.
    const off = traceLib(dir, { dst: '10.96.0.10:22', src: '10.244.1.20:40000', from: 'cni0' });
    assert.deepEqual(off.map((o) => o.verdict), ['REJECT']);

    // A virtual service without real servers: IPVS drops.
    const empty = traceLib(dir, { dst: '10.96.0.99:80', src: '10.244.1.20:40000', from: 'cni0' });
    assert.deepEqual(empty.map((o) => [o.verdict, o.probability]), [['DROP', 1]]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('trace --ipvs on a loaded sh node: the exact real server for each source', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kp-ipvs-trace-'));
  try {
    const r = renderIpvs(cluster(), { family: 'IPv4', nodeName: 'node-a', nodeIPs: [NODE_IP], scheduler: 'sh' });
    await loadedNode(r, dir);
    const web = r.virtualServers.find((v) => v.address === '10.96.0.10')!;
    const servers = web.realServers.map((x) => ({ key: `${x.address}:${x.port}`, ip: x.address, port: x.port, weight: x.weight, activeConns: 0, inactiveConns: 0 }));
    const got = new Set<string>();
    for (const src of ['10.244.1.20', '10.244.2.44', '10.244.7.3', '10.244.9.9']) {
      const out = traceLib(dir, { dst: '10.96.0.10:80', src: `${src}:41000`, from: 'cni0' });
      assert.equal(out.length, 1, `one outcome for ${src}`);
      assert.equal(out[0]!.probability, 1);
      assert.equal(out[0]!.destination, createScheduler('sh').schedule(servers, { srcIP: src })!.key);
      // The same client from another port lands on the same server.
      assert.equal(traceLib(dir, { dst: '10.96.0.10:80', src: `${src}:52000`, from: 'cni0' })[0]!.destination, out[0]!.destination);
      got.add(out[0]!.destination);
    }
    assert.ok(got.size >= 2, 'the sources spread over more than one server');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('trace --ipvs on a loaded IPv6 node: KUBE-6- sets, bracketed virtual servers, hairpin masquerade', async () => {
  const { mixedNode, NODE, NODE_IPS } = await import('../fixtures/ipvs/scenario.js');
  const dir = await mkdtemp(join(tmpdir(), 'kp-ipvs-trace-'));
  const topo = new Topology(runPrefix('kpit'));
  try {
    // Without external IPs: their accept rules use -m physdev, which the tracer's parser does not read yet.
    const st = mixedNode();
    for (const s of st.services) s.externalIPs = [];
    const r = renderIpvs(st, { family: 'IPv6', nodeName: NODE, nodeIPs: NODE_IPS, clusterCIDR: 'fd00:244::/32' });
    const ns = await topo.netns('node');
    await ns.exec('ipset', ['restore'], { input: r.ipsetRestore });
    await ns.exec('ip6tables-restore', ['--noflush'], { input: r.iptablesRestore });
    for (const j of r.jumps) await ns.exec('ip6tables', ['-t', j.table, '-I', j.chain, ...j.args.map((a) => a.replace(/^"(.*)"$/, '$1'))]);
    const rs = loadRuleset((await ns.exec('ip6tables-save')).stdout);
    const ipsets = parseIpsetSave((await ns.exec('ipset', ['save'])).stdout);
    const run = (src: string): Outcome[] => {
      const req: TraceRequest = { proto: 'tcp', dst: 'fd00:96::10', dport: 80, src, sport: 40000, from: 'cni0', localIps: ['fd00:1::10@eth0'], ipsets };
      withIpvs(req, rs, r.ipvsadmRestore, 'ipvs6.txt');
      return trace(rs, req).outcomes;
    };
    assert.deepEqual(run('fd00:244:1::20').map((o) => [o.destination, o.probability, o.masquerade]), [
      ['[fd00:244:1::5]:8080', 0.5, false],
      ['[fd00:244:2::5]:8080', 0.5, false],
    ]);
    assert.deepEqual(run('fd00:244:1::5').map((o) => [o.destination, o.masquerade]), [
      ['[fd00:244:1::5]:8080', true],
      ['[fd00:244:2::5]:8080', false],
    ]);
  } finally {
    await topo.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
