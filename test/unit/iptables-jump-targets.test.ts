// The chains kproxy must create before inserting its base jump rules: an IPv6
// node (no localhost NodePorts, so no KUBE-FIREWALL in the payload) used to
// fail every sync with "Chain 'KUBE-FIREWALL' does not exist".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIptables } from '../../src/dataplane/iptables/render.js';
import { restorePayload } from '../../src/dataplane/iptables/payload.js';
import { undeclaredJumpTargets } from '../../src/dataplane/iptables/sync.js';
import { ep, fakeProxierOptions, makeService, makeSlice, state, tcpPort } from './iptables-helpers.js';

const st = state(
  [
    makeService('ns1', 'svc1', (s) => {
      s.clusterIPs = ['172.30.0.41', 'fd00:172:30::41'];
      s.ipFamilies = ['IPv4', 'IPv6'];
      s.ports = [tcpPort('p80', 80)];
    }),
  ],
  [
    makeSlice('ns1', 'svc1', 1, [ep('10.180.0.1')], [{ name: 'p80', port: 80 }], 'IPv4'),
    makeSlice('ns1', 'svc1', 2, [ep('fd00:10:180::1')], [{ name: 'p80', port: 80 }], 'IPv6'),
  ],
);

/** Chains a restore payload declares, per table. */
function declared(payload: string): Set<string> {
  const out = new Set<string>();
  let table = '';
  for (const l of payload.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    else if (l.startsWith(':')) out.add(`${table}/${l.slice(1).split(' ')[0]}`);
  }
  return out;
}

test('every jump target is declared by the payload or listed to be created', () => {
  const cases = [
    ['IPv4 with localhost NodePorts', fakeProxierOptions('IPv4')],
    ['IPv4 without localhost NodePorts', fakeProxierOptions('IPv4', { localhostNodePorts: false })],
    ['IPv6', fakeProxierOptions('IPv6')],
  ] as const;
  for (const [what, opts] of cases) {
    const [rs] = renderIptables(st, opts);
    const have = declared(restorePayload(rs!));
    for (const c of undeclaredJumpTargets(rs!)) have.add(`${c.table}/${c.chain}`);
    for (const j of rs!.jumps) {
      const target = j.args[j.args.lastIndexOf('-j') + 1]!;
      assert.ok(have.has(`${j.table}/${target}`), `${what}: ${j.chain} -j ${target} in ${j.table} has no chain`);
    }
  }
});

test('IPv6 lists KUBE-FIREWALL once; IPv4 with localhost NodePorts writes it and lists nothing', () => {
  const [v6] = renderIptables(st, fakeProxierOptions('IPv6'));
  assert.deepEqual(undeclaredJumpTargets(v6!), [{ table: 'filter', chain: 'KUBE-FIREWALL' }]);
  const [v4] = renderIptables(st, fakeProxierOptions('IPv4'));
  assert.deepEqual(undeclaredJumpTargets(v4!), []);
});
