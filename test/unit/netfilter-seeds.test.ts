// The five seed articles' dumps (test/fixtures/seeds/), traced to the outcomes
// the articles describe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadRuleset } from '../../src/netfilter/index.js';
import { trace, type TraceRequest } from '../../src/netfilter/simulate.js';
import { formatText, formatMermaid, formatJson } from '../../src/netfilter/format.js';
import { brief, round } from './netfilter-helpers.js';

const FIX = new URL('../../../test/fixtures/seeds/', import.meta.url);
const load = (name: string) => loadRuleset(readFileSync(new URL(name, FIX), 'utf8'), { source: name });
const t = (name: string, req: TraceRequest) => trace(load(name), req);
const THIRD = 0.333333;

test('seed 004: external → NodePort 32239 of pod-check: three pods at ~1/3 each, all masqueraded', () => {
  const r = t('004-pod-check.save', { dst: '192.168.1.11', dport: 32239, localIps: ['192.168.1.11'] });
  assert.deepEqual(brief(r), [
    `ACCEPT 10.244.169.176:80 masq ${THIRD}`,
    `ACCEPT 10.244.169.177:80 masq ${THIRD}`,
    `ACCEPT 10.244.169.191:80 masq ${THIRD}`,
  ]);
  // 11-decimal probabilities: 0.33333333349, then 0.5 of the rest.
  assert.equal(r.outcomes[0]!.probability, 0.33333333349);
  assert.ok(Math.abs(r.outcomes.reduce((s, o) => s + o.probability, 0) - 1) < 1e-12);
  for (const o of r.outcomes) assert.equal(o.source, '192.168.1.11:40000');
  // The path names KUBE-SVC-A26F6BALGETXAGKG's statistic rules by line.
  const text = formatText(r);
  assert.match(text, /nat\/KUBE-SVC-A26F6BALGETXAGKG:47 .*--probability 0.33333333349 -j KUBE-SEP-MIPE7TVXCPBIRR5B {2}⇒ jump KUBE-SEP-MIPE7TVXCPBIRR5B/);
  assert.match(formatMermaid(r), /nat_KUBE_SVC_A26F6BALGETXAGKG -->\|p=0.333333\| nat_KUBE_SEP_MIPE7TVXCPBIRR5B/);
  JSON.parse(formatJson(r));
});

test('seed 004: pod → ClusterIP 10.108.6.217:80: no masquerade (no KUBE-MARK-MASQ rule for pod-check cluster IP); nginx-nodeport masquerades non-pod sources', () => {
  const r = t('004-pod-check.save', { dst: '10.108.6.217', dport: 80, src: '10.244.169.150', from: 'cali1234', localIps: ['192.168.1.11'] });
  assert.deepEqual(brief(r), [`ACCEPT 10.244.169.176:80 ${THIRD}`, `ACCEPT 10.244.169.177:80 ${THIRD}`, `ACCEPT 10.244.169.191:80 ${THIRD}`]);
  const node = t('004-pod-check.save', { dst: '10.103.12.8', dport: 80, from: 'local', localIps: ['192.168.1.11'] });
  assert.deepEqual(brief(node), ['ACCEPT 10.244.169.140:80 masq 1']);
  // Hairpin: the endpoint itself calling its service is masqueraded by KUBE-SEP's -s rule.
  const hair = t('004-pod-check.save', { dst: '10.103.12.8', dport: 80, src: '10.244.169.140', from: 'cali9', localIps: ['192.168.1.11'] });
  assert.deepEqual(brief(hair), ['ACCEPT 10.244.169.140:80 masq 1']);
});

test('seed 001: NodePort 30001 with three replicas (11-decimal probabilities), ClusterIP from a pod and from outside the pod CIDR', () => {
  // The article does not give k8s-n-1's address; 192.168.100.11 stands in.
  const local = ['192.168.100.11@eth0', '10.244.1.1@cni0', '10.244.1.0@flannel.1'];
  const routes = ['10.244.1.0/24=cni0', '10.244.0.0/16=flannel.1'];
  const np = t('001-flannel-3-replicas.save', { dst: '192.168.100.11', dport: 30001, localIps: local, routes });
  assert.deepEqual(brief(np), [`ACCEPT 10.244.1.6:8080 masq ${THIRD}`, `ACCEPT 10.244.1.7:8080 masq ${THIRD}`, `ACCEPT 10.244.2.2:8080 masq ${THIRD}`]);
  // Local pods go out cni0, the remote one over flannel.1, and MASQUERADE takes that interface's address.
  assert.deepEqual(np.outcomes.map((o) => `${o.outInterface} ${o.source}`), ['cni0 10.244.1.1:40000', 'cni0 10.244.1.1:40000', 'flannel.1 10.244.1.0:40000']);
  const pod = t('001-flannel-3-replicas.save', { dst: '10.96.103.220', dport: 4000, src: '10.244.1.3', from: 'cni0', localIps: local, routes });
  assert.deepEqual(brief(pod), [`ACCEPT 10.244.1.6:8080 ${THIRD}`, `ACCEPT 10.244.1.7:8080 ${THIRD}`, `ACCEPT 10.244.2.2:8080 ${THIRD}`]);
  const outside = t('001-flannel-3-replicas.save', { dst: '10.96.103.220', dport: 4000, src: '172.16.0.9', from: 'eth0', localIps: local, routes });
  assert.ok(outside.outcomes.every((o) => o.masquerade), 'sources outside 10.244.0.0/16 are masqueraded (! -s 10.244.0.0/16 → KUBE-MARK-MASQ)');
  const self = t('001-flannel-3-replicas.save', { dst: '10.96.103.220', dport: 4000, src: '10.244.1.7', from: 'cni0', localIps: local, routes });
  assert.deepEqual(brief(self), [`ACCEPT 10.244.1.6:8080 ${THIRD}`, `ACCEPT 10.244.1.7:8080 masq ${THIRD}`, `ACCEPT 10.244.2.2:8080 ${THIRD}`]);
  // The filter table's KUBE-SERVICES (empty) is consulted for new connections only.
  assert.ok(pod.outcomes[0]!.path.some((s) => s.table === 'filter' && s.chain === 'FORWARD' && s.effect === 'jump KUBE-SERVICES'));
});

test('seed 000: the flannel NodePort walk-through (listing format, -v): 50/50, both masqueraded to the outgoing interface', () => {
  const rs = load('000-nodeport-flannel.listing.txt');
  assert.deepEqual([...rs.tables.keys()], ['nat'], 'the table comes from the pasted "iptables -nL -t nat -v"');
  const local = ['172.16.199.18@eth0', '10.2.39.1@docker0', '10.2.39.0@flannel.1'];
  const routes = ['10.2.39.0/24=docker0', '10.2.0.0/16=flannel.1'];
  const r = trace(rs, { dst: '172.16.199.18', dport: 30780, localIps: local, routes });
  assert.deepEqual(brief(r), ['ACCEPT 10.2.39.3:80 masq 0.5', 'ACCEPT 10.2.4.2:80 masq 0.5']);
  // Step 5-1: to the other node over flannel, SNAT to flannel.1's address (step 7).
  assert.equal(r.outcomes[1]!.source, '10.2.39.0:40000');
  assert.equal(r.outcomes[0]!.source, '10.2.39.1:40000');
  // The article's numbered steps: KUBE-SERVICES (1) → KUBE-NODEPORTS (2) → MARK-MASQ + SVC (3) → SEP (4) → DNAT (5) → KUBE-POSTROUTING MASQUERADE (6, 7).
  const chains = r.outcomes[1]!.path.filter((s) => s.kind === 'rule').map((s) => s.chain);
  assert.deepEqual(chains, ['PREROUTING', 'KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS', 'KUBE-SVC-2RMP45C4XWDG5BGC', 'KUBE-SEP-YXWG4KEJCDIRMCO5', 'POSTROUTING', 'KUBE-POSTROUTING']);
});

test('seed 000: session affinity (recent) for default/kubernetes:https, seeded or not', () => {
  const rs = load('000-nodeport-flannel.listing.txt');
  // The apiserver 172.16.199.17 is reached via eth0, so Docker's own POSTROUTING rule
  // (-s 10.2.39.0/24 ! -o docker0 -j MASQUERADE) masquerades the pod's traffic.
  const req: TraceRequest = { dst: '169.169.0.1', dport: 443, src: '10.2.39.5', from: 'docker0', localIps: ['172.16.199.18@eth0'], routes: ['172.16.199.0/24=eth0'] };
  const fresh = trace(rs, req);
  const seeded = trace(rs, { ...req, recent: [['KUBE-SEP-X7YOSBI66WAQ7F6X', '10.2.39.5']] });
  assert.deepEqual(brief(fresh), ['ACCEPT 172.16.199.17:6443 masq 1']);
  assert.deepEqual(brief(seeded), ['ACCEPT 172.16.199.17:6443 masq 1']);
  assert.ok(fresh.outcomes[0]!.path.some((s) => s.kind === 'rule' && s.chain === 'POSTROUTING' && s.rule.startsWith('62 4323 MASQUERADE')));
  const used = (x: typeof fresh) => x.outcomes[0]!.path.filter((s) => s.chain === 'KUBE-SVC-NPX46M4PTMTKRN6Y' && s.kind === 'rule').map((s) => s.line);
  assert.notDeepEqual(used(fresh), used(seeded), 'the affinity rule is taken only when the client is in the recent list');
});

test('seed 003 (listing without -n): the node curls the ClusterIP: 1/3 each, masqueraded to eth2 as the conntrack entry shows', () => {
  const r = t('003-calico-clusterip.listing.txt', {
    dst: '192.44.140.73',
    dport: 80,
    from: 'local',
    src: '10.65.196.41',
    sport: 33468,
    localIps: ['10.65.196.41', '10.10.10.16@eth2'],
    routes: ['192.33.0.0/16=eth2'],
    reply: true,
  });
  assert.deepEqual(brief(r), [`ACCEPT 192.33.206.93:80 masq ${THIRD}`, `ACCEPT 192.33.229.12:80 masq ${THIRD}`, `ACCEPT 192.33.73.139:80 masq ${THIRD}`]);
  // The article: "tcp 6 107 TIME_WAIT src=10.65.196.41 dst=192.44.140.73 sport=33468 dport=80 src=192.33.229.12 dst=10.10.10.16 sport=80 dport=18623"
  // (random-fully picked 18623; the tracer keeps the original port and says so).
  assert.equal(r.outcomes[1]!.conntrack, 'tcp src=10.65.196.41 dst=192.44.140.73 sport=33468 dport=80 src=192.33.229.12 dst=10.10.10.16 sport=80 dport=33468');
  assert.match(r.outcomes[1]!.notes.join(), /random-fully/);
  const reply = r.outcomes[1]!.reply![0]!;
  assert.equal(reply.source, '192.44.140.73:80');
  assert.equal(reply.destination, '10.65.196.41:33468');
});

test('seed 003: a pod calling the service is not masqueraded, but reaches the missing cali-POSTROUTING (flagged); the pod calling itself is SNATed to the node', () => {
  const base = { dst: '192.44.140.73', dport: 80, localIps: ['10.65.196.41'], routes: ['192.33.0.0/16=eth2'] };
  const pod = t('003-calico-clusterip.listing.txt', { ...base, src: '192.33.73.172', from: 'cali0' });
  assert.equal(pod.outcomes.length, 3);
  for (const o of pod.outcomes) {
    assert.equal(o.masquerade, false);
    assert.equal(o.uncertain, true);
    assert.match(o.uncertainties[0]!.reason, /chain cali-POSTROUTING is not in the dump/);
  }
  const self = t('003-calico-clusterip.listing.txt', { ...base, src: '192.33.73.139', from: 'cali1', localIps: ['10.65.196.41@eth0'], routes: [] });
  const mine = self.outcomes.find((o) => o.destination === '192.33.73.139:80')!;
  assert.equal(mine.masquerade, true);
  assert.equal(round(mine.probability), THIRD);
  assert.equal(mine.source, '10.65.196.41:40000', 'the article: "ClientIP: 10.65.196.41" when the pod reached itself');
});

test('seed 002: the NAT router: port forward with SNAT, FORWARD policy DROP, and the reply', () => {
  // Node addresses inferred from the SNAT rules (--to-source 60.1.1.1, 10.1.1.254).
  const pf = t('002-nat-router.save', { dst: '60.1.1.1', dport: 80, src: '8.8.8.8', from: 'eth1', routes: ['10.1.1.0/24=eth0', '0.0.0.0/0=eth1'], reply: true });
  assert.equal(pf.localAddresses.source, 'inferred');
  assert.deepEqual(brief(pf), ['ACCEPT 10.1.1.1:80 snat=10.1.1.254:40000 1']);
  assert.equal(pf.outcomes[0]!.reply![0]!.source, '60.1.1.1:80');
  const allowed = t('002-nat-router.save', { dst: '1.1.1.1', dport: 443, src: '10.1.1.9', from: 'eth0', routes: ['0.0.0.0/0=eth1'] });
  assert.deepEqual(brief(allowed), ['ACCEPT 1.1.1.1:443 snat=60.1.1.1:40000 1']);
  const denied = t('002-nat-router.save', { dst: '1.1.1.1', dport: 443, src: '10.1.1.7', from: 'eth0' });
  assert.deepEqual(brief(denied), ['DROP 1.1.1.1:443 1']);
  const three = t('002-nat-router.save', { dst: '3.3.3.3', dport: 443, src: '10.1.1.7', from: 'eth0' });
  assert.equal(three.outcomes[0]!.verdict, 'ACCEPT');
  const lo = t('002-localhost-8080.save', { dst: '192.168.0.10', dport: 80, localIps: ['192.168.0.10'] });
  assert.deepEqual(brief(lo), ['ACCEPT 127.0.0.1:8080 1']);
  assert.equal(lo.outcomes[0]!.delivery, 'local');
  const nginx = t('002-nginx-3-replicas.save', { dst: '10.0.14.162', dport: 80, src: '10.173.32.20', from: 'docker0', localIps: ['10.0.0.5'] });
  assert.deepEqual(
    nginx.outcomes.map((o) => `${o.destination} ${round(o.probability)}`),
    ['10.173.32.10:80 0.33333', '10.173.32.11:80 0.333335', '10.173.32.8:80 0.333335'],
  );
});
