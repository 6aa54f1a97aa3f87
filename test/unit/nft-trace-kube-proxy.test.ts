// `kproxy trace` on upstream kube-proxy's nftables table (test/fixtures/kube-proxy-nft):
// the transaction and the kernel's listing of it give the same outcomes, hook by hook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NftParseError, parseNft, traceNft, type NftPacket } from '../../src/netfilter/nft-trace.js';

const dir = new URL('../../../test/fixtures/kube-proxy-nft/', import.meta.url);
const forms = { transaction: readFileSync(new URL('table.nft', dir), 'utf8'), listing: readFileSync(new URL('table.listing', dir), 'utf8') };
const NODE = '192.168.0.2';

function outcomes(text: string, p: Partial<NftPacket> & { dst: string; dport: number }): string[] {
  const r = traceNft(parseNft(text), { proto: 'tcp', src: '198.18.0.1', localIps: [NODE], ...p });
  assert.equal(r.table, 'ip kube-proxy');
  const sum = r.outcomes.reduce((a, o) => a + o.probability, 0);
  assert.ok(Math.abs(sum - 1) < 1e-9, `probabilities add up to 1: ${sum}`);
  return r.outcomes.map((o) => `${Math.round(o.probability * 100)}% ${o.verdict} ${o.destination}${o.masquerade ? ' masq' : ''}`).sort();
}

for (const [form, text] of Object.entries(forms)) {
  test(`kube-proxy table (${form}): ClusterIP, NodePort and masquerade`, () => {
    const web = ['10.1.0.11', '10.1.0.12', '10.1.0.13'];
    assert.deepEqual(outcomes(text, { src: '10.9.0.5', dst: '172.30.1.10', dport: 80 }), web.map((ip) => `33% ACCEPT ${ip}:8080`), 'a pod source is not masqueraded');
    assert.deepEqual(outcomes(text, { dst: '172.30.1.10', dport: 80 }), web.map((ip) => `33% ACCEPT ${ip}:8080 masq`), 'an off-cluster source is');
    assert.deepEqual(outcomes(text, { dst: NODE, dport: 30080 }), web.map((ip) => `33% ACCEPT ${ip}:8080 masq`));
    // Hairpin: the endpoint chain marks a pod reaching itself.
    assert.deepEqual(outcomes(text, { src: '10.1.0.12', dst: '172.30.1.10', dport: 80 }), ['33% ACCEPT 10.1.0.11:8080', '33% ACCEPT 10.1.0.12:8080 masq', '33% ACCEPT 10.1.0.13:8080']);
  });

  test(`kube-proxy table (${form}): eTP Local, source ranges, node-local traffic`, () => {
    assert.deepEqual(outcomes(text, { dst: '198.51.100.20', dport: 443 }), ['100% DROP 198.51.100.20:443'], 'outside loadBalancerSourceRanges');
    assert.deepEqual(outcomes(text, { src: '203.0.113.7', dst: '198.51.100.20', dport: 443 }), ['100% ACCEPT 10.1.0.21:8443'], 'allowed, local endpoint only, source kept');
    assert.deepEqual(outcomes(text, { dst: NODE, dport: 30443 }), ['100% ACCEPT 10.1.0.21:8443']);
    assert.deepEqual(outcomes(text, { src: NODE, dst: NODE, dport: 30443, iif: '' }), ['50% ACCEPT 10.1.0.21:8443 masq', '50% ACCEPT 10.2.0.22:8443 masq'], 'from the node: all endpoints, masqueraded');
  });

  test(`kube-proxy table (${form}): no endpoints, unknown ports and addresses`, () => {
    assert.deepEqual(outcomes(text, { src: '10.9.0.5', dst: '172.30.1.99', dport: 80 }), ['100% REJECT 172.30.1.99:80']);
    assert.deepEqual(outcomes(text, { src: '10.9.0.5', dst: '172.30.1.10', dport: 81 }), ['100% REJECT 172.30.1.10:81'], 'a ClusterIP port no service has');
    assert.deepEqual(outcomes(text, { src: '10.9.0.5', dst: '172.30.9.9', dport: 80 }), ['100% DROP 172.30.9.9:80'], 'an unallocated ClusterIP');
    assert.deepEqual(outcomes(text, { src: '10.9.0.5', dst: '10.1.0.11', dport: 8080 }), ['100% ACCEPT 10.1.0.11:8080'], 'not a service: left alone');
  });

  test(`kube-proxy table (${form}): session affinity and the endpoint map`, () => {
    assert.deepEqual(outcomes(text, { proto: 'udp', src: '10.1.0.77', dst: '172.30.1.53', dport: 53 }), ['100% ACCEPT 10.1.0.32:53'], 'a remembered client');
    assert.deepEqual(outcomes(text, { proto: 'udp', src: '10.1.0.78', dst: '172.30.1.53', dport: 53 }), ['50% ACCEPT 10.1.0.31:53', '50% ACCEPT 10.1.0.32:53']);
    assert.deepEqual(outcomes(text, { src: '10.1.0.9', dst: '172.30.1.40', dport: 80 }), ['50% ACCEPT 10.1.0.41:8080', '50% ACCEPT 10.1.0.42:8080']);
  });
}

test('each outcome carries its own path; the text shows what they share once', () => {
  const r = traceNft(parseNft(forms.listing), { proto: 'tcp', src: '198.18.0.1', dst: NODE, dport: 30080, localIps: [NODE] });
  assert.equal(r.outcomes.length, 3);
  assert.ok(r.outcomes[1]!.path.some((l) => l.includes('dnat to 10.1.0.12:8080')));
  assert.ok(r.outcomes.every((o) => o.path.some((l) => l.includes('masquerade fully-random'))), 'postrouting masquerades each');
  assert.ok(r.path[0]!.startsWith('filter-prerouting-pre-dnat: '), 'the walk starts at the lowest-priority prerouting chain');
});

test('a rule the walker cannot read is named; a table without base chains is refused', () => {
  const bad = forms.transaction.replace('add rule ip kube-proxy reject-chain reject', 'add rule ip kube-proxy reject-chain osf name "Linux" reject');
  assert.throws(() => traceNft(parseNft(bad), { proto: 'tcp', src: '10.9.0.5', dst: '172.30.1.99', dport: 80, localIps: [NODE] }), (e: Error) => e instanceof NftParseError && /reject-chain: cannot read "osf name/.test(e.message));
  const noBase = forms.transaction.split('\n').filter((l) => !/hook/.test(l)).join('\n');
  assert.throws(() => traceNft(parseNft(noBase), { proto: 'tcp', src: '10.9.0.5', dst: '172.30.1.10', dport: 80, localIps: [NODE] }), /no base chains/);
});

test('the IPv6 table (transaction and listing): ip6 matches, bracketed DNAT targets', () => {
  for (const f of ['table6.nft', 'table6.listing']) {
    const rs = parseNft(readFileSync(new URL(f, dir), 'utf8'));
    const t = (src: string, dst: string) =>
      traceNft(rs, { proto: 'tcp', src, dst, dport: 80, localIps: ['fd00:1::2'] }).outcomes.map((o) => `${o.probability} ${o.verdict} ${o.destination}${o.masquerade ? ' masq' : ''}`);
    assert.deepEqual(t('fd00:77::9', 'fd00:96::10'), ['0.5 ACCEPT [fd00:10::1]:8080 masq', '0.5 ACCEPT [fd00:10::2]:8080 masq'], f);
    assert.deepEqual(t('fd00:10::2', 'fd00:96::10'), ['0.5 ACCEPT [fd00:10::1]:8080', '0.5 ACCEPT [fd00:10::2]:8080 masq'], `${f}: hairpin`);
    assert.deepEqual(t('fd00:10::9', 'fd00:96::11'), ['1 DROP [fd00:96::11]:80'], `${f}: unallocated`);
  }
});
