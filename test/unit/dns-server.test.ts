// The record table, served over UDP and TCP on 127.0.0.1 and queried with
// real clients: dig (dnsutils) and Node's resolver.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { exec } from '../../src/util/exec.js';
import { DnsServer, startDnsServer } from '../../src/dns/server.js';
import { query } from '../../src/dns/client.js';
import { BIG, clusterState, FakeSource, svc, port } from './dns-fixtures.js';

let server: DnsServer;
let P = 0;
const host = '127.0.0.1';

interface Dig {
  status: string;
  flags: string[];
  answer: string[][];
  authority: string[][];
  additional: string[][];
}

/** Runs dig and parses its sections into whitespace-split records. */
async function dig(args: string[], p = P): Promise<Dig> {
  const r = await exec('dig', [`@${host}`, '-p', String(p), '+time=2', '+tries=1', ...args], { timeoutMs: 10_000 });
  const out: Dig = { status: '', flags: [], answer: [], authority: [], additional: [] };
  let section: keyof Dig | null = null;
  for (const line of r.stdout.split('\n')) {
    const st = /status: (\w+)/.exec(line);
    if (st) out.status = st[1]!;
    const fl = /;; flags: ([^;]*);/.exec(line);
    if (fl) out.flags = fl[1]!.trim().split(/\s+/);
    if (line.startsWith(';; ANSWER SECTION')) section = 'answer';
    else if (line.startsWith(';; AUTHORITY SECTION')) section = 'authority';
    else if (line.startsWith(';; ADDITIONAL SECTION')) section = 'additional';
    else if (line.trim() === '' || line.startsWith(';')) {
      if (line.trim() === '') section = null;
    } else if (section) (out[section] as string[][]).push(line.trim().split(/\s+/));
  }
  return out;
}

before(async () => {
  server = new DnsServer({ listen: [`${host}:0`], noForward: true, pods: 'insecure', ttl: 5 });
  server.setState(clusterState());
  await server.start();
  P = server.addresses().udp[0]!.port;
  assert.equal(server.addresses().tcp[0]!.port, P);
});

after(async () => {
  await server.close();
});

for (const transport of ['udp', 'tcp'] as const) {
  const t = transport === 'tcp' ? ['+tcp'] : [];

  test(`${transport}: A of a ClusterIP service, authoritative, TTL 5, the query's case kept`, async () => {
    const d = await dig([...t, 'KubeRnetes.default.svc.cluster.local', 'A']);
    assert.equal(d.status, 'NOERROR');
    assert.ok(d.flags.includes('aa'), 'AA bit');
    assert.deepEqual(d.answer, [['KubeRnetes.default.svc.cluster.local.', '5', 'IN', 'A', '10.96.0.1']]);
  });

  test(`${transport}: dual-stack service: A and AAAA, one per family`, async () => {
    assert.deepEqual((await dig([...t, 'web.default.svc.cluster.local', 'A'])).answer.map((r) => r[4]), ['10.96.100.10']);
    assert.deepEqual((await dig([...t, 'web.default.svc.cluster.local', 'AAAA'])).answer.map((r) => r[4]), ['fd00:10:96::100a']);
  });

  test(`${transport}: NODATA (NOERROR, empty answer, SOA) for an existing name without the type`, async () => {
    const d = await dig([...t, 'kubernetes.default.svc.cluster.local', 'AAAA']);
    assert.equal(d.status, 'NOERROR');
    assert.equal(d.answer.length, 0);
    assert.equal(d.authority.length, 1);
    const soa = d.authority[0]!;
    assert.deepEqual(soa.slice(0, 6), ['cluster.local.', '5', 'IN', 'SOA', 'ns.dns.cluster.local.', 'hostmaster.cluster.local.']);
    assert.deepEqual(soa.slice(7), ['7200', '1800', '86400', '5']);
  });

  test(`${transport}: NXDOMAIN for names that do not exist`, async () => {
    for (const n of ['nope.default.svc.cluster.local', 'kubernetes.nons.svc.cluster.local', 'a.b.c.kubernetes.default.svc.cluster.local', 'foo.cluster.local', 'empty.default.svc.cluster.local']) {
      const d = await dig([...t, n, 'A']);
      assert.equal(d.status, 'NXDOMAIN', n);
      assert.equal(d.authority[0]?.[3], 'SOA', n);
      assert.ok(d.flags.includes('aa'), n);
    }
  });

  test(`${transport}: apex, svc and namespace names are NODATA`, async () => {
    for (const n of ['cluster.local', 'svc.cluster.local', 'default.svc.cluster.local', 'kube-system.svc.cluster.local']) {
      const d = await dig([...t, n, 'A']);
      assert.equal(d.status, 'NOERROR', n);
      assert.equal(d.answer.length, 0, n);
    }
  });

  test(`${transport}: headless service: ready endpoints only; publishNotReadyAddresses includes not-ready ones`, async () => {
    const d = await dig([...t, 'db.default.svc.cluster.local', 'A']);
    assert.deepEqual(d.answer.map((r) => r[4]).sort(), ['10.244.1.10', '10.244.2.11']);
    const v6 = await dig([...t, 'db.default.svc.cluster.local', 'AAAA']);
    assert.deepEqual(v6.answer.map((r) => r[4]), ['fd00:244::b']);
    assert.deepEqual((await dig([...t, 'pnr.default.svc.cluster.local', 'A'])).answer.map((r) => r[4]), ['10.244.4.4']);
  });

  test(`${transport}: endpoint hostnames and dashed IPs`, async () => {
    assert.deepEqual((await dig([...t, 'db-1.db.default.svc.cluster.local'])).answer.map((r) => r[4]), ['10.244.2.11']);
    assert.deepEqual((await dig([...t, 'fd00-244--b.db.default.svc.cluster.local', 'AAAA'])).answer.map((r) => r[4]), ['fd00:244::b']);
    // ClusterIP services have endpoint names too (CoreDNS: "endpoint query or headless").
    assert.deepEqual((await dig([...t, '10-244-2-6.web.default.svc.cluster.local'])).answer.map((r) => r[4]), ['10.244.2.6']);
    // Not-ready endpoints have no name.
    assert.equal((await dig([...t, '10-244-3-7.web.default.svc.cluster.local'])).status, 'NXDOMAIN');
  });

  test(`${transport}: SRV of a ClusterIP service targets the service, A in additional`, async () => {
    const d = await dig([...t, '_https._tcp.kubernetes.default.svc.cluster.local', 'SRV']);
    assert.deepEqual(d.answer, [['_https._tcp.kubernetes.default.svc.cluster.local.', '5', 'IN', 'SRV', '0', '100', '443', 'kubernetes.default.svc.cluster.local.']]);
    assert.deepEqual(d.additional, [['kubernetes.default.svc.cluster.local.', '5', 'IN', 'A', '10.96.0.1']]);
    const dns = await dig([...t, '_dns._udp.kube-dns.kube-system.svc.cluster.local', 'SRV']);
    assert.deepEqual(dns.answer.map((r) => r.slice(4)), [['0', '100', '53', 'kube-dns.kube-system.svc.cluster.local.']]);
    // Wrong protocol or unnamed port: NXDOMAIN.
    assert.equal((await dig([...t, '_https._udp.kubernetes.default.svc.cluster.local', 'SRV'])).status, 'NXDOMAIN');
    // The bare service name answers SRV for every port, unnamed ones too.
    const bare = await dig([...t, 'unnamed.default.svc.cluster.local', 'SRV']);
    assert.deepEqual(bare.answer.map((r) => r.slice(4)), [['0', '100', '8080', 'unnamed.default.svc.cluster.local.']]);
  });

  test(`${transport}: SRV of a headless service: one per endpoint, weight floor(100/n), A/AAAA in additional`, async () => {
    const d = await dig([...t, '_mysql._tcp.db.default.svc.cluster.local', 'SRV']);
    assert.deepEqual(
      d.answer.map((r) => r.slice(4)).sort(),
      [
        ['0', '33', '3306', 'db-0.db.default.svc.cluster.local.'],
        ['0', '33', '3306', 'db-1.db.default.svc.cluster.local.'],
        ['0', '33', '3306', 'fd00-244--b.db.default.svc.cluster.local.'],
      ],
    );
    assert.deepEqual(
      d.additional.map((r) => [r[0], r[3], r[4]]).sort(),
      [
        ['db-0.db.default.svc.cluster.local.', 'A', '10.244.1.10'],
        ['db-1.db.default.svc.cluster.local.', 'A', '10.244.2.11'],
        ['fd00-244--b.db.default.svc.cluster.local.', 'AAAA', 'fd00:244::b'],
      ],
    );
  });

  test(`${transport}: PTR for ClusterIPs and endpoint IPs, IPv4 and IPv6`, async () => {
    assert.deepEqual((await dig([...t, '-x', '10.96.0.1'])).answer.map((r) => r[4]), ['kubernetes.default.svc.cluster.local.']);
    assert.deepEqual((await dig([...t, '-x', 'fd00:10:96::100a'])).answer.map((r) => r[4]), ['web.default.svc.cluster.local.']);
    assert.deepEqual((await dig([...t, '-x', '10.244.1.10'])).answer.map((r) => r[4]), ['db-0.db.default.svc.cluster.local.']);
    assert.deepEqual((await dig([...t, '-x', 'fd00:244::b'])).answer.map((r) => r[4]), ['fd00-244--b.db.default.svc.cluster.local.']);
    // Unknown IP with forwarding off: NXDOMAIN from the reverse zone.
    const nx = await dig([...t, '-x', '192.0.2.77']);
    assert.equal(nx.status, 'NXDOMAIN');
    assert.equal(nx.authority[0]?.[0], 'in-addr.arpa.');
  });

  test(`${transport}: ExternalName is a CNAME (chased inside the zone)`, async () => {
    const d = await dig([...t, 'ext.default.svc.cluster.local', 'CNAME']);
    assert.deepEqual(d.answer, [['ext.default.svc.cluster.local.', '5', 'IN', 'CNAME', 'www.example.test.']]);
    const a = await dig([...t, 'alias.default.svc.cluster.local', 'A']);
    assert.deepEqual(a.answer.map((r) => [r[3], r[4]]), [['CNAME', 'kubernetes.default.svc.cluster.local.'], ['A', '10.96.0.1']]);
    // No SRV for external services; no endpoint names under them.
    const srv = await dig([...t, 'ext.default.svc.cluster.local', 'SRV']);
    assert.equal(srv.status, 'NOERROR');
    assert.equal(srv.answer.length, 0);
    assert.equal((await dig([...t, 'x.ext.default.svc.cluster.local'])).status, 'NXDOMAIN');
  });

  test(`${transport}: pod records (insecure): A of the dashed IP in an existing namespace`, async () => {
    assert.deepEqual((await dig([...t, '10-244-1-5.default.pod.cluster.local'])).answer.map((r) => r[4]), ['10.244.1.5']);
    assert.deepEqual((await dig([...t, '1-2-3-4.apps.pod.cluster.local'])).answer.map((r) => r[4]), ['1.2.3.4']);
    assert.equal((await dig([...t, '1-2-3-4.nons.pod.cluster.local'])).status, 'NXDOMAIN');
    assert.equal((await dig([...t, 'not-an-ip.default.pod.cluster.local'])).status, 'NXDOMAIN');
  });

  test(`${transport}: SOA at the apex, dns-version TXT, NS`, async () => {
    const soa = await dig([...t, 'cluster.local', 'SOA']);
    assert.equal(soa.answer[0]?.[3], 'SOA');
    const txt = await dig([...t, 'dns-version.cluster.local', 'TXT']);
    assert.deepEqual(txt.answer, [['dns-version.cluster.local.', '28800', 'IN', 'TXT', '"1.1.0"']]);
    const ns = await dig([...t, 'cluster.local', 'NS']);
    assert.deepEqual(ns.answer.map((r) => r[4]), ['ns.dns.cluster.local.']);
    assert.deepEqual(ns.additional.map((r) => r[4]), ['10.96.0.10']);
  });
}

test('udp: a large headless answer sets TC; dig retries over TCP and gets every address', async () => {
  const noRetry = await dig(['+ignore', '+noedns', 'big.default.svc.cluster.local']);
  assert.ok(noRetry.flags.includes('tc'), `TC expected, flags ${noRetry.flags.join(' ')}`);
  assert.ok(noRetry.answer.length < BIG);
  const full = await dig(['+noedns', 'big.default.svc.cluster.local']);
  assert.equal(full.answer.length, BIG);
  assert.ok(!full.flags.includes('tc'));
});

test('EDNS0: the client\'s UDP size is honoured and the OPT echoed; BADVERS for version 1', async () => {
  // 60 A records ≈ 1000 bytes: fits in 4096, not in 512.
  const big = await query({ host, port: P }, 'big.default.svc.cluster.local', 'A', { ednsSize: 4096, noTcpRetry: true });
  assert.equal(big.tc, false);
  assert.equal(big.answers.length, BIG);
  const small = await query({ host, port: P }, 'big.default.svc.cluster.local', 'A', { ednsSize: 600, noTcpRetry: true });
  assert.equal(small.tc, true);
  const r = await exec('dig', [`@${host}`, '-p', String(P), '+edns=0', '+bufsize=1400', 'kubernetes.default.svc.cluster.local']);
  assert.match(r.stdout, /; EDNS: version: 0, flags:; udp: \d+/);
  const bad = await exec('dig', [`@${host}`, '-p', String(P), '+edns=1', '+noednsneg', 'kubernetes.default.svc.cluster.local']);
  assert.match(bad.stdout, /status: BADVERS/);
});

test("Node's resolver: A, AAAA, SRV, PTR, CNAME, TXT; NXDOMAIN → ENOTFOUND, NODATA → ENODATA", async () => {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`${host}:${P}`]);
  assert.deepEqual(await r.resolve4('tiller-deploy.kube-system.svc.cluster.local'), ['10.108.160.127']);
  assert.deepEqual(await r.resolve6('web.default.svc.cluster.local'), ['fd00:10:96::100a']);
  const srv = await r.resolveSrv('_https._tcp.kubernetes.default.svc.cluster.local');
  assert.deepEqual(srv, [{ name: 'kubernetes.default.svc.cluster.local', port: 443, priority: 0, weight: 100 }]);
  assert.deepEqual(await r.reverse('10.96.0.10'), ['kube-dns.kube-system.svc.cluster.local']);
  assert.deepEqual(await r.resolveCname('ext.default.svc.cluster.local'), ['www.example.test']);
  assert.deepEqual(await r.resolveTxt('dns-version.cluster.local'), [['1.1.0']]);
  await assert.rejects(r.resolve4('nope.default.svc.cluster.local'), { code: 'ENOTFOUND' });
  await assert.rejects(r.resolve6('kubernetes.default.svc.cluster.local'), { code: 'ENODATA' });
  assert.deepEqual((await r.resolve4('big.default.svc.cluster.local')).length, BIG);
});

test('names outside the zone get REFUSED when forwarding is off', async () => {
  const d = await dig(['example.com', 'A']);
  assert.equal(d.status, 'REFUSED');
});

test('before the first sync the zone answers SERVFAIL, then follows every change of the source', async () => {
  const src = new FakeSource();
  const s = await startDnsServer(src, { listen: [`${host}:0`], noForward: true });
  try {
    const p = s.addresses().udp[0]!.port;
    assert.equal((await dig(['kubernetes.default.svc.cluster.local'], p)).status, 'SERVFAIL');
    src.emitState(clusterState());
    assert.deepEqual((await dig(['kubernetes.default.svc.cluster.local'], p)).answer.map((r) => r[4]), ['10.96.0.1']);
    const st = clusterState();
    st.services.push(svc('default', 'fresh', { clusterIPs: ['10.96.200.1'], ports: [port('http', 80)] }));
    st.services = st.services.filter((x) => x.meta.name !== 'kubernetes');
    src.emitState(st);
    assert.deepEqual((await dig(['fresh.default.svc.cluster.local'], p)).answer.map((r) => r[4]), ['10.96.200.1']);
    assert.equal((await dig(['kubernetes.default.svc.cluster.local'], p)).status, 'NXDOMAIN');
  } finally {
    await s.close();
  }
});

test('pods verified: only IPs of pods in that namespace', async () => {
  const s = new DnsServer({ listen: [`${host}:0`], noForward: true, pods: 'verified' });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().udp[0]!.port;
    assert.deepEqual((await dig(['10-244-1-5.default.pod.cluster.local'], p)).answer.map((r) => r[4]), ['10.244.1.5']);
    assert.equal((await dig(['10-244-1-5.apps.pod.cluster.local'], p)).status, 'NXDOMAIN');
    assert.equal((await dig(['1-2-3-4.default.pod.cluster.local'], p)).status, 'NXDOMAIN');
  } finally {
    await s.close();
  }
});

test('pods disabled (the default): pod names are NXDOMAIN', async () => {
  const s = new DnsServer({ listen: [`${host}:0`], noForward: true });
  s.setState(clusterState());
  await s.start();
  try {
    assert.equal((await dig(['10-244-1-5.default.pod.cluster.local'], s.addresses().udp[0]!.port)).status, 'NXDOMAIN');
  } finally {
    await s.close();
  }
});

test('IPv6 listener: queries over ::1', async () => {
  const s = new DnsServer({ listen: ['[::1]:0'], noForward: true });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().udp[0]!.port;
    const r = await exec('dig', ['@::1', '-p', String(p), '+short', 'kubernetes.default.svc.cluster.local']);
    assert.equal(r.stdout.trim(), '10.96.0.1');
    const t = await exec('dig', ['@::1', '-p', String(p), '+tcp', '+short', 'kubernetes.default.svc.cluster.local']);
    assert.equal(t.stdout.trim(), '10.96.0.1');
  } finally {
    await s.close();
  }
});

test('TCP: several queries on one connection (pipelined), answered in order', async () => {
  const names = ['kubernetes.default.svc.cluster.local', 'web.default.svc.cluster.local', 'nope.default.svc.cluster.local'];
  const sock = net.connect({ host, port: P });
  const frames = names.map((name, i) => {
    const q = dnsPacket.encode({ type: 'query', id: 100 + i, flags: 0, questions: [{ name, type: 'A', class: 'IN' }] });
    const l = Buffer.alloc(2);
    l.writeUInt16BE(q.length);
    return Buffer.concat([l, q]);
  });
  const got = await new Promise<dnsPacket.DecodedPacket[]>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: dnsPacket.DecodedPacket[] = [];
    const timer = setTimeout(() => reject(new Error('timeout')), 3000);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === names.length) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    sock.on('connect', () => sock.write(Buffer.concat(frames)));
  });
  sock.destroy();
  assert.deepEqual(got.map((p) => p.id), [100, 101, 102]);
  assert.deepEqual(got.map((p) => (p as { rcode?: string }).rcode), ['NOERROR', 'NOERROR', 'NXDOMAIN']);
});

test('TCP: an idle connection is closed after the idle timeout; a half-sent frame does not hold the server', async () => {
  const s = new DnsServer({ listen: [`${host}:0`], noForward: true, tcpIdleMs: 300 });
  s.setState(clusterState());
  await s.start();
  try {
    const p = s.addresses().tcp[0]!.port;
    const t0 = Date.now();
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const sock = net.connect({ host, port: p });
      sock.on('connect', () => sock.write(Buffer.from([0, 40, 1, 2, 3])));
      sock.on('close', () => resolve(Date.now() - t0));
      sock.on('error', () => undefined);
      setTimeout(() => reject(new Error('not closed within 5 s')), 5000);
    });
    assert.ok(closedAfter >= 250, `closed after ${closedAfter} ms`);
    const r = await query({ host, port: p }, 'kubernetes.default.svc.cluster.local', 'A', { tcp: true });
    assert.equal(r.answers.length, 1);
  } finally {
    await s.close();
  }
});
