// The pure parts: the zone index (records.ts) and the pod resolver simulation
// (kubelet's resolv.conf, glibc's search order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressFromReverse, buildZone, reverseName, type Lookup, type RR } from '../../src/dns/records.js';
import {
  formatResolvConf,
  parseResolvConf,
  podResolvConf,
  searchCandidates,
  walk,
  type Sender,
} from '../../src/dns/resolver-sim.js';
import { clusterState, ep, port, slice, svc } from './dns-fixtures.js';
import type { QueryResult } from '../../src/dns/client.js';

function answers(l: Lookup): RR[] {
  assert.equal(l.kind, 'answer');
  return l.kind === 'answer' ? l.answers : [];
}

test('reverse names round-trip for IPv4 and IPv6', () => {
  assert.equal(reverseName('10.96.0.1'), '1.0.96.10.in-addr.arpa');
  const v6 = reverseName('fd00:10:96::100a')!;
  assert.equal(v6, 'a.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa');
  assert.equal(addressFromReverse(v6), 'fd00:10:96::100a');
  assert.equal(addressFromReverse('1.0.96.10.in-addr.arpa'), '10.96.0.1');
  assert.equal(addressFromReverse('0.96.10.in-addr.arpa'), null);
  assert.equal(addressFromReverse('01.0.96.10.in-addr.arpa'), null);
});

test('SOA: CoreDNS fields, TTL min(ttl, 300), minimum = ttl', () => {
  const z = buildZone(clusterState(), { ttl: 600, serial: 1234 });
  const soa = z.soa();
  assert.deepEqual(soa, {
    name: 'cluster.local',
    type: 'SOA',
    ttl: 300,
    data: { mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 1234, refresh: 7200, retry: 1800, expire: 86400, minimum: 600 },
  });
});

test('another zone name; names outside it are forwarded', () => {
  const z = buildZone(clusterState(), { zone: 'corp.example' });
  assert.deepEqual(answers(z.lookup('kubernetes.default.svc.corp.example', 'A')).map((r) => r.data), ['10.96.0.1']);
  assert.equal(z.lookup('kubernetes.default.svc.cluster.local', 'A').kind, 'forward');
});

test('dual-stack SRV: one record per port, weight counts every address (as CoreDNS), both addresses in additional', () => {
  const z = buildZone(clusterState());
  const l = z.lookup('_http._tcp.web.default.svc.cluster.local', 'SRV');
  assert.equal(l.kind, 'answer');
  if (l.kind !== 'answer') return;
  assert.deepEqual(l.answers.map((r) => r.data), [{ priority: 0, weight: 50, port: 80, target: 'web.default.svc.cluster.local' }]);
  assert.deepEqual(l.additionals.map((r) => [r.type, r.data]), [['A', '10.96.100.10'], ['AAAA', 'fd00:10:96::100a']]);
});

test('A of dns-version is NXDOMAIN (only TXT exists there), A of _port._proto names answers the service IP', () => {
  const z = buildZone(clusterState());
  const l = z.lookup('dns-version.cluster.local', 'A');
  assert.equal(l.kind === 'answer' && l.rcode, 'NXDOMAIN');
  assert.deepEqual(answers(z.lookup('_https._tcp.kubernetes.default.svc.cluster.local', 'A')).map((r) => r.data), ['10.96.0.1']);
});

test('a headless service with a slice without ports: A records, no SRV', () => {
  const st = clusterState();
  st.services.push(svc('default', 'noports', { headless: true }));
  st.endpointSlices.push(slice('default', 'noports', [ep('10.244.7.7')], []));
  const z = buildZone(st);
  assert.deepEqual(answers(z.lookup('noports.default.svc.cluster.local', 'A')).map((r) => r.data), ['10.244.7.7']);
  const srv = z.lookup('noports.default.svc.cluster.local', 'SRV');
  assert.equal(srv.kind === 'answer' && srv.rcode, 'NOERROR');
  assert.equal(answers(srv).length, 0);
});

test('a ClusterIP takes precedence over endpoints in PTR; an endpoint of two services gets two PTRs', () => {
  const st = clusterState();
  st.services.push(svc('default', 'web2', { clusterIPs: ['10.96.100.11'], ports: [port('http', 80)] }));
  st.endpointSlices.push(slice('default', 'web2', [ep('10.244.1.5')], [{ name: 'http', port: 8080 }]));
  const z = buildZone(st);
  assert.deepEqual(
    answers(z.lookup('5.1.244.10.in-addr.arpa', 'PTR')).map((r) => r.data).sort(),
    ['10-244-1-5.web.default.svc.cluster.local', '10-244-1-5.web2.default.svc.cluster.local'],
  );
  // Unknown IPs fall through to the upstream (kubeadm's `fallthrough in-addr.arpa ip6.arpa`).
  assert.equal(z.lookup('9.9.9.9.in-addr.arpa', 'PTR').kind, 'forward');
});

test('kubelet resolv.conf: ClusterFirst, ClusterFirstWithHostNet, hostNetwork fallback, Default, None', () => {
  const host = parseResolvConf('nameserver 30.14.129.245\nnameserver 30.14.128.82\nnameserver 10.65.0.201\nsearch hz.ali.com\noptions timeout:2\n');
  const base = { namespace: 'default', clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local', host };
  const cf = podResolvConf({ ...base, dnsPolicy: 'ClusterFirst', hostNetwork: false });
  // The seed's pod resolv.conf, byte for byte.
  assert.equal(
    formatResolvConf(cf.conf),
    'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local hz.ali.com\noptions ndots:5\n',
  );
  const hostNet = podResolvConf({ ...base, dnsPolicy: 'ClusterFirst', hostNetwork: true });
  assert.equal(formatResolvConf(hostNet.conf), 'nameserver 30.14.129.245\nnameserver 30.14.128.82\nnameserver 10.65.0.201\nsearch hz.ali.com\noptions timeout:2\n');
  assert.match(hostNet.explanation, /falls back to Default/);
  assert.deepEqual(podResolvConf({ ...base, dnsPolicy: 'ClusterFirstWithHostNet', hostNetwork: true }).conf, cf.conf);
  assert.deepEqual(podResolvConf({ ...base, dnsPolicy: 'Default', hostNetwork: false }).conf, hostNet.conf);
  assert.deepEqual(podResolvConf({ ...base, dnsPolicy: 'None', hostNetwork: false }).conf, { nameservers: [], searches: [], options: [] });
  // Duplicates between the cluster and host search lists are dropped.
  const dup = podResolvConf({ ...base, host: parseResolvConf('nameserver 1.1.1.1\nsearch cluster.local corp\n'), dnsPolicy: 'ClusterFirst', hostNetwork: false });
  assert.deepEqual(dup.conf.searches, ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'corp']);
});

test('glibc search order: ndots, absolute names, the name as is first or last', () => {
  const rc = parseResolvConf('nameserver 10.96.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
  assert.deepEqual(searchCandidates('web.other', rc).candidates, [
    'web.other.ns1.svc.cluster.local.',
    'web.other.svc.cluster.local.',
    'web.other.cluster.local.',
    'web.other.',
  ]);
  assert.deepEqual(searchCandidates('kubernetes.default.svc.cluster.local.', rc).candidates, ['kubernetes.default.svc.cluster.local.']);
  const one = parseResolvConf('nameserver 1.1.1.1\nsearch corp\n');
  assert.deepEqual(searchCandidates('a.b', one).candidates, ['a.b.', 'a.b.corp.']);
});

function fake(table: Record<string, string>): Sender {
  return async (ns, name) => {
    const key = `${ns} ${name}`;
    const v = table[key] ?? 'NXDOMAIN';
    const r: QueryResult = {
      rcode: v.startsWith('A ') ? 'NOERROR' : v,
      flags: 0,
      aa: true,
      tc: false,
      answers: v.startsWith('A ') ? [{ type: 'A', name: name.replace(/\.$/, ''), data: v.slice(2), ttl: 5, class: 'IN' } as never] : [],
      authorities: [],
      additionals: [],
      transport: 'udp',
      ms: 0,
    };
    return { sentTo: ns, result: r };
  };
}

test('the walk: NXDOMAIN moves to the next candidate, SERVFAIL to the next server, an answer ends it', async () => {
  const rc = parseResolvConf('nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch a.test b.test\noptions ndots:2\n');
  const res = await walk('web', 'A', rc, fake({ '10.0.0.1 web.b.test.': 'SERVFAIL', '10.0.0.2 web.b.test.': 'A 192.0.2.9' }));
  assert.deepEqual(
    res.attempts.map((a) => `${a.nameserver} ${a.name} ${a.outcome}`),
    ['10.0.0.1 web.a.test. NXDOMAIN', '10.0.0.1 web.b.test. SERVFAIL', '10.0.0.2 web.b.test. answer'],
  );
  assert.equal(res.answer?.name, 'web.b.test.');
  const fail = await walk('kubernetes', 'A', parseResolvConf('nameserver 10.0.0.1\nsearch hz.ali.com\n'), fake({ '10.0.0.1 kubernetes.hz.ali.com.': 'SERVFAIL', '10.0.0.1 kubernetes.': 'SERVFAIL' }));
  assert.equal(fail.answer, null);
  assert.equal(fail.failure, 'SERVFAIL');
});
