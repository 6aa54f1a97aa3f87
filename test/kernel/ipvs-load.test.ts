// The ipset and iptables parts of ipvs mode loaded for real (ipset restore,
// iptables-restore --noflush) into a namespace of our own — ipsets are per
// network namespace — and read back with ipset save / iptables-save. The
// IPVS part itself cannot be loaded here: this kernel has no ip_vs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix, type Netns } from '../../src/lab/netns.js';
import { renderIpvs } from '../../src/dataplane/ipvs/render.js';
import { ipsetSyncScript, readIpsetSave } from '../../src/dataplane/ipvs/apply.js';
import type { IpvsRender } from '../../src/dataplane/ipvs/model.js';
import type { IPFamily } from '../../src/k8s/types.js';
import { mixedNode, NODE, NODE_IPS } from '../fixtures/ipvs/scenario.js';

/** Rules per chain from iptables-save, in order. */
function savedChains(save: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table = '';
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    const m = /^-A (\S+) /.exec(l);
    if (!m) continue;
    const k = `${table}/${m[1]}`;
    if (!out.has(k)) out.set(k, []);
    out.get(k)!.push(l);
  }
  return out;
}

/** What iptables-save prints for a rule we wrote (it canonicalizes marks, MARK targets and REJECT). */
function canonical(rule: string, family: IPFamily): string {
  let r = rule.replace(/0x004000/g, '0x4000');
  r = r.replace(/-j MARK --or-mark (\S+)$/, '-j MARK --set-xmark $1/$1');
  r = r.replace(/-j MARK --xor-mark (\S+)$/, '-j MARK --set-xmark $1/0x0');
  r = r.replace(/-j REJECT$/, `-j REJECT --reject-with ${family === 'IPv6' ? 'icmp6-port-unreachable' : 'icmp-port-unreachable'}`);
  r = r.replace(/'/g, "\\'");
  return r;
}

function expectedChains(r: IpvsRender): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [table, rules] of [['nat', r.natRules], ['filter', r.filterRules]] as const) {
    for (const l of rules) {
      const k = `${table}/${/^-A (\S+) /.exec(l)![1]}`;
      if (!out.has(k)) out.set(k, []);
      out.get(k)!.push(canonical(l, r.family));
    }
  }
  return out;
}

async function loadAndCompare(ns: Netns, r: IpvsRender): Promise<void> {
  await ns.exec('ipset', ['restore'], { input: r.ipsetRestore });
  const saved = (await ns.exec('ipset', ['save'])).stdout;
  const sets = readIpsetSave(saved);
  for (const s of r.ipsets) {
    assert.ok(sets.has(s.name), `set ${s.name} created`);
    assert.deepEqual([...sets.get(s.name)!].sort(), [...s.entries].sort(), `members of ${s.name}`);
    const create = saved.split('\n').find((l) => l.startsWith(`create ${s.name} `))!;
    assert.ok(create.startsWith(`create ${s.name} ${s.type}`), create);
    if (s.type !== 'bitmap:port') assert.ok(create.includes(`family ${s.family}`), create);
  }
  const restore = r.family === 'IPv6' ? 'ip6tables-restore' : 'iptables-restore';
  await ns.exec(restore, ['--noflush'], { input: r.iptablesRestore });
  const got = savedChains((await ns.exec(r.family === 'IPv6' ? 'ip6tables-save' : 'iptables-save')).stdout);
  const want = expectedChains(r);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, rules] of want) assert.deepEqual(got.get(k), rules, `chain ${k}`);
}

test('ipvs mode: ipsets and iptables rules load with ipset restore / iptables-restore and read back identical (IPv4 and IPv6)', async () => {
  const topo = new Topology(runPrefix('kpiv'));
  try {
    const ns = await topo.netns('node');
    for (const family of ['IPv4', 'IPv6'] as const) {
      const r = renderIpvs(mixedNode(), { family, nodeName: NODE, nodeIPs: NODE_IPS });
      // The scenario really exercises the sets: most are non-empty.
      assert.ok(r.ipsets.filter((s) => s.entries.length > 0).length >= 13, `${family}: populated sets`);
      await loadAndCompare(ns, r);
    }
    // Both families' sets live side by side (KUBE- and KUBE-6- names).
    const names = [...readIpsetSave((await ns.exec('ipset', ['save'])).stdout).keys()];
    assert.ok(names.includes('KUBE-CLUSTER-IP') && names.includes('KUBE-6-CLUSTER-IP'));
    assert.equal(names.length, 34);
  } finally {
    await topo.destroy();
  }
});

test('ipvs mode: a resync removes stale ipset members and adds new ones (ipsetSyncScript against ipset save)', async () => {
  const topo = new Topology(runPrefix('kpiv'));
  try {
    const ns = await topo.netns('node');
    const before = renderIpvs(mixedNode(), { family: 'IPv4', nodeName: NODE, nodeIPs: NODE_IPS });
    await ns.exec('ipset', ['restore'], { input: before.ipsetRestore });
    // The dns service goes away and web's source ranges change.
    const st = mixedNode({ nodeInRanges: false });
    st.services = st.services.filter((s) => s.meta.name !== 'dns');
    const after = renderIpvs(st, { family: 'IPv4', nodeName: NODE, nodeIPs: NODE_IPS });
    const script = ipsetSyncScript(after.ipsets, (await ns.exec('ipset', ['save'])).stdout);
    assert.ok(script.includes('del KUBE-CLUSTER-IP 10.96.0.53,udp:53'), script);
    await ns.exec('ipset', ['restore'], { input: script });
    const sets = readIpsetSave((await ns.exec('ipset', ['save'])).stdout);
    for (const s of after.ipsets) assert.deepEqual([...sets.get(s.name)!].sort(), [...s.entries].sort(), `members of ${s.name}`);
    assert.deepEqual([...sets.get('KUBE-LOAD-BALANCER-SOURCE-CIDR')!], ['203.0.113.10,tcp:80,172.16.0.0/12']);
  } finally {
    await topo.destroy();
  }
});

test('ipvs mode: the KUBE-IPVS-OUT-FILTER rule needs the ipvs match, which this kernel lacks; the rest of the payload loads', async () => {
  const topo = new Topology(runPrefix('kpiv'));
  try {
    const ns = await topo.netns('node');
    // The node is outside the source ranges, so upstream drops its own connections to the LB VIP with -m ipvs.
    const r = renderIpvs(mixedNode({ nodeInRanges: false }), { family: 'IPv4', nodeName: NODE, nodeIPs: NODE_IPS });
    const outFilter = r.filterRules.filter((l) => l.startsWith('-A KUBE-IPVS-OUT-FILTER'));
    assert.deepEqual(outFilter, ['-A KUBE-IPVS-OUT-FILTER -s 203.0.113.10 -m ipvs --vaddr 203.0.113.10 --vproto tcp --vport 80 -j DROP']);
    await ns.exec('ipset', ['restore'], { input: r.ipsetRestore });
    const res = await ns.exec('iptables-restore', ['--noflush'], { input: r.iptablesRestore, allowFail: true });
    assert.notEqual(res.code, 0, 'without xt_ipvs the payload is refused');
    assert.match(res.stderr, /ipvs|line/i);
    const without = r.iptablesRestore
      .split('\n')
      .filter((l) => !l.startsWith('-A KUBE-IPVS-OUT-FILTER'))
      .join('\n');
    await ns.exec('iptables-restore', ['--noflush'], { input: without });
  } finally {
    await topo.destroy();
  }
});
