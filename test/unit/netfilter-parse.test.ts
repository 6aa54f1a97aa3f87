import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSave } from '../../src/netfilter/parse-save.js';
import { parseListing } from '../../src/netfilter/parse-listing.js';
import { loadRuleset } from '../../src/netfilter/index.js';
import { RulesetParseError, ruleCount, type Match } from '../../src/netfilter/ruleset.js';
import { inferLocalAddresses } from '../../src/netfilter/infer.js';
import { tokenize, parseRuleArgs } from '../../src/netfilter/parse-rule.js';
import { dump } from './netfilter-helpers.js';

const args = (s: string) => parseRuleArgs(tokenize(s));

test('tokenizer keeps quoted words whole and unescapes \\"', () => {
  const t = tokenize('-A X -m comment --comment "a \\"quoted\\" word" -j ACCEPT');
  assert.deepEqual(
    t.words,
    ['-A', 'X', '-m', 'comment', '--comment', 'a "quoted" word', '-j', 'ACCEPT'],
  );
  assert.throws(() => tokenize('-m comment --comment "open'), /unterminated/);
});

test('negation before and after the option', () => {
  const before = args('! -s 10.0.0.0/8 -m tcp -p tcp ! --dport 80 -j ACCEPT');
  const after = args('-s ! 10.0.0.0/8 -p tcp -m tcp --dport ! 80 -j ACCEPT');
  const pick = (ms: Match[]) => ms.filter((m) => m.kind === 'addr' || m.kind === 'port').map((m) => `${m.kind}:${(m as { neg: boolean }).neg}`);
  assert.deepEqual(pick(before.matches), ['addr:true', 'port:true']);
  assert.deepEqual(pick(after.matches), ['addr:true', 'port:true']);
});

test('goto, counters, implicit protocol match, multiport and unknown options', () => {
  const g = args('-p udp --dport 53 -g KUBE-X');
  assert.deepEqual(g.target, { kind: 'goto', chain: 'KUBE-X' });
  assert.equal(g.matches.find((m) => m.kind === 'port')?.kind, 'port');
  const u = args('-m tcp -p tcp --tcp-option 5 -m owner --uid-owner 0 -m limit --limit 3/s -j ACCEPT');
  assert.equal(u.unmodelled.length, 3, JSON.stringify(u.unmodelled));
  assert.ok(u.unmodelled.some((x) => x.includes('--uid-owner 0')));
  const mp = args('-p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT');
  const port = mp.matches.find((m) => m.kind === 'port');
  assert.deepEqual(port && port.kind === 'port' ? port.ranges : null, [[80, 80], [443, 443], [8000, 8080]]);
  const c = parseSave('*filter\n:INPUT ACCEPT [5:300]\n[7:420] -A INPUT -j ACCEPT\nCOMMIT\n');
  const ch = c.tables.get('filter')!.chains.get('INPUT')!;
  assert.equal(ch.counters?.packets, 5n);
  assert.equal(ch.rules[0]!.counters?.bytes, 420n);
});

test('MARK forms all reduce to (mark & ~mask) ^ value', () => {
  const t = (s: string) => args(`-j MARK ${s}`).target;
  assert.deepEqual(t('--set-xmark 0x4000/0x4000'), { kind: 'MARK', value: 0x4000, mask: 0x4000 });
  assert.deepEqual(t('--or-mark 0x4000'), { kind: 'MARK', value: 0x4000, mask: 0x4000 });
  assert.deepEqual(t('--xor-mark 0x4000'), { kind: 'MARK', value: 0x4000, mask: 0 });
  assert.deepEqual(t('--and-mark 0xff'), { kind: 'MARK', value: 0, mask: 0xffffff00 });
  assert.deepEqual(t('--set-mark 0x1'), { kind: 'MARK', value: 1, mask: 0xffffffff });
});

test('all five tables, policies and line numbers; ip6tables-save sets the family', () => {
  const text = dump({
    raw: ['-A PREROUTING -j NOTRACK'],
    mangle: ['-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff'],
    nat: ['-A PREROUTING -j KUBE-SERVICES', ':KUBE-SERVICES'],
    filter: ['policy FORWARD DROP', '-A FORWARD -j ACCEPT'],
    security: ['-A INPUT -j ACCEPT'],
  });
  const r = parseSave(text);
  assert.deepEqual([...r.tables.keys()], ['raw', 'mangle', 'nat', 'filter', 'security']);
  assert.equal(r.tables.get('filter')!.chains.get('FORWARD')!.policy, 'DROP');
  const rule = r.tables.get('raw')!.chains.get('PREROUTING')!.rules[0]!;
  assert.equal(text.split('\n')[rule.line - 1], rule.text);
  const v6 = parseSave(dump({ filter: ['-A INPUT -s fd00::/64 -j ACCEPT'] }, 6));
  assert.equal(v6.family, 6);
});

test('bad dumps: errors name the line', () => {
  const bad: [string, RegExp][] = [
    ['*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j NOWHERE\nCOMMIT\n', /line 3: jump to chain "NOWHERE"/],
    ['*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j ACCEPT\n', /line \d+: table nat \(line 1\) has no COMMIT/],
    ['*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n', /line 3: table filter/],
    ['*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.300 -j ACCEPT\nCOMMIT\n', /line 3: bad address/],
    ['*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n', /line 3: unterminated/],
    ['*filter\n-A NOPE -j ACCEPT\nCOMMIT\n', /line 2: rule for chain "NOPE"/],
    ['*bogus\nCOMMIT\n', /line 1: unknown table/],
    ['-A INPUT -j ACCEPT\n', /line 1: .*before any \*table/],
    ['*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j MARK\nCOMMIT\n', /line 3: MARK needs/],
    ['*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m statistic --mode random --probability 2 -j ACCEPT\nCOMMIT\n', /line 3: bad statistic/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parseSave(text, { source: 'x.save' }), (e: unknown) => e instanceof RulesetParseError && re.test(e.message), text);
  }
  assert.throws(() => loadRuleset('hello\nworld\n'), /line 1: neither iptables-save/);
});

test("a rule's matches, parsed again when first read, are those of its arguments (counters and -I N skipped)", () => {
  const text = [
    '*filter', ':INPUT ACCEPT [0:0]', ':A - [3:4]',
    '[5:6] -A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -m comment --comment "a \\"b\\" c" -j A',
    '-I INPUT 1 ! -d 192.168.0.1/32 -m conntrack --ctstate NEW -j ACCEPT',
    '-A A -m statistic --mode random --probability 0.5 -j RETURN',
    'COMMIT', '',
  ].join('\n');
  const r = parseSave(text);
  const rules = [...r.tables.get('filter')!.chains.values()].flatMap((c) => c.rules);
  assert.equal(rules.length, 3);
  for (const rule of rules) {
    const words = tokenize(rule.text);
    const start = words.words.indexOf(rule.chain) + 1 + (words.words.includes('-I') ? 1 : 0);
    assert.deepEqual(rule.matches, parseRuleArgs(words, start).matches, rule.text);
    assert.equal(rule.matches, rule.matches, 'parsed once');
    assert.equal(rule.spec, rule.text);
  }
  assert.deepEqual(rules.find((x) => x.counters)!.counters, { packets: 5n, bytes: 6n });
  assert.deepEqual(r.tables.get('filter')!.chains.get('A')!.counters, { packets: 3n, bytes: 4n });
});

test('user chains are read on demand: order, -I into one, counts and node-address inference without reading the rest', () => {
  const text = [
    '*nat', ':PREROUTING ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]', ':KUBE-NODEPORTS - [0:0]', ':KUBE-SEP-A - [0:0]', ':KUBE-X - [0:0]',
    '-A PREROUTING -j KUBE-SERVICES',
    '-A KUBE-SERVICES -d 192.168.0.2/32 -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    '-A KUBE-SEP-A -s 10.0.0.1/32 -j RETURN',
    '-A KUBE-SEP-A -p tcp -j DNAT --to-destination 10.0.0.1:80',
    '-A KUBE-X -j RETURN', '-I KUBE-X 1 -j ACCEPT', '-A KUBE-X -j DROP',
    'COMMIT', '',
  ].join('\n');
  const rs = parseSave(text);
  const nat = rs.tables.get('nat')!;
  assert.equal(ruleCount(rs), 7);
  assert.equal(nat.chains.get('KUBE-SEP-A')!.mayNameNodeAddresses, false);
  assert.deepEqual(inferLocalAddresses(rs).map((i) => i.addr.text), ['192.168.0.2']);
  assert.equal(nat.chains.get('KUBE-SEP-A')!.mayNameNodeAddresses, false, 'inference did not read KUBE-SEP-A');
  const sep = nat.chains.get('KUBE-SEP-A')!.rules;
  assert.deepEqual(sep.map((r) => [r.line, r.chain, r.target?.kind]), [[9, 'KUBE-SEP-A', 'RETURN'], [10, 'KUBE-SEP-A', 'DNAT']]);
  assert.equal(sep[1]!.text, '-A KUBE-SEP-A -p tcp -j DNAT --to-destination 10.0.0.1:80');
  assert.deepEqual(nat.chains.get('KUBE-X')!.rules.map((r) => r.target?.kind), ['ACCEPT', 'RETURN', 'DROP']);
});

test('restore payload commands: -I, -N, -X, -F, -P', () => {
  const r = parseSave('*filter\n:INPUT ACCEPT [0:0]\n-N A\n-A INPUT -j ACCEPT\n-I INPUT -j DROP\n-I INPUT 2 -j RETURN\n-N B\n-X B\n-P INPUT DROP\nCOMMIT\n');
  const ch = r.tables.get('filter')!.chains.get('INPUT')!;
  assert.deepEqual(ch.rules.map((x) => x.target?.kind), ['DROP', 'RETURN', 'ACCEPT']);
  assert.equal(ch.policy, 'DROP');
  assert.ok(!r.tables.get('filter')!.chains.has('B'));
  assert.throws(() => parseSave('*filter\n:A - [0:0]\n:INPUT ACCEPT [0:0]\n-A INPUT -j A\n-X A\nCOMMIT\n'), /line 5: deleted chain A is referenced by line 4/);
});

const LISTING_V = `Chain PREROUTING (policy ACCEPT 2 packets, 1152 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1    10837 3999K KUBE-SERVICES  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service portals */
2      238 27286 DOCKER     all  --  *      *       0.0.0.0/0            0.0.0.0/0            ADDRTYPE match dst-type LOCAL

Chain DOCKER (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 RETURN     all  --  docker0 *      0.0.0.0/0            0.0.0.0/0

Chain KUBE-SERVICES (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-SVC-X  tcp  --  *      *       0.0.0.0/0            10.0.0.1             /* ns/svc: cluster IP */ tcp dpt:80
2        0     0 KUBE-FW-X  tcp  --  *      *      !10.0.0.0/8           10.0.0.2             multiport dports 80,443 ctstate NEW,ESTABLISHED mark match ! 0x4000/0x4000

Chain KUBE-SVC-X (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-SEP-A  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* ns/svc: */ statistic mode random probability 0.33333333349
2        0     0 KUBE-SEP-A  all  --  *      *       0.0.0.0/0            0.0.0.0/0            recent: CHECK seconds: 10800 reap name: KUBE-SEP-A side: source mask: 255.255.255.255
3        0     0            all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* counting only */

Chain KUBE-FW-X (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 REJECT     udp  --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpts:1000:2000 reject-with icmp-port-unreachable
2        0     0 MASQUERADE  all  --  *      !docker0  10.0.0.0/8           0.0.0.0/0            PHYSDEV match --physdev-is-bridged

Chain KUBE-SEP-A (2 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 MARK       all  --  *      *       10.1.0.5             0.0.0.0/0            MARK or 0x4000
2        0     0 DNAT       tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            tcp to:10.1.0.5:8080
`;

test('listing with -v and --line-numbers: columns and extras become matches', () => {
  const r = parseListing(LISTING_V);
  assert.equal([...r.tables.keys()].join(), 'nat', 'the table is inferred from DNAT/KUBE-SVC chains');
  const specs = [...r.tables.get('nat')!.chains.values()].flatMap((c) => c.rules.map((x) => x.spec));
  assert.deepEqual(specs, [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
    '-A DOCKER -i docker0 -j RETURN',
    '-A KUBE-SERVICES -d 10.0.0.1 -p tcp -m comment --comment "ns/svc: cluster IP" -m tcp --dport 80 -j KUBE-SVC-X',
    '-A KUBE-SERVICES ! -s 10.0.0.0/8 -d 10.0.0.2 -p tcp -m multiport --dports 80,443 -m conntrack --ctstate NEW,ESTABLISHED -m mark ! --mark 0x4000/0x4000 -j KUBE-FW-X',
    '-A KUBE-SVC-X -m comment --comment ns/svc: -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A',
    '-A KUBE-SVC-X -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --rsource -j KUBE-SEP-A',
    '-A KUBE-SVC-X -m comment --comment "counting only"',
    '-A KUBE-FW-X -p udp -m udp --dport 1000:2000 -j REJECT --reject-with icmp-port-unreachable',
    '-A KUBE-FW-X -s 10.0.0.0/8 ! -o docker0 -j MASQUERADE',
    '-A KUBE-SEP-A -s 10.1.0.5 -j MARK --or-mark 0x4000',
    '-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.1.0.5:8080',
  ]);
  const masq = r.tables.get('nat')!.chains.get('KUBE-FW-X')!.rules[1]!;
  assert.deepEqual(masq.unmodelled, ['PHYSDEV match --physdev-is-bridged'], 'unknown extras are kept verbatim and flagged');
  assert.equal(r.tables.get('nat')!.chains.get('PREROUTING')!.counters?.bytes, 1152n);
  assert.equal(r.tables.get('nat')!.chains.get('KUBE-SERVICES')!.rules[0]!.line, 12);
});

test('listing without -v, without -n (anywhere, service names), with the table from a pasted command', () => {
  const text = `[root@n1 ~]# iptables -t mangle -L
Chain PREROUTING (policy ACCEPT)
target     prot opt source               destination
ACCEPT     tcp  --  anywhere             10.0.0.1             tcp dpt:https
MARK       all  --  anywhere             anywhere             MARK xset 0x1/0xffffffff
`;
  const r = parseListing(text);
  assert.deepEqual([...r.tables.keys()], ['mangle']);
  assert.deepEqual(
    r.tables.get('mangle')!.chains.get('PREROUTING')!.rules.map((x) => x.spec),
    ['-A PREROUTING -d 10.0.0.1 -p tcp -m tcp --dport https -j ACCEPT', '-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff'],
  );
  const forced = parseListing(text.split('\n').slice(1).join('\n'), { table: 'raw' });
  assert.deepEqual([...forced.tables.keys()], ['raw']);
  const filter = parseListing('Chain INPUT (policy DROP)\ntarget prot opt source destination\nACCEPT all -- 127.0.0.1 0.0.0.0/0\n');
  assert.deepEqual([...filter.tables.keys()], ['filter']);
  assert.equal(filter.tables.get('filter')!.chains.get('INPUT')!.policy, 'DROP');
});

test('listing errors name the line', () => {
  assert.throws(() => parseListing('Chain INPUT (policy ACCEPT)\ntarget prot opt source destination\nthis is not a rule\n', { source: 'l.txt' }), /l\.txt: line 3: cannot read the rule row/);
  assert.throws(() => parseListing('ACCEPT all -- 0.0.0.0/0 0.0.0.0/0\nChain INPUT (policy ACCEPT)\n'), /line 1: a rule row before any "Chain" line/);
});
