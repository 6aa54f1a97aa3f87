// The seeds' real iptables-save dumps (../shared/seeds): chain names and the
// rules kproxy writes for the same Services, in current upstream's format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  endpointChainName,
  externalChainName,
  firewallChainName,
  hash16,
  serviceChainName,
  serviceLocalChainName,
} from '../../src/dataplane/iptables/chain-names.js';
import { ep, makeNode, makeService, makeSlice, renderCanonical, state, tcpPort } from './iptables-helpers.js';

test('chain hashes: every one in upstream proxier_test.go', () => {
  const svc: [string, string][] = [
    ['ns1/svc1:p80', 'KUBE-SVC-XPGD46QRK7WJZT7O'],
    ['ns2/svc2:p80', 'KUBE-SVC-GNZBNJ2PO5MGZ6GT'],
    ['ns3/svc3:p80', 'KUBE-SVC-X27LE4BHSL4DOUIK'],
    ['ns4/svc4:p80', 'KUBE-SVC-4SW47YFZTEDKD3PK'],
    ['ns5/svc5:p80', 'KUBE-SVC-NUKIZ6OKUXPJNT4C'],
    ['ns2/svc2:p8080', 'KUBE-SVC-2VJB64SDSIJUP5T6'],
    ['ns4/svc4:p8082', 'KUBE-SVC-EBDQOQU5SJFXRIL3'],
  ];
  for (const [name, chain] of svc) assert.equal(serviceChainName(name, 'tcp'), chain, name);
  assert.equal(externalChainName('ns1/svc1:p80', 'TCP'), 'KUBE-EXT-XPGD46QRK7WJZT7O');
  assert.equal(firewallChainName('ns5/svc5:p80', 'tcp'), 'KUBE-FW-NUKIZ6OKUXPJNT4C');
  assert.equal(serviceLocalChainName('ns2/svc2:p80', 'tcp'), 'KUBE-SVL-GNZBNJ2PO5MGZ6GT');
  const sep: [string, string, string][] = [
    ['ns1/svc1:p80', '10.180.0.1:80', 'KUBE-SEP-SXIVWICOYRO3J4NJ'],
    ['ns2/svc2:p80', '10.180.0.2:80', 'KUBE-SEP-RS4RBKLTHTF2IUXJ'],
    ['ns5/svc5:p80', '10.180.0.3:80', 'KUBE-SEP-I77PXRDZVX7PMWMN'],
    ['ns1/svc1:p80', '10.0.0.0:80', 'KUBE-SEP-DKGQUZGBKLTPAR56'],
    ['ns3/svc3:p8081', '203.0.113.4:8081', 'KUBE-SEP-RUVVH7YV3PHQBDOS'],
    ['ns4/svc4:p8082', '10.4.0.1:8082', 'KUBE-SEP-SU5STNODRYEWJAUF'],
  ];
  for (const [name, e, chain] of sep) assert.equal(endpointChainName(name, 'tcp', e), chain, `${name} ${e}`);
});

test('chain hashes: the seeds (pod-check, nginx-nodeport, hello-world, kube-dns, kubernetes)', () => {
  assert.equal(serviceChainName('default/pod-check', 'tcp'), 'KUBE-SVC-A26F6BALGETXAGKG');
  assert.equal(endpointChainName('default/pod-check', 'tcp', '10.244.169.176:80'), 'KUBE-SEP-MIPE7TVXCPBIRR5B');
  assert.equal(endpointChainName('default/pod-check', 'tcp', '10.244.169.177:80'), 'KUBE-SEP-IU6FDGX4AGYVHQQW');
  assert.equal(endpointChainName('default/pod-check', 'tcp', '10.244.169.191:80'), 'KUBE-SEP-I57WEEY5SFOMRE2L');
  assert.equal(serviceChainName('default/nginx-nodeport', 'tcp'), 'KUBE-SVC-CGFVTWEXQTKV5QXW');
  assert.equal(endpointChainName('default/nginx-nodeport', 'tcp', '10.244.169.140:80'), 'KUBE-SEP-2WK7DTGWWQGBECK5');
  // Current upstream: an unnamed port hashes "ns/name"; the seeds' older kube-proxy hashed "ns/name:".
  assert.equal(serviceChainName('default/hello-world-service', 'tcp'), 'KUBE-SVC-I6CTHWSTJGL5RHWT');
  assert.equal('KUBE-SVC-' + hash16('default/hello-world-service:tcp'), 'KUBE-SVC-5MRENC7Q6ZQR6GKR');
  // Named ports hash the same in every version.
  assert.equal(serviceChainName('kube-system/kube-dns:dns', 'udp'), 'KUBE-SVC-TCOU7JCQXEZGVUNU');
  assert.equal(serviceChainName('kube-system/kube-dns:dns-tcp', 'tcp'), 'KUBE-SVC-ERIFXISQEP7F7OF4');
  assert.equal(serviceChainName('kube-system/kube-dns:metrics', 'tcp'), 'KUBE-SVC-JD5MR3NA4I4DYORP');
  assert.equal(serviceChainName('default/kubernetes:https', 'tcp'), 'KUBE-SVC-NPX46M4PTMTKRN6Y');
});

test('chain hashes: IPv6 endpoints hash JoinHostPort form', () => {
  const a = endpointChainName('ns1/svc1:p80', 'tcp', '[fd00:10:180::1]:80');
  assert.match(a, /^KUBE-SEP-[A-Z2-7]{16}$/);
  assert.notEqual(a, endpointChainName('ns1/svc1:p80', 'tcp', 'fd00:10:180::1:80'));
});

const seedOpts = {
  nodeName: 'k8s-node2',
  nodeIPs: ['192.168.1.12'],
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeMark: '0x4000',
  randomFully: true,
  families: ['IPv4' as const],
};

function rulesOf(text: string, chain: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
}

test('seed 004: default/pod-check, 3 endpoints with exact probabilities and names', () => {
  const st = state(
    [
      makeService('default', 'pod-check', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['10.108.6.217'];
        s.ports = [tcpPort('', 80, 32239)];
      }),
    ],
    [makeSlice('default', 'pod-check', 1, [ep('10.244.169.191'), ep('10.244.169.176'), ep('10.244.169.177')], [{ name: '', port: 80 }])],
    [makeNode('k8s-node2', ['192.168.1.12'])],
  );
  const text = renderCanonical(st, seedOpts);
  assert.deepEqual(rulesOf(text, 'KUBE-SVC-A26F6BALGETXAGKG'), [
    '-A KUBE-SVC-A26F6BALGETXAGKG -m comment --comment "default/pod-check cluster IP" -m tcp -p tcp -d 10.108.6.217 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-A26F6BALGETXAGKG -m comment --comment "default/pod-check -> 10.244.169.176:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-MIPE7TVXCPBIRR5B',
    '-A KUBE-SVC-A26F6BALGETXAGKG -m comment --comment "default/pod-check -> 10.244.169.177:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-IU6FDGX4AGYVHQQW',
    '-A KUBE-SVC-A26F6BALGETXAGKG -m comment --comment "default/pod-check -> 10.244.169.191:80" -j KUBE-SEP-I57WEEY5SFOMRE2L',
  ]);
  assert.deepEqual(rulesOf(text, 'KUBE-SEP-I57WEEY5SFOMRE2L'), [
    '-A KUBE-SEP-I57WEEY5SFOMRE2L -m comment --comment default/pod-check -s 10.244.169.191 -j KUBE-MARK-MASQ',
    '-A KUBE-SEP-I57WEEY5SFOMRE2L -m comment --comment default/pod-check -m tcp -p tcp -j DNAT --to-destination 10.244.169.191:80',
  ]);
  assert.deepEqual(rulesOf(text, 'KUBE-NODEPORTS'), [
    '-A KUBE-NODEPORTS -m comment --comment default/pod-check -m tcp -p tcp --dport 32239 -j KUBE-EXT-A26F6BALGETXAGKG',
  ]);
  assert.ok(
    text.includes(
      '-A KUBE-SERVICES -m comment --comment "default/pod-check cluster IP" -m tcp -p tcp -d 10.108.6.217 --dport 80 -j KUBE-SVC-A26F6BALGETXAGKG\n',
    ),
  );
  assert.ok(text.includes('-j MASQUERADE --random-fully\n'));
});

test('seed 004: default/nginx-nodeport, one endpoint', () => {
  const st = state(
    [
      makeService('default', 'nginx-nodeport', (s) => {
        s.type = 'NodePort';
        s.clusterIPs = ['10.103.12.8'];
        s.ports = [tcpPort('', 80, 30000)];
      }),
    ],
    [makeSlice('default', 'nginx-nodeport', 1, [ep('10.244.169.140')], [{ name: '', port: 80 }])],
  );
  const text = renderCanonical(st, seedOpts);
  assert.deepEqual(rulesOf(text, 'KUBE-SVC-CGFVTWEXQTKV5QXW'), [
    '-A KUBE-SVC-CGFVTWEXQTKV5QXW -m comment --comment "default/nginx-nodeport cluster IP" -m tcp -p tcp -d 10.103.12.8 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-CGFVTWEXQTKV5QXW -m comment --comment "default/nginx-nodeport -> 10.244.169.140:80" -j KUBE-SEP-2WK7DTGWWQGBECK5',
  ]);
  assert.deepEqual(rulesOf(text, 'KUBE-SEP-2WK7DTGWWQGBECK5'), [
    '-A KUBE-SEP-2WK7DTGWWQGBECK5 -m comment --comment default/nginx-nodeport -s 10.244.169.140 -j KUBE-MARK-MASQ',
    '-A KUBE-SEP-2WK7DTGWWQGBECK5 -m comment --comment default/nginx-nodeport -m tcp -p tcp -j DNAT --to-destination 10.244.169.140:80',
  ]);
  assert.deepEqual(rulesOf(text, 'KUBE-EXT-CGFVTWEXQTKV5QXW'), [
    '-A KUBE-EXT-CGFVTWEXQTKV5QXW -m comment --comment "masquerade traffic for default/nginx-nodeport external destinations" -j KUBE-MARK-MASQ',
    '-A KUBE-EXT-CGFVTWEXQTKV5QXW -j KUBE-SVC-CGFVTWEXQTKV5QXW',
  ]);
});

test('seed 000/001: kube-dns (dns, dns-tcp, metrics) and kubernetes:https', () => {
  const st = state(
    [
      makeService('kube-system', 'kube-dns', (s) => {
        s.clusterIPs = ['10.96.0.10'];
        s.ports = [
          { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 },
          { name: 'dns-tcp', protocol: 'TCP', port: 53, targetPort: 53, nodePort: 0 },
          { name: 'metrics', protocol: 'TCP', port: 9153, targetPort: 9153, nodePort: 0 },
        ];
      }),
      makeService('default', 'kubernetes', (s) => {
        s.clusterIPs = ['10.96.0.1'];
        s.ports = [{ name: 'https', protocol: 'TCP', port: 443, targetPort: 6443, nodePort: 0 }];
      }),
    ],
    [
      makeSlice('kube-system', 'kube-dns', 1, [ep('10.244.0.2'), ep('10.244.0.3')], [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53 },
        { name: 'metrics', port: 9153 },
      ]),
      makeSlice('default', 'kubernetes', 1, [ep('192.168.1.11')], [{ name: 'https', port: 6443 }]),
    ],
  );
  const svcRules = rulesOf(renderCanonical(st, seedOpts), 'KUBE-SERVICES');
  assert.deepEqual(svcRules, [
    '-A KUBE-SERVICES -m comment --comment "default/kubernetes:https cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y',
    '-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU',
    '-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 53 -j KUBE-SVC-ERIFXISQEP7F7OF4',
    '-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:metrics cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 9153 -j KUBE-SVC-JD5MR3NA4I4DYORP',
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  ]);
});
