// The pure halves of applying ipvs mode: the ipvsadm-restore diff against
// `ipvsadm -Sn`, the ipset diff against `ipset save`, and kube-ipvs0's addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressDiff, connCountsFromListing, jumpsMissingFromSave, ipsetSyncScript, ipvsadmSyncScript, readIpvsadmSave } from '../../src/dataplane/ipvs/apply.js';
import { renderIpvs } from '../../src/dataplane/ipvs/render.js';
import { mixedNode, NODE, NODE_IPS } from '../fixtures/ipvs/scenario.js';

const r = renderIpvs(mixedNode(), { family: 'IPv4', nodeName: NODE, nodeIPs: NODE_IPS });

test('ipvsadm sync from an empty table is the full restore input', () => {
  assert.equal(ipvsadmSyncScript(r.virtualServers, '', 'IPv4'), r.ipvsadmRestore);
});

test('ipvsadm sync of an up-to-date table is empty; reading -Sn output tolerates spacing', () => {
  assert.equal(ipvsadmSyncScript(r.virtualServers, r.ipvsadmRestore.replace(/ -w /g, '  -w '), 'IPv4'), '');
  assert.equal(readIpvsadmSave(r.ipvsadmRestore).size, r.virtualServers.length);
});

test('ipvsadm sync edits changed services, deletes stale ones and stale destinations, and leaves the other family alone', () => {
  const current = [
    '-A -t 10.96.0.10:80 -s wrr', // scheduler changed → -E
    '-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 1',
    '-a -t 10.96.0.10:80 -r 10.244.9.9:8080 -m -w 1', // stale destination
    '-a -t 10.96.0.10:80 -r 10.244.2.5:8080 -m -w 0', // quiesced, weight back to 1 → -e
    '-A -t 10.96.0.99:443 -s rr', // stale service
    '-A -t [fd00::1]:80 -s rr', // IPv6: not ours to delete
  ].join('\n');
  const script = ipvsadmSyncScript(r.virtualServers, current, 'IPv4').split('\n');
  assert.ok(script.includes('-E -t 10.96.0.10:80 -s rr'));
  assert.ok(script.includes('-e -t 10.96.0.10:80 -r 10.244.2.5:8080 -m -w 1'));
  assert.ok(script.includes('-d -t 10.96.0.10:80 -r 10.244.9.9:8080'));
  assert.ok(script.includes('-D -t 10.96.0.99:443'));
  assert.ok(!script.some((l) => l.includes('fd00::1')));
  assert.ok(!script.includes('-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 1'));
});

test('ipset sync creates every set and only adds/deletes the difference', () => {
  const saved = ['create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1', 'add KUBE-CLUSTER-IP 10.96.0.10,tcp:80', 'add KUBE-CLUSTER-IP 10.0.0.1,tcp:443'].join('\n');
  const lines = ipsetSyncScript(r.ipsets, saved).trimEnd().split('\n');
  assert.equal(lines.filter((l) => l.startsWith('create ')).length, 17);
  assert.ok(lines.includes('del KUBE-CLUSTER-IP 10.0.0.1,tcp:443'));
  assert.ok(!lines.includes('add KUBE-CLUSTER-IP 10.96.0.10,tcp:80 -exist'));
  assert.ok(lines.includes('add KUBE-CLUSTER-IP 10.96.0.53,udp:53 -exist'));
});

test('kube-ipvs0 address diff', () => {
  assert.deepEqual(addressDiff(['10.0.0.1', '10.0.0.2'], ['10.0.0.2', '10.0.0.3']), { add: ['10.0.0.1'], del: ['10.0.0.3'] });
});

test('stale virtual servers are deleted, except inside --ipvs-exclude-cidrs (TestCleanLegacyService)', () => {
  const current = ['-A -u 1.1.1.1:53 -s rr', '-A -u 2.2.2.2:54 -s rr', '-A -u 3.3.3.3:55 -s rr', '-A -u 4.4.4.4:56 -s rr', '-A -u 5.5.5.5:57 -s rr', '-A -u 6.6.6.6:58 -s rr'].join('\n');
  const active = renderIpvs(
    { services: [], endpointSlices: [], nodes: [], pods: [] },
    { family: 'IPv4', nodeName: NODE, nodeIPs: NODE_IPS },
  ).virtualServers;
  const keep = [
    { protocol: 'UDP' as const, address: '1.1.1.1', port: 53, scheduler: 'rr', schedFlags: [], kind: 'ClusterIP' as const, service: 'a/a', bound: true, realServers: [] },
    { protocol: 'UDP' as const, address: '2.2.2.2', port: 54, scheduler: 'rr', schedFlags: [], kind: 'ClusterIP' as const, service: 'b/b', bound: true, realServers: [] },
  ];
  const script = ipvsadmSyncScript([...active, ...keep], current, 'IPv4', ['3.3.3.0/24', '4.4.4.0/24']).trimEnd().split('\n');
  assert.deepEqual(script, ['-D -u 5.5.5.5:57', '-D -u 6.6.6.6:58']);
});

test('graceful termination: a removed TCP real server with open connections is quiesced, not deleted; UDP goes at once', () => {
  const listing = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.10:80 rr
  -> 10.244.1.5:8080              Masq    1      0          0
  -> 10.244.9.9:8080              Masq    1      3          1
  -> 10.244.9.8:8080              Masq    1      0          0
UDP  10.96.0.53:53 rr persistent 10800
  -> 10.244.1.6:53                Masq    1      0          0
  -> 10.244.9.7:53                Masq    1      0          5
`;
  const save = [
    '-A -t 10.96.0.10:80 -s rr',
    '-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 1',
    '-a -t 10.96.0.10:80 -r 10.244.9.9:8080 -m -w 1',
    '-a -t 10.96.0.10:80 -r 10.244.9.8:8080 -m -w 1',
    '-A -u 10.96.0.53:53 -s rr -p 10800',
    '-a -u 10.96.0.53:53 -r 10.244.1.6:53 -m -w 1',
    '-a -u 10.96.0.53:53 -r 10.244.9.7:53 -m -w 1',
  ].join('\n');
  const lines = ipvsadmSyncScript(r.virtualServers, save, 'IPv4', [], connCountsFromListing(listing)).split('\n');
  assert.ok(lines.includes('-e -t 10.96.0.10:80 -r 10.244.9.9:8080 -m -w 0'), 'busy TCP server quiesced');
  assert.ok(lines.includes('-d -t 10.96.0.10:80 -r 10.244.9.8:8080'), 'idle TCP server deleted');
  assert.ok(lines.includes('-d -u 10.96.0.53:53 -r 10.244.9.7:53'), 'UDP deleted despite connections');
  // Once quiesced, a later sync does not repeat the edit while connections remain.
  const again = ipvsadmSyncScript(r.virtualServers, save.replace('10.244.9.9:8080 -m -w 1', '10.244.9.9:8080 -m -w 0'), 'IPv4', [], connCountsFromListing(listing));
  assert.ok(!again.includes('10.244.9.9'));
});

test('jump rules: one iptables-save dump tells which jumps are missing (upstream EnsureRule, without a call per rule)', () => {
  const jumps = [
    { table: 'nat' as const, chain: 'OUTPUT', args: ['-m', 'comment', '--comment', '"kubernetes service portals"', '-j', 'KUBE-SERVICES'] },
    { table: 'nat' as const, chain: 'PREROUTING', args: ['-m', 'comment', '--comment', '"kubernetes service portals"', '-j', 'KUBE-SERVICES'] },
    { table: 'filter' as const, chain: 'INPUT', args: ['-m', 'comment', '--comment', '"kubernetes ipvs access filter"', '-j', 'KUBE-IPVS-FILTER'] },
  ];
  const save = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
    'COMMIT',
    '*nat',
    ':OUTPUT ACCEPT [0:0]',
    '-A OUTPUT  -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    // The same rule in another table does not count.
    '-A INPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    'COMMIT',
  ].join('\n');
  assert.deepEqual(jumpsMissingFromSave(jumps, save).map((j) => `${j.table} ${j.chain}`), ['nat PREROUTING']);
  assert.equal(jumpsMissingFromSave(jumps, '').length, 3, 'an empty dump: every jump is checked');
});
