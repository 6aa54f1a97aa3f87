// The tracer's IPVS model: ipvsadm dumps (save and listing) parsed, and the
// scheduler's choice on a rendered ipvs node — rr an equal split, sh the
// exact server for a source, lc from the listing's counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpvsadm, IpvsParseError, looksLikeIpvsadm } from '../../src/netfilter/ipvs-parse.js';
import { ipvsDecide, ipvsModel, ipvsLocalDelivery } from '../../src/netfilter/ipvs.js';
import { parseAddr } from '../../src/netfilter/addr.js';
import { createScheduler } from '../../src/dataplane/schedulers/index.js';
import { renderIpvs } from '../../src/dataplane/ipvs/render.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { ep, port, slice, state, svc } from '../fixtures/ipvs/build.js';

function node(scheduler = 'rr'): ClusterState {
  return state(
    [
      svc('default', 'web', (s) => {
        s.clusterIPs = ['10.96.0.10'];
        s.ports = [port('http', 'TCP', 80)];
      }),
      svc('default', 'sticky', (s) => {
        s.clusterIPs = ['10.96.0.20'];
        s.ports = [port('http', 'TCP', 80)];
        s.sessionAffinity = 'ClientIP';
        s.sessionAffinityTimeoutSeconds = 600;
      }),
    ],
    [
      slice('default', 'web', 1, 'IPv4', [ep('10.244.1.5', 'node-a'), ep('10.244.2.5', 'node-b'), ep('10.244.3.5', 'node-c')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      slice('default', 'sticky', 1, 'IPv4', [ep('10.244.1.9', 'node-a'), ep('10.244.2.9', 'node-b')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    ],
  );
}

function dump(scheduler: string): string {
  return renderIpvs(node(), { family: 'IPv4', nodeName: 'node-a', nodeIPs: ['192.168.1.10'], scheduler }).ipvsadmRestore;
}

const LISTING = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.10:80 lc
  -> 10.244.1.5:8080              Masq    1      4          10
  -> 10.244.2.5:8080              Masq    1      2          0
  -> 10.244.3.5:8080              Masq    1      2          1
UDP  10.96.0.53:53 rr persistent 10800
  -> 10.244.1.6:53                Masq    1      0          3
TCP  [fd00:96::10]:80 mh (mh-port)
  -> [fd00:244:1::5]:8080         Masq    1      0          0
FWM  100 wlc
`;

test('ipvsadm -Sn of a rendered node parses back to its virtual and real servers', () => {
  const t = parseIpvsadm(dump('rr'));
  assert.equal(t.format, 'save');
  assert.equal(t.services.length, 2);
  const web = t.services.find((s) => s.address === '10.96.0.10')!;
  assert.equal(web.proto, 'tcp');
  assert.equal(web.scheduler, 'rr');
  assert.deepEqual(web.dests.map((d) => `${d.address}:${d.port}/${d.forward}/${d.weight}`), ['10.244.1.5:8080/masq/1', '10.244.2.5:8080/masq/1', '10.244.3.5:8080/masq/1']);
  assert.equal(t.services.find((s) => s.address === '10.96.0.20')!.persistent, 600);
  assert.ok(looksLikeIpvsadm(dump('rr')) && looksLikeIpvsadm(LISTING) && !looksLikeIpvsadm('*nat\n:KUBE-SERVICES - [0:0]\n'));
});

test('ipvsadm -Ln listing: counters, persistence, scheduler flags, IPv6 and firewall-mark services', () => {
  const t = parseIpvsadm(LISTING);
  assert.equal(t.format, 'listing');
  assert.equal(t.services.length, 4);
  const lc = t.services[0]!;
  assert.deepEqual(lc.dests.map((d) => [d.activeConns, d.inactiveConns]), [[4, 10], [2, 0], [2, 1]]);
  assert.equal(t.services[1]!.persistent, 10800);
  assert.equal(t.services[1]!.proto, 'udp');
  assert.deepEqual(t.services[2]!.schedFlags, ['mh-port']);
  assert.equal(t.services[2]!.address, 'fd00:96::10');
  assert.equal(t.services[2]!.family, 6);
  assert.equal(t.services[3]!.fwmark, 100);
});

test('bad dumps are refused with the line and what is wrong', () => {
  assert.throws(() => parseIpvsadm('-A -t web.default:80 -s rr\n', 'ipvs.txt'), (e: unknown) => e instanceof IpvsParseError && /^ipvs\.txt:1: "web\.default" is not a numeric address \(dump with ipvsadm -n\)/.test((e as Error).message));
  assert.throws(() => parseIpvsadm('-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.2:80 -r 10.1.0.1:80 -m -w 1\n'), /line 2: real server for unknown service tcp 10\.0\.0\.2:80/);
  assert.throws(() => parseIpvsadm('hello\n'), /neither `ipvsadm -Sn` output/);
});

test('rr on a rendered node: an equal split of new connections over the three endpoints', () => {
  const m = ipvsModel(parseIpvsadm(dump('rr')));
  const d = m.decide({ proto: 'tcp', src: '10.244.1.20', sport: 40000, dst: '10.96.0.10', dport: 80 })!;
  assert.equal(d.kind, 'distribution');
  assert.deepEqual(
    d.choices.map((c) => [c.dest.address, c.probability]),
    [['10.244.1.5', 1 / 3], ['10.244.2.5', 1 / 3], ['10.244.3.5', 1 / 3]],
  );
  assert.match(d.notes.join('\n'), /round-robin position, which no dump shows/);
  assert.equal(m.decide({ proto: 'udp', src: '10.244.1.20', dst: '10.96.0.10', dport: 80 }), undefined, 'protocol must match');
});

test('sh on a rendered node: the exact server for a given source, the same as the kernel scheduler computes', () => {
  const t = parseIpvsadm(dump('sh'));
  const m = ipvsModel(t);
  const web = t.services.find((s) => s.address === '10.96.0.10')!;
  const servers = web.dests.map((x) => ({ key: `${x.address}:${x.port}`, ip: x.address, port: x.port, weight: x.weight, activeConns: 0, inactiveConns: 0 }));
  const seen = new Set<string>();
  for (const src of ['10.244.1.20', '10.244.2.33', '192.168.7.1', '203.0.113.9', '10.0.0.1', '172.16.5.4']) {
    const d = m.decide({ proto: 'tcp', src, sport: 40000, dst: '10.96.0.10', dport: 80 })!;
    assert.equal(d.kind, 'exact');
    assert.equal(d.choices.length, 1);
    const want = createScheduler('sh').schedule(servers, { srcIP: src })!;
    assert.equal(`${d.choices[0]!.dest.address}:${d.choices[0]!.dest.port}`, want.key, src);
    // Another source port, same server: sh keys on the address only.
    const again = m.decide({ proto: 'tcp', src, sport: 51234, dst: '10.96.0.10', dport: 80 })!;
    assert.equal(again.choices[0]!.dest.address, d.choices[0]!.dest.address);
    seen.add(d.choices[0]!.dest.address);
    assert.equal(d.orderDependent, true);
  }
  assert.ok(seen.size >= 2, 'different sources spread over servers');
});

test('lc reads the listing counters: the next connection goes to the least loaded, shares over a burst are given', () => {
  const t = parseIpvsadm(LISTING);
  const d = ipvsDecide(t.services[0]!, { proto: 'tcp', src: '10.1.1.1', dst: '10.96.0.10', dport: 80 });
  // overheads: 4*256+10, 2*256+0, 2*256+1 → the second server.
  assert.equal(d.next?.address, '10.244.2.5');
  assert.equal(d.kind, 'distribution');
  const total = d.choices.reduce((a, c) => a + c.probability, 0);
  assert.ok(Math.abs(total - 1) < 1e-9);
  // Idle counters (save format): equal shares for equal weights.
  const idle = ipvsDecide(parseIpvsadm(dump('lc')).services[1]!, { proto: 'tcp', src: '10.1.1.1', dst: '10.96.0.10', dport: 80 });
  assert.deepEqual(idle.choices.map((c) => c.probability), [1 / 3, 1 / 3, 1 / 3]);
});

test('persistence is noted; a service without real servers drops', () => {
  const m = ipvsModel(parseIpvsadm(dump('rr')));
  const d = m.decide({ proto: 'tcp', src: '10.244.1.20', dst: '10.96.0.20', dport: 80 })!;
  assert.match(d.notes[0]!, /^persistent 600s: IPVS keeps a template per client address/);
  const empty = ipvsModel(parseIpvsadm('-A -u 10.96.0.99:53 -s rr\n')).decide({ proto: 'udp', src: '10.1.1.1', dst: '10.96.0.99', dport: 53 })!;
  assert.equal(empty.kind, 'none');
  assert.match(empty.notes.join(' '), /no real servers: IPVS drops the packet/);
});

test('the local-delivery hook rewrites the destination per choice, and leaves non-IPVS addresses alone', () => {
  const hook = ipvsLocalDelivery(ipvsModel(parseIpvsadm(dump('rr'))));
  const pkt = { family: 4 as const, proto: 'tcp', src: parseAddr('10.244.1.20')!, dst: parseAddr('10.96.0.10')!, sport: 40000, dport: 80, iif: 'eth0', oif: null, mark: 0, tcpFlags: ['SYN'] };
  const choices = hook(pkt)!;
  assert.equal(choices.length, 3);
  assert.equal(choices[0]!.dst.text, '10.244.1.5');
  assert.equal(choices[0]!.dport, 8080);
  assert.match(choices[0]!.note, /^IPVS TCP 10\.96\.0\.10:80 rr → 10\.244\.1\.5:8080 \(Masq, weight 1\) \(33\.3% of new connections\)$/);
  assert.equal(hook({ ...pkt, dst: parseAddr('192.168.1.10')!, dport: 22 }), null);
});
