// Every target, the hook order, conntrack's role in NAT, routing after DNAT,
// the reply direction, and loops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { brief, effects, only, run, rs } from './netfilter-helpers.js';
import { trace } from '../../src/netfilter/simulate.js';
import { parseSave } from '../../src/netfilter/parse-save.js';

const PKT = { dst: '10.0.0.1', dport: 80, src: '10.1.0.5', sport: 1234 };

test('ACCEPT, DROP, REJECT, policies and fall-through', () => {
  assert.deepEqual(brief(run({ filter: ['policy FORWARD DROP'] }, PKT)), ['DROP 10.0.0.1:80 1']);
  assert.deepEqual(brief(run({ filter: ['policy FORWARD DROP', '-A FORWARD -d 10.0.0.1 -j ACCEPT'] }, PKT)), ['ACCEPT 10.0.0.1:80 1']);
  const rej = only(run({ filter: ['-A FORWARD -p tcp -j REJECT --reject-with tcp-reset'] }, PKT));
  assert.equal(rej.verdict, 'REJECT');
  assert.equal(rej.rejectWith, 'tcp-reset');
  assert.equal(only(run({ filter: ['-A FORWARD -j REJECT'] }, PKT)).rejectWith, 'icmp-port-unreachable');
  // A user chain falls through back to its caller.
  const fall = only(run({ filter: ['policy FORWARD DROP', ':EMPTY', '-A FORWARD -j EMPTY', '-A FORWARD -j ACCEPT'] }, PKT));
  assert.equal(fall.verdict, 'ACCEPT');
});

test('jump, RETURN, goto', () => {
  const r = only(
    run(
      {
        filter: [
          'policy FORWARD DROP',
          '-A FORWARD -j A',
          '-A FORWARD -j ACCEPT',
          '-A A -j B',
          '-A A -j DROP',
          '-A B -j RETURN',
          '-A B -j DROP',
        ],
      },
      PKT,
    ),
  );
  // B returns to A, A's next rule drops.
  assert.equal(r.verdict, 'DROP');
  assert.deepEqual(effects(r), ['filter/FORWARD:jump A', 'filter/A:jump B', 'filter/B:RETURN', 'filter/A:DROP']);
  // goto: G's end returns to FORWARD, not to A.
  const g = only(run({ filter: ['policy FORWARD DROP', '-A FORWARD -j A', '-A FORWARD -j ACCEPT', '-A A -g G', '-A A -j DROP', ':G'] }, PKT));
  assert.equal(g.verdict, 'ACCEPT');
  // RETURN in a built-in chain: the policy decides.
  assert.equal(only(run({ filter: ['policy FORWARD DROP', '-A FORWARD -j RETURN', '-A FORWARD -j ACCEPT'] }, PKT)).verdict, 'DROP');
});

test('DNAT, then routing: local delivery vs forward', () => {
  const nat = ['-A PREROUTING -d 10.0.0.1 -p tcp -j DNAT --to-destination 192.168.0.2:8080', '-A PREROUTING -d 10.0.0.2 -j DNAT --to-destination 10.5.0.1'];
  const toLocal = only(run({ nat }, PKT));
  assert.equal(toLocal.delivery, 'local');
  assert.equal(toLocal.destination, '192.168.0.2:8080');
  const fwd = only(run({ nat }, { ...PKT, dst: '10.0.0.2', routes: ['10.5.0.0/16=flannel.1'] }));
  assert.equal(fwd.delivery, 'forward');
  assert.equal(fwd.destination, '10.5.0.1:80', 'DNAT without a port keeps the port');
  assert.equal(fwd.outInterface, 'flannel.1');
  // filter sees the DNAT'd destination: INPUT for local, FORWARD for the rest.
  const f = run({ nat, filter: ['-A INPUT -p tcp --dport 8080 -j DROP'] }, PKT);
  assert.equal(only(f).verdict, 'DROP');
});

test('SNAT, MASQUERADE (with the outgoing address), REDIRECT', () => {
  const snat = only(run({ nat: ['-A POSTROUTING -s 10.1.0.0/16 -p tcp -j SNAT --to-source 60.1.1.1:5000'] }, PKT));
  assert.equal(snat.source, '60.1.1.1:5000');
  assert.equal(snat.snat, true);
  assert.equal(snat.masquerade, false);
  const masq = only(
    run({ nat: ['-A POSTROUTING -o flannel.1 -j MASQUERADE'] }, { ...PKT, localIps: ['192.168.0.2@eth0', '10.244.1.0@flannel.1'], routes: ['10.0.0.0/8=flannel.1'] }),
  );
  assert.equal(masq.masquerade, true);
  assert.equal(masq.source, '10.244.1.0:1234');
  const viaSrc = only(run({ nat: ['-A POSTROUTING -p tcp -j MASQUERADE --to-ports 7000-8000'] }, { ...PKT, routes: ['10.0.0.0/8=eth9,src=172.16.0.9'] }));
  assert.equal(viaSrc.source, '172.16.0.9:7000');
  const redir = only(run({ nat: ['-A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 15001'] }, { ...PKT, from: 'eth0' }));
  assert.equal(redir.destination, '192.168.0.2:15001');
  assert.equal(redir.delivery, 'local');
  const out = only(run({ nat: ['-A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 15001'] }, { ...PKT, src: undefined, from: 'local' }));
  assert.equal(out.destination, '127.0.0.1:15001');
});

test('MARK set/or/xor/and, CONNMARK save/restore, LOG continues, NOTRACK skips NAT', () => {
  const m = only(
    run(
      {
        mangle: [
          '-A PREROUTING -j MARK --set-xmark 0xf0/0xffffffff',
          '-A PREROUTING -j MARK --or-mark 0x1',
          '-A PREROUTING -j MARK --xor-mark 0x10',
          '-A PREROUTING -j MARK --and-mark 0xff',
          '-A PREROUTING -j LOG --log-prefix "seen: "',
          '-A PREROUTING -j CONNMARK --save-mark',
          '-A PREROUTING -j MARK --set-xmark 0x0/0xffffffff',
          '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xf --ctmask 0xf',
        ],
      },
      PKT,
    ),
  );
  assert.equal(m.ctmark, '0xe1');
  assert.equal(m.mark, '0x1');
  assert.ok(effects(m).some((e) => e.includes('LOG "seen: " (continues)')));
  const nt = only(run({ raw: ['-A PREROUTING -j NOTRACK'], nat: ['-A PREROUTING -j DNAT --to-destination 10.9.9.9'] }, PKT));
  assert.equal(nt.destination, '10.0.0.1:80');
  assert.equal(nt.conntrack, undefined);
  assert.equal(only(run({ raw: ['-A PREROUTING -j CT --notrack'], filter: ['-A FORWARD -m conntrack --ctstate UNTRACKED -j DROP'] }, PKT)).verdict, 'DROP');
});

test('un-modelled targets are flagged and assumed to continue', () => {
  const o = only(run({ mangle: ['-A PREROUTING -j TPROXY --on-port 1 --tproxy-mark 0x1'] }, PKT));
  assert.equal(o.uncertain, true);
  assert.match(o.uncertainties[0]!.reason, /un-modelled target TPROXY/);
  assert.equal(o.uncertainties[0]!.line, 8);
});

test('hook order: raw → mangle → nat → filter → security, then POSTROUTING mangle → nat', () => {
  const all = (chain: string) => `-A ${chain} -j LOG --log-prefix x`;
  const tables = {
    raw: [all('PREROUTING'), all('OUTPUT')],
    mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].map(all),
    nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'].map(all),
    filter: ['INPUT', 'FORWARD', 'OUTPUT'].map(all),
    security: ['INPUT', 'FORWARD', 'OUTPUT'].map(all),
  };
  const hops = (req: Parameters<typeof run>[1]) => only(run(tables, req)).path.filter((s) => s.kind === 'rule').map((s) => `${s.table}/${s.chain}`);
  assert.deepEqual(hops(PKT), [
    'raw/PREROUTING', 'mangle/PREROUTING', 'nat/PREROUTING',
    'mangle/FORWARD', 'filter/FORWARD', 'security/FORWARD',
    'mangle/POSTROUTING', 'nat/POSTROUTING',
  ]);
  assert.deepEqual(hops({ ...PKT, dst: '192.168.0.2' }), [
    'raw/PREROUTING', 'mangle/PREROUTING', 'nat/PREROUTING',
    'mangle/INPUT', 'filter/INPUT', 'security/INPUT', 'nat/INPUT',
  ]);
  assert.deepEqual(hops({ ...PKT, src: undefined, from: 'local' }), [
    'raw/OUTPUT', 'mangle/OUTPUT', 'nat/OUTPUT', 'filter/OUTPUT', 'security/OUTPUT',
    'mangle/POSTROUTING', 'nat/POSTROUTING',
  ]);
  // Local to local: out through lo and back in; nat is not consulted again on the way in.
  assert.deepEqual(hops({ ...PKT, dst: '127.0.0.1', src: undefined, from: 'local' }), [
    'raw/OUTPUT', 'mangle/OUTPUT', 'nat/OUTPUT', 'filter/OUTPUT', 'security/OUTPUT',
    'mangle/POSTROUTING', 'nat/POSTROUTING',
    'raw/PREROUTING', 'mangle/PREROUTING',
    'mangle/INPUT', 'filter/INPUT', 'security/INPUT',
  ]);
});

test('--reply: conntrack undoes DNAT and SNAT; nat rules are not consulted', () => {
  const tables = {
    nat: ['-A PREROUTING -d 60.1.1.1 -p tcp --dport 80 -j DNAT --to-destination 10.1.1.1:80', '-A POSTROUTING -d 10.1.1.1 -j SNAT --to-source 10.1.1.254', '-A PREROUTING -s 10.1.1.1 -j DROP'],
    filter: ['policy FORWARD DROP', '-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT', '-A FORWARD -d 10.1.1.1 -p tcp --dport 80 -j ACCEPT'],
  };
  const r = trace(rs(tables), { dst: '60.1.1.1', dport: 80, src: '8.8.8.8', sport: 5555, from: 'eth1', localIps: ['60.1.1.1', '10.1.1.254'], routes: ['10.1.1.0/24=eth0'], reply: true });
  const o = only(r);
  assert.equal(o.destination, '10.1.1.1:80');
  assert.equal(o.source, '10.1.1.254:5555');
  assert.equal(o.conntrack, 'tcp src=8.8.8.8 dst=60.1.1.1 sport=5555 dport=80 src=10.1.1.1 dst=10.1.1.254 sport=80 dport=5555');
  const reply = o.reply![0]!;
  assert.equal(reply.verdict, 'ACCEPT');
  assert.equal(reply.source, '60.1.1.1:80');
  assert.equal(reply.destination, '8.8.8.8:5555');
  assert.ok(reply.path.some((s) => s.rule.startsWith('conntrack un-SNAT')));
  assert.ok(reply.path.some((s) => s.rule.startsWith('conntrack un-DNAT')));
});

test('loops stop with LOOP, never a stack overflow; deep chains are bounded', () => {
  const loop = only(run({ filter: ['-A FORWARD -j A', '-A A -j B', '-A B -j A'] }, PKT));
  assert.equal(loop.verdict, 'LOOP');
  assert.match(loop.notes.join(), /loop: filter A is already being traversed \(line \d+\)/);
  const gotoLoop = only(run({ filter: ['-A FORWARD -j A', '-A A -g B', '-A B -g A'] }, PKT));
  assert.equal(gotoLoop.verdict, 'LOOP');
  // 2000 chains deep: stops at the depth limit.
  const lines: string[] = ['-A FORWARD -j C0'];
  for (let i = 0; i < 2000; i++) lines.push(`-A C${i} -j C${i + 1}`);
  lines.push('-A C2000 -j DROP');
  assert.equal(only(run({ filter: lines }, PKT)).verdict, 'LOOP');
});

test('branch explosion is bounded with a clear error', () => {
  const lines: string[] = [];
  for (let i = 0; i < 40; i++) lines.push('-A PREROUTING -m statistic --mode random --probability 0.5 -j MARK --xor-mark 0x1');
  const r = rs({ mangle: lines });
  assert.throws(() => trace(r, { ...PKT, maxBranches: 1000 }), /more than 1000 branches/);
});

test('local addresses are inferred from the dump and the result says so', () => {
  const text = parseSave(
    [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      '-A PREROUTING -j KUBE-SERVICES',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.0.2/32 -j KUBE-NODEPORTS',
      '-A KUBE-NODEPORTS -p tcp -m tcp --dport 30001 -j DNAT --to-destination 10.5.0.1:80',
      'COMMIT',
    ].join('\n'),
  );
  const r = trace(text, { dst: '192.168.0.2', dport: 30001 });
  assert.equal(r.localAddresses.source, 'inferred');
  assert.deepEqual(r.localAddresses.addresses, ['192.168.0.2']);
  assert.match(r.localAddresses.evidence[0]!, /line 6/);
  assert.equal(only(r).destination, '10.5.0.1:80');
});

test('long chains are indexed by destination without changing rule order semantics', () => {
  const rules: string[] = ['-A PREROUTING -j BIG'];
  for (let i = 0; i < 120; i++) {
    rules.push(`-A BIG -d 10.0.0.${i} -j MARK --xor-mark 0x${(1 << (i % 8)).toString(16)}`);
    if (i % 10 === 0) rules.push(`-A BIG -j MARK --set-xmark 0x${i.toString(16)}00/0xff00`);
    if (i === 50) rules.push('-A BIG -d 10.0.0.50/31 -j MARK --or-mark 0x10000');
  }
  rules.push('-A BIG -d 10.0.0.50 -j MARK --or-mark 0x20000');
  // The expected mark, computed by walking the rules linearly by hand.
  let mark = 0;
  for (let i = 0; i < 120; i++) {
    if (i === 50) mark ^= 1 << (50 % 8);
    if (i % 10 === 0) mark = ((mark & ~0xff00) ^ (i << 8)) >>> 0;
    if (i === 50) mark |= 0x10000;
  }
  mark |= 0x20000;
  const o = only(run({ mangle: rules }, { ...PKT, dst: '10.0.0.50' }));
  assert.equal(o.mark, `0x${mark.toString(16)}`);
});

test('IPv6: ip6tables-save dump, DNAT with brackets, MASQUERADE to the interface address', () => {
  const r6 = rs(
    {
      nat: ['-A PREROUTING -d fd00::1/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:10::5]:8080', '-A POSTROUTING -s 2001:db8::/32 -j MASQUERADE'],
      filter: ['policy FORWARD DROP', '-A FORWARD -d fd00:10::/64 -p tcp -m tcp --dport 8080 -j ACCEPT'],
    },
    6,
  );
  assert.equal(r6.family, 6);
  const o = only(trace(r6, { dst: 'fd00::1', dport: 80, src: '2001:db8::7', localIps: ['fd00::1', 'fd00:10::1@cni0'], routes: ['fd00:10::/64=cni0'] }));
  assert.equal(o.verdict, 'ACCEPT');
  assert.equal(o.destination, '[fd00:10::5]:8080');
  assert.equal(o.source, '[fd00:10::1]:40000');
  assert.throws(() => trace(r6, { dst: '10.0.0.1', dport: 80 }), /IPv4 but the dump is IPv6/);
});
