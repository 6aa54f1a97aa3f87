// Forwarding names outside the zone to an upstream the test starts (dnsmasq
// on loopback), the cache, ExternalName targets resolved upstream, and dead
// or silent upstreams → SERVFAIL within a bounded time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { exec } from '../../src/util/exec.js';
import { waitFor } from '../../src/lab/netns.js';
import { DnsServer } from '../../src/dns/server.js';
import { query } from '../../src/dns/client.js';
import { clusterState } from './dns-fixtures.js';

let dnsmasq: ChildProcess;

function ttl(a: unknown): number {
  return (a as { ttl?: number } | undefined)?.ttl ?? 99;
}
let upPort = 0;

async function startDnsmasq(): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    upPort = 20000 + Math.floor(Math.random() * 40000);
    dnsmasq = spawn(
      'dnsmasq',
      [
        '--no-daemon', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${upPort}`,
        '--user=root', '--pid-file=', '--local-ttl=20',
        '--address=/example.test/192.0.2.1', '--local=/nx.test/', '--txt-record=txt.example.test,hello',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let exited = false;
    dnsmasq.on('exit', () => (exited = true));
    try {
      await waitFor('dnsmasq', async () => {
        if (exited) throw new Error('dnsmasq exited');
        const r = await query({ host: '127.0.0.1', port: upPort }, 'www.example.test', 'A', { timeoutMs: 200 }).catch(() => null);
        return r !== null;
      }, 5000, 100);
      return;
    } catch {
      dnsmasq.kill('SIGKILL');
    }
  }
  throw new Error('could not start dnsmasq');
}

before(startDnsmasq);
after(() => {
  dnsmasq.kill('SIGKILL');
});

async function dig(port: number, args: string[]): Promise<string> {
  return (await exec('dig', ['@127.0.0.1', '-p', String(port), '+time=5', '+tries=1', ...args], { timeoutMs: 15_000 })).stdout;
}

test('names outside the zone are forwarded (recursion available, not authoritative); NXDOMAIN passes through', async () => {
  const s = new DnsServer({ listen: ['127.0.0.1:0'], upstreams: [{ host: '127.0.0.1', port: upPort }] });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().udp[0]!.port;
    const out = await dig(p, ['www.example.test']);
    assert.match(out, /status: NOERROR/);
    assert.match(out, /flags: qr rd ra;/);
    assert.match(out, /www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
    assert.match(await dig(p, ['+tcp', 'txt.example.test', 'TXT']), /"hello"/);
    assert.match(await dig(p, ['gone.nx.test']), /status: NXDOMAIN/);
    // The cluster zone is still ours.
    assert.match(await dig(p, ['+short', 'kubernetes.default.svc.cluster.local']), /^10\.96\.0\.1$/m);
    assert.ok(s.stats.forwarded >= 3);
  } finally {
    await s.close();
  }
});

test('ExternalName: CNAME plus the target resolved upstream', async () => {
  const s = new DnsServer({ listen: ['127.0.0.1:0'], upstreams: [{ host: '127.0.0.1', port: upPort }] });
  s.setState(clusterState());
  await s.start();
  try {
    const out = await dig(s.addresses().udp[0]!.port, ['ext.default.svc.cluster.local']);
    assert.match(out, /ext\.default\.svc\.cluster\.local\.\s+5\s+IN\s+CNAME\s+www\.example\.test\./);
    assert.match(out, /www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
  } finally {
    await s.close();
  }
});

test('the cache answers while the upstream is gone, with decreasing TTLs', async () => {
  const s = new DnsServer({ listen: ['127.0.0.1:0'], upstreams: [{ host: '127.0.0.1', port: upPort }], forwardTimeoutMs: 300 });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().udp[0]!.port;
    const first = await query({ host: '127.0.0.1', port: p }, 'cached.example.test', 'A');
    assert.equal(ttl(first.answers[0]), 20);
    dnsmasq.kill('SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 1100));
      const again = await query({ host: '127.0.0.1', port: p }, 'CACHED.example.test', 'A');
      assert.equal((again.answers[0] as { data: string }).data, '192.0.2.1');
      assert.ok(ttl(again.answers[0]) < 20, `TTL ${ttl(again.answers[0])} should have decreased`);
      // Not cached: the stopped upstream does not answer → SERVFAIL after the timeout.
      const t0 = Date.now();
      const miss = await query({ host: '127.0.0.1', port: p }, 'uncached.example.test', 'A', { timeoutMs: 3000 });
      assert.equal(miss.rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      dnsmasq.kill('SIGCONT');
    }
  } finally {
    await s.close();
  }
});

test('dead and silent upstreams: SERVFAIL within a bounded time, the next upstream is tried', async () => {
  // A port with nothing behind it (ICMP unreachable) and a socket that swallows queries.
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
  const silentPort = silent.address().port;
  const closed = dgram.createSocket('udp4');
  await new Promise<void>((r) => closed.bind(0, '127.0.0.1', () => r()));
  const closedPort = closed.address().port;
  closed.close();
  const s = new DnsServer({
    listen: ['127.0.0.1:0'],
    upstreams: [{ host: '127.0.0.1', port: closedPort }, { host: '127.0.0.1', port: silentPort }],
    forwardTimeoutMs: 400,
  });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().udp[0]!.port;
    const t0 = Date.now();
    const r = await query({ host: '127.0.0.1', port: p }, 'www.example.test', 'A', { timeoutMs: 5000 });
    const ms = Date.now() - t0;
    assert.equal(r.rcode, 'SERVFAIL');
    assert.ok(ms < 2000, `SERVFAIL after ${ms} ms`);
    // The zone is unaffected.
    assert.equal((await query({ host: '127.0.0.1', port: p }, 'kubernetes.default.svc.cluster.local', 'A')).answers.length, 1);
  } finally {
    silent.close();
    await s.close();
  }
  // A dead first upstream, a working second one: the answer comes from the second.
  const s2 = new DnsServer({
    listen: ['127.0.0.1:0'],
    upstreams: [{ host: '127.0.0.1', port: closedPort }, { host: '127.0.0.1', port: upPort }],
    forwardTimeoutMs: 400,
  });
  s2.setState(clusterState());
  await s2.start();
  try {
    const r = await query({ host: '127.0.0.1', port: s2.addresses().udp[0]!.port }, 'two.example.test', 'A', { timeoutMs: 5000 });
    assert.equal((r.answers[0] as { data: string } | undefined)?.data, '192.0.2.1');
  } finally {
    await s2.close();
  }
});
