// The rendered payloads load into a real kernel: iptables-restore and
// ip6tables-restore (with upstream's flags) in a fresh network namespace,
// read back with iptables-save / ip6tables-save, re-applied idempotently, and
// stale chains deleted with -X.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix, type Netns } from '../../src/lab/netns.js';
import { renderIptables, type RenderOptions } from '../../src/dataplane/iptables/render.js';
import { restorePayload } from '../../src/dataplane/iptables/payload.js';
import type { IptablesRuleset } from '../../src/dataplane/iptables/model.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { ep, makeService, makeSlice, state, tcpPort } from '../unit/iptables-helpers.js';
import { parseTables } from '../unit/iptables-flow.js';

function cluster(withSvc3 = true): ClusterState {
  const services = [
    makeService('ns1', 'svc1', (s) => {
      s.type = 'LoadBalancer';
      s.clusterIPs = ['172.30.0.41', 'fd00:172:30::41'];
      s.ipFamilies = ['IPv4', 'IPv6'];
      s.ports = [tcpPort('p80', 80, 30001)];
      s.loadBalancerIngress = [{ ip: '5.6.7.8' }, { ip: '2001:db8:1::8' }];
      s.loadBalancerSourceRanges = ['203.0.113.0/25', '192.168.0.0/24', '2001:db8:f::/48'];
      s.sessionAffinity = 'ClientIP';
    }),
    makeService('ns2', 'svc2', (s) => {
      s.type = 'LoadBalancer';
      s.externalTrafficPolicy = 'Local';
      s.healthCheckNodePort = 30000;
      s.clusterIPs = ['172.30.0.42'];
      s.externalIPs = ['192.168.99.22'];
      s.ports = [tcpPort('p80', 80, 30002)];
      s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
    }),
    makeService('ns4', 'svc4', (s) => {
      s.type = 'NodePort';
      s.externalTrafficPolicy = 'Local';
      s.internalTrafficPolicy = 'Local';
      s.clusterIPs = ['172.30.0.44'];
      s.ports = [tcpPort('', 8080, 30004)];
    }),
    makeService('ns5', 'nothing', (s) => {
      s.clusterIPs = ['172.30.0.45', 'fd00:172:30::45'];
      s.ipFamilies = ['IPv4', 'IPv6'];
      s.ports = [tcpPort('http', 80)];
    }),
  ];
  if (withSvc3) {
    services.push(
      makeService('ns3', 'svc3', (s) => {
        s.clusterIPs = ['172.30.0.43'];
        s.ports = [
          { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 },
          { name: 'dns-tcp', protocol: 'TCP', port: 53, targetPort: 53, nodePort: 0 },
          { name: 'sctp', protocol: 'SCTP', port: 99, targetPort: 99, nodePort: 0 },
        ];
      }),
    );
  }
  return state(services, [
    makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1'), ep('10.180.0.2', { nodeName: 'test-node' }), ep('10.180.0.3')], [{ name: 'p80', port: 80 }]),
    makeSlice('ns1', 'svc1', 2, [ep('fd00:10:180::1'), ep('fd00:10:180::2', { nodeName: 'test-node' })], [{ name: 'p80', port: 80 }], 'IPv6'),
    makeSlice('ns2', 'svc2', 1, [ep('10.180.1.1')], [{ name: 'p80', port: 80 }]),
    makeSlice('ns3', 'svc3', 1, [ep('10.180.2.1'), ep('10.180.2.2', { ready: false, serving: true, terminating: true })], [
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: 'dns-tcp', port: 53 },
      { name: 'sctp', port: 99, protocol: 'SCTP' },
    ]),
    makeSlice('ns4', 'svc4', 1, [ep('10.180.4.1', { nodeName: 'test-node' }), ep('10.180.4.2', { nodeName: 'other' })], [{ name: '', port: 8080 }]),
  ]);
}

const opts: RenderOptions = {
  nodeName: 'test-node',
  nodeIPs: ['192.168.0.2', '2001:db8::1'],
  clusterCIDRs: ['10.0.0.0/8', 'fd00:10::/64'],
  randomFully: true,
};

async function restore(ns: Netns, v6: boolean, payload: string): Promise<void> {
  // Upstream's invocation (pkg/util/iptables restoreInternal): wait for the xtables lock, keep other rules, keep counters.
  await ns.exec(v6 ? 'ip6tables-restore' : 'iptables-restore', ['-w', '5', '-W', '100000', '--noflush', '--counters'], { input: payload, timeoutMs: 30_000 });
}

async function save(ns: Netns, v6: boolean) {
  const r = await ns.exec(v6 ? 'ip6tables-save' : 'iptables-save', [], { timeoutMs: 30_000 });
  return parseTables(r.stdout);
}

/** Every chain of the ruleset exists with the same number of rules. */
function assertLoaded(saved: ReturnType<typeof parseTables>, rs: IptablesRuleset): number {
  let rules = 0;
  const expect = parseTables(restorePayload(rs));
  for (const [table, chains] of expect) {
    for (const [chain, list] of chains) {
      const got = saved.get(table)?.get(chain);
      assert.ok(got, `${rs.family} ${table} ${chain} missing after restore`);
      assert.equal(got.length, list.length, `${rs.family} ${table} ${chain}: rule count`);
      rules += list.length;
    }
  }
  return rules;
}

test('rendered IPv4 and IPv6 payloads load with iptables-restore / ip6tables-restore and read back', async () => {
  const topo = new Topology(runPrefix('kpipt'));
  try {
    const ns = await topo.netns('node');
    const [v4, v6] = renderIptables(cluster(), opts);
    assert.equal(v4!.family, 'IPv4');
    assert.equal(v6!.family, 'IPv6');
    await restore(ns, false, restorePayload(v4!));
    await restore(ns, true, restorePayload(v6!));

    // The jump rules from the built-in chains, as the agent ensures them.
    for (const [rs, bin] of [[v4!, 'iptables'], [v6!, 'ip6tables']] as const) {
      for (const j of rs.jumps) {
        // EnsureChain, then EnsureRule(Prepend).
        const target = j.args[j.args.length - 1]!;
        await ns.exec(bin, ['-w', '5', '-t', j.table, '-N', target], { allowFail: true });
        await ns.exec(bin, ['-w', '5', '-t', j.table, '-I', j.chain, ...j.args]);
      }
    }

    const s4 = await save(ns, false);
    const s6 = await save(ns, true);
    const n4 = assertLoaded(s4, v4!);
    const n6 = assertLoaded(s6, v6!);
    assert.ok(n4 > 60, `expected a realistic ruleset, got ${n4} IPv4 rules`);
    assert.ok(n6 > 15, `got ${n6} IPv6 rules`);

    const nat4 = [...s4.get('nat')!.values()].flat().map((r) => r.raw);
    // iptables-save prints the statistic module's probability with 11 decimals (as the older seeds show).
    assert.ok(nat4.some((r) => r.includes('--probability 0.33333333349')), 'statistic rule');
    assert.ok(nat4.some((r) => r.includes('-j DNAT --to-destination 10.180.0.1:80') && r.includes('--set --name KUBE-SEP-SXIVWICOYRO3J4NJ')), 'affinity DNAT');
    assert.ok(nat4.some((r) => r.includes('-j MASQUERADE --random-fully')));
    assert.ok(nat4.some((r) => r.includes('-p sctp') && r.includes('--to-destination 10.180.2.1:99')));
    assert.ok(nat4.some((r) => r.startsWith('-A PREROUTING') && r.includes('-j KUBE-SERVICES')));
    const filter4 = [...s4.get('filter')!.values()].flat().map((r) => r.raw);
    assert.ok(filter4.some((r) => r.includes('"ns5/nothing:http has no endpoints"') && r.includes('-j REJECT')));
    assert.ok(filter4.some((r) => r.includes('has no local endpoints') && r.includes('-j DROP')));
    const nat6 = [...s6.get('nat')!.values()].flat().map((r) => r.raw);
    assert.ok(nat6.some((r) => r.includes('--to-destination [fd00:10:180::1]:80')));
    assert.ok(nat6.some((r) => r.includes('! -d ::1/128')));

    // A second restore of the same payload replaces the chains: nothing doubles.
    await restore(ns, false, restorePayload(v4!));
    assert.equal(assertLoaded(await save(ns, false), v4!), n4);

    // A service goes away: its chains are flushed and deleted with -X.
    const [next] = renderIptables(cluster(false), { ...opts, families: ['IPv4'] });
    const live = new Set(next!.services.flatMap((s) => [...s.chains.keys()]));
    const stale = v4!.services.flatMap((s) => [...s.chains.keys()]).filter((c) => !live.has(c));
    assert.ok(stale.length >= 4, `stale chains: ${stale.join(' ')}`);
    await restore(ns, false, restorePayload(next!, { deleteNatChains: stale }));
    const after = await save(ns, false);
    for (const c of stale) assert.ok(!after.get('nat')!.has(c), `${c} still present`);
    assertLoaded(after, next!);
  } finally {
    await topo.destroy();
  }
});
