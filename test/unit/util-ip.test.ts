import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeIP, normalizeCIDR, cidrContains, joinHostPort, splitHostPort, ipFamily, isCanonicalIPv4, parseIP, formatIP } from '../../src/util/ip.js';

test('IPs normalize like netutils.ParseIPSloppy', () => {
  assert.equal(normalizeIP('172.30.0.041'), '172.30.0.41');
  assert.equal(normalizeIP(' 10.0.0.1 '), '10.0.0.1');
  assert.equal(normalizeIP('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
  assert.equal(normalizeIP('2001:db8:0:1:0:0:1:1'), '2001:db8:0:1::1:1');
  assert.equal(normalizeIP('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(normalizeIP('::'), '::');
  assert.equal(normalizeIP('fd00:0:0:1:0:0:0:0'), 'fd00:0:0:1::');
  for (const bad of ['', '1.2.3', '256.1.1.1', '1.2.3.4.5', 'abc', '1::2::3', 'fe80::1%eth0', '1.2.3.-1'])
    assert.equal(normalizeIP(bad), null, bad);
});

test('the canonical-IPv4 fast path agrees with parse + print on every kind of input', () => {
  const inputs = ['0.0.0.0', '10.0.0.1', '255.255.255.255', '1.2.3.4', '192.168.100.200', '01.2.3.4', '1.2.3.04', '1.2.3.00',
    '256.1.1.1', '1.2.3.256', '1.2.3', '1.2.3.4.', '.1.2.3', '1..2.3', '1.2.3.4.5', '1.2.3.1000', ' 1.2.3.4', '1.2.3.4 ',
    '1.2.3.-1', '1.2.3.+1', '1.2.3.a', '::1', '::ffff:1.2.3.4', '', '1234.1.1.1', '999.999.999.999'];
  for (const s of inputs) {
    const p = parseIP(s);
    const slow = p ? formatIP(p) : null;
    assert.equal(isCanonicalIPv4(s), slow === s && p!.family === 4, s);
    assert.equal(normalizeIP(s), slow, s);
    assert.equal(ipFamily(s), p ? p.family : null, s);
  }
});

test('CIDRs normalize and mask like netutils.ParseCIDRSloppy', () => {
  assert.equal(normalizeCIDR('203.0.113.000/025'), '203.0.113.0/25');
  assert.equal(normalizeCIDR(' 10.1.2.3/8'), '10.0.0.0/8');
  assert.equal(normalizeCIDR('fd00:10::5/64'), 'fd00:10::/64');
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/x', 'fd00::/129']) assert.equal(normalizeCIDR(bad), null, bad);
});

test('cidrContains', () => {
  assert.ok(cidrContains('10.0.0.0/8', '10.244.1.2'));
  assert.ok(!cidrContains('10.0.0.0/8', '11.0.0.1'));
  assert.ok(!cidrContains('10.0.0.0/8', 'fd00::1'));
  assert.ok(cidrContains('fd00:10::/64', 'fd00:10::abcd'));
  assert.ok(cidrContains('0.0.0.0/0', '1.2.3.4'));
  assert.ok(cidrContains('1.2.3.4', '1.2.3.4'));
  assert.equal(ipFamily('fd00::1'), 6);
});

test('host:port join and split', () => {
  assert.equal(joinHostPort('fd00::1', 80), '[fd00::1]:80');
  assert.equal(joinHostPort('10.0.0.1', 80), '10.0.0.1:80');
  assert.deepEqual(splitHostPort('[fd00::1]:80'), { host: 'fd00::1', port: 80 });
  assert.deepEqual(splitHostPort('10.0.0.1:53'), { host: '10.0.0.1', port: 53 });
  assert.deepEqual(splitHostPort('10.0.0.1'), { host: '10.0.0.1' });
});
