// Renderer behaviour beyond upstream's own test vectors: IPv6, dual-stack,
// local-traffic detectors, NodePort addresses, escaping, payload ordering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMasqueradeMark, renderIptables } from '../../src/dataplane/iptables/render.js';
import { canonicalPayload, canonicalRuleset, restorePayload } from '../../src/dataplane/iptables/payload.js';
import { versionSupportsRandomFully, parseIptablesVersion } from '../../src/dataplane/iptables/detect.js';
import { dedent, ep, fakeProxierOptions, makeNode, makeService, makeSlice, renderCanonical, state, tcpPort, testNodeName } from './iptables-helpers.js';

const p80 = [{ name: 'p80', port: 80 }];

function rulesOf(text: string, table: string, chain: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) cur = l.slice(1);
    else if (cur === table && l.startsWith(`-A ${chain} `)) out.push(l);
  }
  return out;
}

test('masquerade mark is formatted like Go %#08x', () => {
  assert.equal(formatMasqueradeMark(14), '0x00004000');
  assert.equal(formatMasqueradeMark(0), '0x00000001');
  assert.equal(formatMasqueradeMark(31), '0x80000000');
  assert.throws(() => formatMasqueradeMark(32));
  const text = renderCanonical(state([]), fakeProxierOptions('IPv4', { masqueradeMark: undefined, masqueradeBit: 15 }));
  assert.ok(text.includes('-A KUBE-MARK-MASQ -j MARK --or-mark 0x00008000\n'));
});

test('IPv6: brackets in DNAT targets, ! -d ::1/128, no KUBE-FIREWALL, no localhost NodePorts', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['fd00:172:30::41'];
        s.ipFamilies = ['IPv6'];
        s.ports = [tcpPort('p80', 80, 3001)];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('fd00:10:180::1'), ep('fd00:10:180:0:0:0:2:1', { nodeName: testNodeName })], p80, 'IPv6')],
  );
  const text = renderCanonical(st, fakeProxierOptions('IPv6'));
  assert.ok(!text.includes('KUBE-FIREWALL'));
  assert.ok(!text.includes('127.0.0.0/8'));
  assert.deepEqual(rulesOf(text, 'nat', 'KUBE-SERVICES').at(-1),
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS');
  assert.ok(text.includes('-j DNAT --to-destination [fd00:10:180::1]:80\n'));
  assert.ok(text.includes('-j DNAT --to-destination [fd00:10:180::2:1]:80\n'), 'endpoint IPs are re-serialized in RFC 5952 form');
  assert.ok(text.includes('-d fd00:172:30::41 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ'));
  assert.ok(text.includes('"ns1/svc1:p80 -> [fd00:10:180::1]:80"'));
});

test('dual-stack: one ruleset per family; each family only sees its own IPs', () => {
  const svc = makeService('ns1', 'svc1', (s) => {
    s.type = 'LoadBalancer';
    s.clusterIPs = ['172.30.0.41', 'fd00:172:30::41'];
    s.ipFamilies = ['IPv4', 'IPv6'];
    s.externalIPs = ['192.168.99.22', '2001:db8:99::22'];
    s.loadBalancerIngress = [{ ip: '1.2.3.4' }, { ip: '2001:db8:1::4' }];
    s.loadBalancerSourceRanges = ['203.0.113.0/25', '2001:db8:f::/48'];
    s.ports = [tcpPort('p80', 80, 3001)];
  });
  const st = state(
    [svc],
    [
      makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], p80, 'IPv4'),
      makeSlice('ns1', 'svc1', 2, [ep('fd00:10:180::1')], p80, 'IPv6'),
    ],
  );
  const rs = renderIptables(st, { ...fakeProxierOptions('IPv4'), families: undefined, clusterCIDRs: ['10.0.0.0/8', 'fd00:10::/64'] });
  assert.deepEqual(rs.map((r) => r.family), ['IPv4', 'IPv6']);
  const [v4, v6] = rs.map((r) => canonicalRuleset(r));
  assert.ok(v4!.includes('-d 172.30.0.41 ') && !v4!.includes('fd00:'));
  assert.ok(v4!.includes('-s 203.0.113.0/25 ') && !v4!.includes('2001:db8:f::/48'));
  assert.ok(v6!.includes('-d fd00:172:30::41 ') && !v6!.includes('172.30.0.41'));
  assert.ok(v6!.includes('-d 2001:db8:99::22 ') && v6!.includes('-d 2001:db8:1::4 ') && v6!.includes('-s 2001:db8:f::/48 '));
  assert.ok(v6!.includes('--to-destination [fd00:10:180::1]:80'));
  assert.ok(v4!.includes('-A KUBE-FIREWALL '));
  assert.ok(!v6!.includes('KUBE-FIREWALL'));
});

test('families default to those of the node IPs, then of the cluster IPs', () => {
  const svc = makeService('ns1', 'svc1', (s) => {
    s.clusterIPs = ['fd00::41'];
    s.ports = [tcpPort('p80', 80)];
  });
  assert.deepEqual(renderIptables(state([svc]), { nodeName: 'n', nodeIPs: [] }).map((r) => r.family), ['IPv6']);
  assert.deepEqual(renderIptables(state([svc]), { nodeName: 'n', nodeIPs: ['10.0.0.1'] }).map((r) => r.family), ['IPv4']);
  assert.deepEqual(renderIptables(state([]), { nodeName: 'n', nodeIPs: [] }).map((r) => r.family), ['IPv4']);
});

test('local detectors: cluster CIDR, node CIDR, bridge, interface prefix, none', () => {
  const st = state(
    [
      makeService('ns1', 'svc1', (s) => {
        s.type = 'LoadBalancer';
        s.externalTrafficPolicy = 'Local';
        s.clusterIPs = ['172.30.0.41'];
        s.ports = [tcpPort('p80', 80, 3001)];
        s.healthCheckNodePort = 30000;
        s.loadBalancerIngress = [{ ip: '1.2.3.4' }];
      }),
    ],
    [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1', { nodeName: testNodeName })], p80)],
    [makeNode(testNodeName, ['192.168.0.2'], {}, ['10.180.0.0/24'])],
  );
  const masq = (o: object) => {
    const t = renderCanonical(st, fakeProxierOptions('IPv4', o));
    const svc = rulesOf(t, 'nat', 'KUBE-SVC-XPGD46QRK7WJZT7O')[0]!;
    const ext = rulesOf(t, 'nat', 'KUBE-EXT-XPGD46QRK7WJZT7O')[0]!;
    return [svc.slice(svc.indexOf('--dport 80') + 11), ext];
  };
  assert.deepEqual(masq({}), [
    '! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
    '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O',
  ]);
  assert.deepEqual(masq({ detectLocalMode: 'NodeCIDR' })[0], '! -s 10.180.0.0/24 -j KUBE-MARK-MASQ');
  assert.deepEqual(masq({ detectLocalMode: 'BridgeInterface', bridgeInterface: 'cni0' }), [
    '! -i cni0 -j KUBE-MARK-MASQ',
    '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -i cni0 -j KUBE-SVC-XPGD46QRK7WJZT7O',
  ]);
  assert.deepEqual(masq({ detectLocalMode: 'InterfaceNamePrefix', interfaceNamePrefix: 'veth' })[0], '! -i veth+ -j KUBE-MARK-MASQ');
  // No detector: no masquerade rule in the SVC chain, no pod short-circuit in EXT.
  const none = renderCanonical(st, fakeProxierOptions('IPv4', { clusterCIDRs: [] }));
  assert.ok(!rulesOf(none, 'nat', 'KUBE-SVC-XPGD46QRK7WJZT7O').some((r) => r.includes('KUBE-MARK-MASQ')));
  assert.equal(rulesOf(none, 'nat', 'KUBE-EXT-XPGD46QRK7WJZT7O')[0],
    '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ');
  assert.throws(() => renderCanonical(st, fakeProxierOptions('IPv4', { detectLocalMode: 'BridgeInterface', bridgeInterface: 'a b' })), /not a valid interface name/);
});

test('nodeport addresses: per-IP jumps, "primary", loopback only with localhost NodePorts', () => {
  const svc = makeService('ns1', 'svc1', (s) => {
    s.type = 'NodePort';
    s.clusterIPs = ['172.30.0.41'];
    s.ports = [tcpPort('p80', 80, 3001)];
  });
  const st = state([svc], [makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], p80)]);
  const last = (o: object) => rulesOf(renderCanonical(st, fakeProxierOptions('IPv4', o)), 'nat', 'KUBE-SERVICES').filter((r) => r.includes('must be the last')).map((r) => r.slice(r.indexOf('" ') + 2));
  assert.deepEqual(last({ nodePortAddresses: ['192.168.0.0/16'] }), ['-d 192.168.0.2 -j KUBE-NODEPORTS', '-d 192.168.1.2 -j KUBE-NODEPORTS', '-d 192.168.99.11 -j KUBE-NODEPORTS']);
  assert.deepEqual(last({ nodePortAddresses: ['primary'] }), ['-d 192.168.0.2 -j KUBE-NODEPORTS']);
  assert.deepEqual(last({ nodePortAddresses: ['127.0.0.0/8', '192.168.0.2/32'] }), ['-d 127.0.0.1 -j KUBE-NODEPORTS', '-d 192.168.0.2 -j KUBE-NODEPORTS']);
  assert.deepEqual(last({ nodePortAddresses: ['127.0.0.0/8', '192.168.0.2/32'], localhostNodePorts: false }), ['-d 192.168.0.2 -j KUBE-NODEPORTS']);
  assert.deepEqual(last({ localhostNodePorts: false }), ['-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS']);
  assert.deepEqual(last({ nodePortAddresses: ['127.0.0.5/32', '192.168.0.2/32'] }), ['-d 192.168.0.2 -j KUBE-NODEPORTS'], 'no local address in 127.0.0.5/32, but localhost NodePorts stay on');
  assert.ok(renderCanonical(st, fakeProxierOptions('IPv4', { nodePortAddresses: ['127.0.0.5/32'] })).includes('-A KUBE-FIREWALL '));
  // Without loopback in the NodePort addresses, localhost NodePorts are off (no KUBE-FIREWALL, no 127/8 nfacct rule).
  const t = renderCanonical(st, fakeProxierOptions('IPv4', { nodePortAddresses: ['192.168.0.0/24'] }));
  assert.ok(!t.includes('KUBE-FIREWALL') && !t.includes('127.0.0.0/8'));
  assert.throws(() => renderCanonical(st, fakeProxierOptions('IPv4', { nodePortAddresses: ['bogus'] })), /neither a CIDR nor "primary"/);
});

test('no unsafe name can reach a comment: such service ports are skipped and reported', () => {
  const bad = makeService('ns1', 'evil" -j ACCEPT\n-A INPUT', (s) => {
    s.clusterIPs = ['172.30.0.41'];
    s.ports = [tcpPort('p80', 80)];
  });
  const badPort = makeService('ns1', 'svc2', (s) => {
    s.clusterIPs = ['172.30.0.42'];
    s.ports = [tcpPort('x"y', 80)];
  });
  const good = makeService('ns1', 'svc3', (s) => {
    s.clusterIPs = ['172.30.0.43'];
    s.ports = [tcpPort('p80', 80)];
  });
  const [rs] = renderIptables(state([bad, badPort, good]), fakeProxierOptions());
  assert.equal(rs!.skipped.length, 2);
  const text = restorePayload(rs!);
  assert.ok(!text.includes('evil') && !text.includes('x"y'));
  assert.ok(text.includes('ns1/svc3:p80'));
  // Every comment has balanced quotes and every line is one rule.
  for (const line of text.split('\n')) assert.equal((line.match(/"/g) ?? []).length % 2, 0, line);
});

test('restorePayload: upstream write order; canonicalPayload: upstream test order', () => {
  const st = state(
    ['b', 'a'].map((n, i) =>
      makeService('ns', n, (s) => {
        s.type = 'NodePort';
        s.clusterIPs = [`172.30.0.${i + 1}`];
        s.ports = [tcpPort('p', 80, 30000 + i)];
      }),
    ),
    [makeSlice('ns', 'a', 1, [ep('10.0.0.1')], [{ name: 'p', port: 80 }]), makeSlice('ns', 'b', 1, [ep('10.0.0.2')], [{ name: 'p', port: 80 }])],
  );
  const [rs] = renderIptables(st, fakeProxierOptions());
  const raw = restorePayload(rs!);
  const lines = raw.trimEnd().split('\n');
  assert.equal(lines[0], '*filter');
  assert.equal(lines.at(-1), 'COMMIT');
  const nat = lines.slice(lines.indexOf('*nat'));
  assert.ok(nat.at(-2)!.includes('must be the last rule'), 'the nodeports jump is written last');
  assert.ok(nat.indexOf('-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN') < nat.findIndex((l) => l.startsWith('-A KUBE-SERVICES')));
  const canon = canonicalPayload(raw);
  assert.equal(canonicalPayload(canon), canon, 'canonical form is a fixed point');
  const natChains = canon.split('\n').filter((l) => l.startsWith(':')).slice(6);
  assert.deepEqual(natChains.slice(0, 2), [':KUBE-NODEPORTS - [0:0]', ':KUBE-SERVICES - [0:0]']);
});

test('canonicalPayload: sorting rules of upstream sortIPTablesRules', () => {
  const input = dedent(`
    *nat
    :KUBE-SERVICES - [0:0]
    :KUBE-NODEPORTS - [0:0]
    :POSTROUTING ACCEPT [10:20]
    :KUBE-SVC-B - [0:0]
    :KUBE-SVC-A - [0:0]
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 1.2.3.4 -j KUBE-NODEPORTS
    -A KUBE-SERVICES -m comment --comment "ns2/b:p cluster IP" -j KUBE-SVC-B
    -A KUBE-SVC-B -j KUBE-SVC-A
    -A KUBE-SERVICES -m comment --comment "ns1/a cluster IP" -j KUBE-SVC-A
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 5.6.7.8 -j KUBE-NODEPORTS
    -A KUBE-NODEPORTS -m comment --comment ns2/b:p -j KUBE-SVC-B
    -A KUBE-NODEPORTS -m comment --comment ns1/a -j KUBE-SVC-A
    -A POSTROUTING -j KUBE-POSTROUTING
    -X KUBE-SVC-OLD
    [3:4] -A KUBE-SVC-A -j ACCEPT
    COMMIT
    *filter
    :INPUT ACCEPT [0:0]
    COMMIT
  `);
  assert.equal(
    canonicalPayload(input),
    dedent(`
      *filter
      :INPUT ACCEPT [0:0]
      COMMIT
      *nat
      :KUBE-NODEPORTS - [0:0]
      :KUBE-SERVICES - [0:0]
      :KUBE-SVC-A - [0:0]
      :KUBE-SVC-B - [0:0]
      :POSTROUTING ACCEPT [0:0]
      -A KUBE-NODEPORTS -m comment --comment ns1/a -j KUBE-SVC-A
      -A KUBE-NODEPORTS -m comment --comment ns2/b:p -j KUBE-SVC-B
      -A KUBE-SERVICES -m comment --comment "ns1/a cluster IP" -j KUBE-SVC-A
      -A KUBE-SERVICES -m comment --comment "ns2/b:p cluster IP" -j KUBE-SVC-B
      -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 1.2.3.4 -j KUBE-NODEPORTS
      -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 5.6.7.8 -j KUBE-NODEPORTS
      -A KUBE-SVC-A -j ACCEPT
      -A KUBE-SVC-B -j KUBE-SVC-A
      -A POSTROUTING -j KUBE-POSTROUTING
      -X KUBE-SVC-OLD
      COMMIT
    `),
  );
  assert.throws(() => canonicalPayload('*nat\n-A X -j Y\n'), /no COMMIT/);
  assert.throws(() => canonicalPayload('-A X -j Y\n'), /outside a table/);
});

test('jump rules from built-in chains (ensured with iptables -I by the agent)', () => {
  const [rs] = renderIptables(state([]), fakeProxierOptions());
  const j = rs!.jumps.map((x) => `${x.table} ${x.chain} ${x.args.join(' ')}`);
  assert.ok(j.includes('nat PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES'));
  assert.ok(j.includes('filter INPUT -m conntrack --ctstate NEW -m comment --comment kubernetes externally-visible service portals -j KUBE-EXTERNAL-SERVICES'));
  assert.ok(j.includes('filter INPUT -j KUBE-FIREWALL'));
  // kubelet's KUBE-FIREWALL jumps are ensured in both families, with or without localhost NodePorts.
  const [v6] = renderIptables(state([]), fakeProxierOptions('IPv6'));
  assert.deepEqual(v6!.jumps.filter((x) => x.args.includes('KUBE-FIREWALL')).map((x) => x.chain), ['INPUT', 'OUTPUT']);
  assert.equal(rs!.jumps.length, 14);
});

test('headless, ExternalName, service-proxy-name and wrong-family services get no rules', () => {
  const mk = (name: string, f: Parameters<typeof makeService>[2]) => makeService('ns', name, f);
  const services = [
    mk('headless', (s) => {
      s.headless = true;
      s.ports = [tcpPort('p', 80)];
    }),
    mk('extname', (s) => {
      s.type = 'ExternalName';
      s.externalName = 'example.com';
    }),
    mk('other-proxy', (s) => {
      s.meta.labels['service.kubernetes.io/service-proxy-name'] = 'foo';
      s.clusterIPs = ['172.30.0.9'];
      s.ports = [tcpPort('p', 80)];
    }),
    mk('v6only', (s) => {
      s.clusterIPs = ['fd00::9'];
      s.ports = [tcpPort('p', 80)];
    }),
  ];
  const text = renderCanonical(state(services), fakeProxierOptions());
  assert.ok(!/ns\//.test(text), text);
});

test('iptables version parsing for --random-fully', () => {
  assert.deepEqual(parseIptablesVersion('iptables v1.8.9 (nf_tables)'), [1, 8, 9]);
  assert.equal(versionSupportsRandomFully('iptables v1.6.2'), true);
  assert.equal(versionSupportsRandomFully('iptables v1.6.1'), false);
  assert.equal(versionSupportsRandomFully('iptables v1.4.21'), false);
  assert.equal(versionSupportsRandomFully('garbage'), false);
});

test('canonicalRuleset (direct) equals canonicalPayload(restorePayload) on tricky orderings', () => {
  const mk = (ns: string, name: string, ports: string[], i: number) =>
    makeService(ns, name, (s) => {
      s.type = i % 2 ? 'NodePort' : 'LoadBalancer';
      s.clusterIPs = [`172.30.1.${i}`];
      s.loadBalancerIngress = i % 2 ? [] : [{ ip: `1.2.3.${i}` }];
      s.loadBalancerSourceRanges = i % 4 === 0 ? ['203.0.113.0/25'] : [];
      s.externalTrafficPolicy = i % 3 === 0 ? 'Local' : 'Cluster';
      s.healthCheckNodePort = i % 3 === 0 ? 31000 + i : 0;
      s.ports = ports.map((p, k) => tcpPort(p, 80 + k, 30000 + i * 10 + k));
    });
  const services = [
    mk('ns', 'a', ['x', 'http'], 1),
    mk('ns', 'a-b', [''], 2),
    mk('ns', 'a.b', ['z'], 3),
    mk('n', 's', [''], 4),
    mk('ns-1', 'a', ['p'], 5),
    mk('ns', 'b', ['p'], 6),
  ];
  const slices = [
    makeSlice('ns', 'a', 1, [ep('10.0.0.1'), ep('10.0.0.11', { nodeName: testNodeName })], [{ name: 'x', port: 8080 }, { name: 'http', port: 8081 }]),
    makeSlice('ns', 'a-b', 1, [ep('10.0.0.2')], [{ name: '', port: 80 }]),
    makeSlice('n', 's', 1, [ep('10.0.0.4', { nodeName: testNodeName })], [{ name: '', port: 80 }]),
  ];
  for (const o of [fakeProxierOptions(), fakeProxierOptions('IPv4', { nodePortAddresses: ['192.168.0.0/16', '127.0.0.1/32'] })]) {
    const [rs] = renderIptables(state(services, slices), o);
    for (const popts of [{}, { deleteNatChains: ['KUBE-SVC-OLDOLDOLDOLDOLD1', 'KUBE-SEP-OLDOLDOLDOLDOLD2'] }]) {
      assert.equal(canonicalRuleset(rs!, popts), canonicalPayload(restorePayload(rs!, popts)));
    }
  }
});
