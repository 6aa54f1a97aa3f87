// Every match the simulator models, each on a small hand-written dump: a rule
// in nat PREROUTING that DNATs when the match holds, so the outcome shows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpsetSave } from '../../src/netfilter/ipset.js';
import { brief, run, only, round } from './netfilter-helpers.js';
import type { TraceRequest } from '../../src/netfilter/simulate.js';

/** Whether the match (rule options) holds for the packet: DNAT to 10.9.9.9:1 when it does. */
function holds(opts: string, req: Partial<TraceRequest> & { dst?: string } = {}, extra: Record<string, string[]> = {}): boolean | '?' {
  const r = run(
    { ...extra, nat: [...(extra.nat ?? []), `-A PREROUTING ${opts} -j DNAT --to-destination 10.9.9.9`] },
    { dst: '10.0.0.1', dport: 80, src: '10.1.0.5', sport: 1234, from: 'eth1', ...req },
  );
  const o = r.outcomes;
  if (o.length === 2 && o.every((x) => x.uncertain)) return '?';
  return only(r).destination.startsWith('10.9.9.9');
}

test('-s/-d with CIDRs and negation, -p', () => {
  assert.equal(holds('-s 10.1.0.0/16'), true);
  assert.equal(holds('-s 10.2.0.0/16'), false);
  assert.equal(holds('! -s 10.2.0.0/16'), true);
  assert.equal(holds('-d 10.0.0.1/32'), true);
  assert.equal(holds('-d 10.0.0.1'), true);
  assert.equal(holds('! -d 10.0.0.0/8'), false);
  assert.equal(holds('-s 0.0.0.0/0'), true);
  assert.equal(holds('-p tcp'), true);
  assert.equal(holds('-p udp'), false);
  assert.equal(holds('-p udp', { proto: 'udp' }), true);
  assert.equal(holds('! -p tcp'), false);
  assert.equal(holds('-p 6'), true);
});

test('--sport/--dport with ranges, multiport, iprange', () => {
  assert.equal(holds('-p tcp -m tcp --dport 80'), true);
  assert.equal(holds('-p tcp -m tcp --dport 81'), false);
  assert.equal(holds('-p tcp -m tcp --dport 70:90'), true);
  assert.equal(holds('-p tcp -m tcp ! --dport 70:90'), false);
  assert.equal(holds('-p tcp -m tcp --sport 1234'), true);
  assert.equal(holds('-p tcp -m tcp --sport 1:1000'), false);
  assert.equal(holds('-p tcp -m multiport --dports 443,80'), true);
  assert.equal(holds('-p tcp -m multiport --dports 443,8000:8080'), false);
  assert.equal(holds('-p tcp -m multiport --ports 1234'), true);
  assert.equal(holds('-p udp -m udp --dport 80', { proto: 'udp' }), true);
  assert.equal(holds('-m iprange --src-range 10.1.0.1-10.1.0.9'), true);
  assert.equal(holds('-m iprange --src-range 10.1.0.6-10.1.0.9'), false);
  assert.equal(holds('-m iprange ! --dst-range 10.0.0.0-10.0.0.0'), true);
});

test('-i/-o with + wildcards; -o in PREROUTING never matches', () => {
  assert.equal(holds('-i eth1'), true);
  assert.equal(holds('-i eth+'), true);
  assert.equal(holds('-i cni+'), false);
  assert.equal(holds('! -i eth0'), true);
  assert.equal(holds('-o eth1'), false);
  // -o after routing: FORWARD with a known route, and unknown without one.
  const fwd = (opts: string, routes: string[]) =>
    brief(run({ filter: ['policy FORWARD DROP', `-A FORWARD ${opts} -j ACCEPT`] }, { dst: '10.5.0.1', dport: 80, src: '10.1.0.5', from: 'eth1', routes }));
  assert.deepEqual(fwd('-o flannel+', ['10.5.0.0/16=flannel.1']), ['ACCEPT 10.5.0.1:80 1']);
  assert.deepEqual(fwd('-o eth0', ['10.5.0.0/16=flannel.1']), ['DROP 10.5.0.1:80 1']);
  assert.deepEqual(fwd('-o eth0', []), ['ACCEPT 10.5.0.1:80 ? 1', 'DROP 10.5.0.1:80 ? 1'], 'unknown interface: both ways, flagged');
});

test('addrtype from the node addresses', () => {
  assert.equal(holds('-m addrtype --dst-type LOCAL', { dst: '192.168.0.2' }), true);
  assert.equal(holds('-m addrtype --dst-type LOCAL'), false);
  assert.equal(holds('-m addrtype --dst-type UNICAST'), true);
  assert.equal(holds('-m addrtype ! --dst-type LOCAL'), true);
  assert.equal(holds('-m addrtype --src-type LOCAL', { src: '127.0.0.1' }), true);
  assert.equal(holds('-m addrtype --dst-type LOCAL', { dst: '127.0.0.53' }), true, '127/8 is all local');
  assert.equal(holds('-m addrtype --dst-type MULTICAST', { dst: '224.0.0.5' }), true);
  // No local addresses given and none inferable: uncertain, both followed.
  assert.equal(holds('-m addrtype --dst-type LOCAL', { localIps: [] }), '?');
  assert.equal(holds('-m addrtype --dst-type BLACKHOLE'), '?');
});

test('conntrack state and status, -m state', () => {
  assert.equal(holds('-m conntrack --ctstate NEW'), true);
  assert.equal(holds('-m state --state NEW'), true);
  assert.equal(holds('-m conntrack --ctstate RELATED,ESTABLISHED'), false);
  assert.equal(holds('-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT'), true);
  assert.equal(holds('-m conntrack --ctstatus CONFIRMED'), false);
  assert.equal(holds('-m conntrack --ctdir ORIGINAL'), true);
  assert.equal(holds('-m conntrack --ctorigdst 10.0.0.1'), true);
  assert.equal(holds('-m conntrack --ctorigdstport 80'), true);
  assert.equal(holds('-m conntrack --ctstatus ASSURED'), '?');
  // ctstate DNAT after the nat table rewrote the destination.
  const r = run(
    { nat: ['-A PREROUTING -p tcp -j DNAT --to-destination 10.5.0.1:8080'], filter: ['policy FORWARD DROP', '-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT'] },
    { dst: '10.0.0.1', dport: 80 },
  );
  assert.deepEqual(brief(r), ['ACCEPT 10.5.0.1:8080 1']);
});

test('mark and connmark', () => {
  const mangle = (rule: string) => ({ mangle: [rule] });
  assert.equal(holds('-m mark --mark 0x4000/0x4000', {}, mangle('-A PREROUTING -j MARK --set-xmark 0x4000/0x4000')), true);
  assert.equal(holds('-m mark --mark 0x4000/0x4000'), false);
  assert.equal(holds('-m mark ! --mark 0x4000/0x4000'), true);
  assert.equal(holds('-m mark --mark 0x1', {}, mangle('-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff')), true);
  assert.equal(holds('-m connmark --mark 0x7', {}, mangle('-A PREROUTING -j CONNMARK --set-xmark 0x7/0xffffffff')), true);
  assert.equal(holds('-m connmark --mark 0x7'), false);
});

test('comment and nfacct always match; fragment (-f) never; --syn on the first packet', () => {
  assert.equal(holds('-m comment --comment "anything at all"'), true);
  assert.equal(holds('-m nfacct --nfacct-name localhost_nps_accepted_pkts'), true);
  assert.equal(holds('-f'), false);
  assert.equal(holds('! -f'), true);
  assert.equal(holds('-p tcp -m tcp --syn'), true);
  assert.equal(holds('-p tcp -m tcp --tcp-flags SYN,ACK ACK'), false);
  assert.equal(holds('-p icmp -m icmp --icmp-type echo-request', { proto: 'icmp', dport: undefined }), true);
  assert.equal(holds('-p icmp -m icmp --icmp-type 0', { proto: 'icmp', dport: undefined }), false);
});

test('statistic random: exact branches; nth: long-run share', () => {
  const r = run({ nat: ['-A PREROUTING -m statistic --mode random --probability 0.25 -j DNAT --to-destination 10.9.9.9'] }, { dst: '10.0.0.1', dport: 80 });
  assert.deepEqual(brief(r), ['ACCEPT 10.9.9.9:80 0.25', 'ACCEPT 10.0.0.1:80 0.75']);
  const n = run({ nat: ['-A PREROUTING -m statistic --mode nth --every 4 --packet 0 -j DNAT --to-destination 10.9.9.9'] }, { dst: '10.0.0.1', dport: 80 });
  assert.deepEqual(brief(n), ['ACCEPT 10.9.9.9:80 0.25', 'ACCEPT 10.0.0.1:80 0.75']);
  assert.match(n.outcomes[0]!.notes.join(), /long-run share/);
  const neg = run({ nat: ['-A PREROUTING -m statistic --mode random ! --probability 0.25 -j DNAT --to-destination 10.9.9.9'] }, { dst: '10.0.0.1', dport: 80 });
  assert.equal(round(neg.outcomes[0]!.probability), 0.75);
});

test('recent: empty by default, seedable, --set adds, --remove removes', () => {
  const rule = '-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource';
  assert.equal(holds(rule), false);
  assert.equal(holds(rule, { recent: [['KUBE-SEP-A', '10.1.0.5']] }), true);
  assert.equal(holds(rule, { recent: [['KUBE-SEP-A', '10.1.0.6']] }), false);
  assert.equal(holds('-m recent --rcheck --name X --rdest', { recent: [['X', '10.0.0.1']] }), true);
  assert.equal(holds('-m recent --rcheck --name X --hitcount 3', { recent: [['X', '10.1.0.5']] }), '?');
  assert.equal(holds('-m recent --remove --name X', { recent: [['X', '10.1.0.5']] }), true);
  const set = run(
    { nat: ['-A PREROUTING -m recent --set --name S --rsource', '-A PREROUTING -m recent --rcheck --name S --rsource -j DNAT --to-destination 10.9.9.9'] },
    { dst: '10.0.0.1', dport: 80 },
  );
  assert.equal(only(set).destination, '10.9.9.9:80');
});

test('set: ipset save contents', () => {
  const ipsets = parseIpsetSave(
    [
      'create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536',
      'add KUBE-CLUSTER-IP 10.0.0.1,tcp:80',
      'create NETS hash:net family inet',
      'add NETS 10.1.0.0/16',
      'create PORTS bitmap:port range 0-65535',
      'add PORTS 1234',
      'create ALL list:set',
      'add ALL NETS',
    ].join('\n'),
  );
  assert.equal(holds('-m set --match-set KUBE-CLUSTER-IP dst,dst', { ipsets }), true);
  assert.equal(holds('-m set --match-set KUBE-CLUSTER-IP dst,dst', { ipsets, dport: 81 }), false);
  assert.equal(holds('-m set --match-set KUBE-CLUSTER-IP src,dst', { ipsets }), false);
  assert.equal(holds('-m set --match-set NETS src', { ipsets }), true);
  assert.equal(holds('-m set ! --match-set NETS src', { ipsets }), false);
  assert.equal(holds('-m set --match-set PORTS src', { ipsets }), true);
  assert.equal(holds('-m set --match-set ALL src', { ipsets }), true);
  assert.equal(holds('-m set --match-set NETS src'), '?', 'no ipset file: uncertain');
  assert.equal(holds('-m set --match-set MISSING src', { ipsets }), '?');
});

test('un-modelled matches: both branches followed and flagged with the rule and line', () => {
  const r = run({ nat: ['-A PREROUTING -m owner --uid-owner 0 -j DNAT --to-destination 10.9.9.9'] }, { dst: '10.0.0.1', dport: 80 });
  assert.deepEqual(brief(r), ['ACCEPT 10.9.9.9:80 ? 1', 'ACCEPT 10.0.0.1:80 ? 1']);
  const u = r.outcomes[0]!.uncertainties[0]!;
  assert.equal(u.line, 7);
  assert.match(u.reason, /un-modelled match: -m owner --uid-owner 0; assumed it matches/);
  assert.match(r.outcomes[1]!.uncertainties[0]!.reason, /assumed it does not match/);
  // A definite "no" in the same rule wins: nothing uncertain.
  const r2 = run({ nat: ['-A PREROUTING -p udp -m owner --uid-owner 0 -j DNAT --to-destination 10.9.9.9'] }, { dst: '10.0.0.1', dport: 80 });
  assert.deepEqual(brief(r2), ['ACCEPT 10.0.0.1:80 1']);
});
