// The ipvs applier end to end in a namespace: real ipset, iptables and
// addresses; IPVS and the dummy link type replaced by stand-ins (this kernel
// has neither, see fixtures/ipvs/fake-ipvsadm.ts). Two syncs: the first
// programs everything, the second removes a service and must leave no trace
// of it, without duplicating the jumps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Topology, runPrefix, type Netns } from '../../src/lab/netns.js';
import { applyIpvs, readIpsetSave } from '../../src/dataplane/ipvs/apply.js';
import { renderIpvs } from '../../src/dataplane/ipvs/render.js';
import { fakeIpvsBin } from '../fixtures/ipvs/fake-ipvsadm.js';
import { mixedNode, NODE, NODE_IPS } from '../fixtures/ipvs/scenario.js';

async function boundOn(ns: Netns): Promise<string[]> {
  const r = await ns.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'kube-ipvs0']);
  return r.stdout
    .split('\n')
    .map((l) => /inet (\S+)/.exec(l)?.[1])
    .filter((x): x is string => !!x)
    .sort();
}

test('applyIpvs programs addresses, ipsets, iptables and the IPVS table, and a resync removes a deleted service completely', async () => {
  const topo = new Topology(runPrefix('kpia'));
  const fake = await fakeIpvsBin();
  try {
    const ns = await topo.netns('node');
    const prefix = ['ip', 'netns', 'exec', ns.name, 'env', `PATH=${fake.bin}:${process.env.PATH ?? ''}`, `KP_FAKE_IPVS_STATE=${fake.state}`];
    const opts = { family: 'IPv4' as const, nodeName: NODE, nodeIPs: NODE_IPS };

    const first = renderIpvs(mixedNode(), opts);
    await applyIpvs(first, { prefix });
    assert.deepEqual(await boundOn(ns), ['10.96.0.10/32', '10.96.0.53/32', '198.51.100.7/32', '203.0.113.10/32']);
    assert.equal(await readFile(fake.state, 'utf8'), first.ipvsadmRestore, 'the IPVS table is exactly the rendered one');
    const sets = readIpsetSave((await ns.exec('ipset', ['save'])).stdout);
    for (const s of first.ipsets) assert.deepEqual([...sets.get(s.name)!].sort(), [...s.entries].sort(), s.name);
    const save1 = (await ns.exec('iptables-save')).stdout;
    assert.match(save1, /^-A OUTPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER$/m);
    // Prepended one by one, as upstream: INPUT ends up KUBE-IPVS-FILTER, KUBE-PROXY-FIREWALL, KUBE-NODE-PORT.
    assert.deepEqual(
      save1.split('\n').filter((l) => l.startsWith('-A INPUT ')).map((l) => /-j (\S+)/.exec(l)![1]),
      ['KUBE-IPVS-FILTER', 'KUBE-PROXY-FIREWALL', 'KUBE-NODE-PORT'],
    );

    // The dns service is deleted.
    const st = mixedNode();
    st.services = st.services.filter((s) => s.meta.name !== 'dns');
    const second = renderIpvs(st, opts);
    await applyIpvs(second, { prefix });
    assert.deepEqual(await boundOn(ns), ['10.96.0.10/32', '198.51.100.7/32', '203.0.113.10/32']);
    assert.equal(await readFile(fake.state, 'utf8'), second.ipvsadmRestore);
    assert.doesNotMatch(await readFile(fake.state, 'utf8'), /10\.96\.0\.53|30053|30099/);
    const sets2 = readIpsetSave((await ns.exec('ipset', ['save'])).stdout);
    for (const s of second.ipsets) assert.deepEqual([...sets2.get(s.name)!].sort(), [...s.entries].sort(), s.name);
    const save2 = (await ns.exec('iptables-save')).stdout;
    for (const chain of ['OUTPUT', 'PREROUTING', 'POSTROUTING', 'INPUT', 'FORWARD']) {
      const jumps = (t: string) => t.split('\n').filter((l) => l.startsWith(`-A ${chain} `)).length;
      assert.equal(jumps(save2), jumps(save1), `no duplicated jumps in ${chain}`);
    }
  } finally {
    await topo.destroy();
    await rm(dirname(fake.state), { recursive: true, force: true });
  }
});
