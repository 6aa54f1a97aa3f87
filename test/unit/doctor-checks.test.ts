import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSave } from '../../src/netfilter/parse-save.js';
import { ruleChecks } from '../../src/doctor/rules.js';
import { driftChecks } from '../../src/doctor/drift.js';
import { metricValue } from '../../src/doctor/agent.js';
import { makeReport, formatReport, exitCode } from '../../src/doctor/report.js';
import { dnatTargets, reachChecks } from '../../src/doctor/reach.js';
import { renderIptables } from '../../src/dataplane/iptables/render.js';
import { savedTables } from '../../src/dataplane/iptables/sync-save.js';
import { restorePayload } from '../../src/dataplane/iptables/payload.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { makeService } from '../../src/k8s/build.js';
import type { JumpRule } from '../../src/dataplane/iptables/model.js';

const jumps: JumpRule[] = [
  { table: 'nat', chain: 'PREROUTING', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'comment', '--comment', 'kubernetes forwarding rules', '-j', 'KUBE-FORWARD'] },
];

const healthy = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-PROXY-CANARY - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*mangle
:KUBE-PROXY-CANARY - [0:0]
COMMIT
*filter
:FORWARD DROP [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-CANARY - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
`;

function byId(results: ReturnType<typeof ruleChecks>, id: string) {
  const r = results.find((x) => x.id === id);
  assert.ok(r, id);
  return r!;
}

test('rule health: a whole ruleset passes', () => {
  const res = ruleChecks({ live: { backend: 'nft', family: 4, ruleset: parseSave(healthy) }, jumps });
  for (const r of res) assert.equal(r.status, 'ok', `${r.id}: ${r.evidence.join(' | ')}`);
});

test('rule health: a missing jump gets the exact insert command', () => {
  const text = healthy.replace('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n', '');
  const r = byId(ruleChecks({ live: { backend: 'nft', family: 4, ruleset: parseSave(text) }, jumps }), 'rules.jumps.ipv4');
  assert.equal(r.status, 'fail');
  assert.equal(r.fix, "iptables-nft -t nat -I PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES");
});

test('rule health: a foreign rule ahead of a jump is a warning', () => {
  const text = healthy.replace('-A PREROUTING -m comment', '-A PREROUTING -s 1.2.3.4/32 -j ACCEPT\n-A PREROUTING -m comment');
  assert.equal(byId(ruleChecks({ live: { backend: 'nft', family: 4, ruleset: parseSave(text) }, jumps }), 'rules.jumps.ipv4').status, 'warn');
});

test('rule health: FORWARD DROP without KUBE-FORWARD, split brain, no canary, firewall daemon', () => {
  const text = healthy
    .replace('-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD\n', '-A FORWARD -j ufw-before-forward\n')
    .replace(':KUBE-FORWARD - [0:0]', ':KUBE-FORWARD - [0:0]\n:ufw-before-forward - [0:0]')
    .replace('*mangle\n:KUBE-PROXY-CANARY - [0:0]\n', '*mangle\n');
  const other = parseSave('*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n');
  const res = ruleChecks({ live: { backend: 'nft', family: 4, ruleset: parseSave(text) }, other: { backend: 'legacy', family: 4, ruleset: other }, jumps });
  assert.equal(byId(res, 'rules.forward_policy.ipv4').status, 'fail');
  assert.equal(byId(res, 'rules.forward_policy.ipv4').fix, 'iptables-nft -P FORWARD ACCEPT');
  assert.equal(byId(res, 'rules.backends.ipv4').status, 'fail');
  assert.equal(byId(res, 'rules.backends.ipv4').fix, 'kproxy run --cleanup --iptables-backend legacy');
  assert.equal(byId(res, 'rules.canary.ipv4').status, 'warn');
  assert.equal(byId(res, 'rules.firewall_daemon.ipv4').status, 'warn');
});

const state: ClusterState = {
  services: [
    makeService('default', 'web', {
      clusterIPs: ['10.96.0.50'],
      ipFamilies: ['IPv4'],
      ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }],
      selector: undefined,
    }),
  ],
  endpointSlices: [
    {
      meta: { namespace: 'default', name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' }, annotations: {}, deleting: false },
      serviceName: 'web',
      addressType: 'IPv4',
      ports: [{ name: '', port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.244.1.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n1' },
        { addresses: ['10.244.2.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n2' },
      ],
    },
  ],
  nodes: [
    { meta: { namespace: '', name: 'n2', labels: {}, annotations: {}, deleting: false }, addresses: [{ type: 'InternalIP', address: '192.168.56.12' }], podCIDRs: ['10.244.2.0/24'], taints: [] },
  ],
  pods: [],
};

test('drift: matching rules are ok, a missing endpoint chain and a stale one are named', () => {
  const [rs] = renderIptables(state, { nodeName: 'n1', nodeIPs: ['192.168.56.11'], clusterCIDRs: ['10.244.0.0/16'] });
  const payload = restorePayload(rs!);
  const live = savedTables(payload).nat;
  assert.equal(driftChecks(rs!, live)[0]!.status, 'ok');

  const sep = [...rs!.services[0]!.chains.keys()].find((c) => c.startsWith('KUBE-SEP-'))!;
  const broken = new Map(live);
  broken.delete(sep);
  broken.set('KUBE-SEP-STALESTALESTALE', ['-A KUBE-SEP-STALESTALESTALE -m comment --comment default/old -m tcp -p tcp -j DNAT --to-destination 10.244.1.9:80']);
  const [d] = driftChecks(rs!, broken);
  assert.equal(d!.status, 'fail');
  const ev = d!.evidence.join('\n');
  assert.match(ev, /service default\/web:/);
  assert.match(ev, new RegExp(`chain ${sep} is missing`));
  assert.match(ev, /stale chain KUBE-SEP-STALESTALESTALE \(default\/old\), referenced by no rule/);
  assert.match(d!.fix!, /iptables -t nat -F KUBE-SEP-STALESTALESTALE && iptables -t nat -X KUBE-SEP-STALESTALESTALE/);
});

test('reachability: unroutable destinations get the host-gw route of their node', async () => {
  const [rs] = renderIptables(state, { nodeName: 'n1', nodeIPs: ['192.168.56.11'], clusterCIDRs: ['10.244.0.0/16'] });
  const live = parseSave(restorePayload(rs!));
  const targets = dnatTargets(live);
  assert.deepEqual(targets.map((t) => `${t.ip}:${t.port} ${t.service}`).sort(), ['10.244.1.5:8080 default/web', '10.244.2.5:8080 default/web']);
  const res = await reachChecks({
    targets,
    state,
    localIPs: ['192.168.56.11'],
    clusterCIDRs: [],
    route: async (ip) => (ip.startsWith('10.244.2.') ? { ok: false, text: 'RTNETLINK answers: Network is unreachable' } : { ok: true, text: `${ip} dev cni0`, dev: 'cni0' }),
  });
  const routes = res.find((r) => r.id === 'reach.routes')!;
  assert.equal(routes.status, 'fail');
  assert.equal(routes.fix, 'ip route add 10.244.2.0/24 via 192.168.56.12');
  // 10.244.1.5 is in no known pod CIDR (only n2's is known, and no --cluster-cidr): flagged.
  assert.equal(res.find((r) => r.id === 'reach.addresses')!.status, 'warn');
});

test('metrics text is read the way Prometheus writes it', () => {
  const text = '# HELP x\nkubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv4"} 2\nkubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv6"} 1\nother 5\n';
  assert.equal(metricValue(text, 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total'), 3);
  assert.equal(metricValue(text, 'missing'), undefined);
});

test('the report puts problems first and exits non-zero on a failure', () => {
  const r = makeReport('n1', [
    { id: 'a', title: 'A', status: 'ok', evidence: ['fine'] },
    { id: 'b', title: 'B', status: 'fail', evidence: ['broken'], fix: 'do it' },
    { id: 'c', title: 'C', status: 'warn', evidence: ['meh'] },
  ]);
  assert.deepEqual(r.checks.map((c) => c.id), ['b', 'c', 'a']);
  assert.deepEqual(r.summary, { fail: 1, error: 0, warn: 1, ok: 1, skip: 0 });
  assert.equal(exitCode(r), 1);
  const text = formatReport(r);
  assert.match(text, /^kproxy doctor on n1: 1 failed, 1 warning, 0 could not run, 1 ok\n/);
  assert.match(text, /FAIL  B \[b\]\n      broken\n      fix: do it\n/);
  assert.equal(exitCode(makeReport('n1', [{ id: 'a', title: 'A', status: 'warn', evidence: [] }])), 0);
});
