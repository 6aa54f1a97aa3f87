// Garbage at the server (seeded, so a failure replays): random bytes, mutated
// and truncated valid queries, odd counts, types and classes, oversized
// datagrams and TCP frames. Every reply must be a well-formed response, no
// handler may throw, and valid queries must still be answered correctly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { DnsServer } from '../../src/dns/server.js';
import { query } from '../../src/dns/client.js';
import { clusterState } from './dns-fixtures.js';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = [
  'kubernetes.default.svc.cluster.local',
  '_mysql._tcp.db.default.svc.cluster.local',
  'big.default.svc.cluster.local',
  '1.0.96.10.in-addr.arpa',
  'dns-version.cluster.local',
  'example.com',
  'x.y.z.w.v.default.svc.cluster.local',
];

function packets(seed: number, n: number): Buffer[] {
  const rnd = mulberry32(seed);
  const int = (max: number) => Math.floor(rnd() * max);
  const valid = () =>
    dnsPacket.encode({
      type: 'query',
      id: int(65536),
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: NAMES[int(NAMES.length)]!, type: ['A', 'AAAA', 'SRV', 'PTR', 'TXT', 'ANY', 'SOA', 'NS', 'MX'][int(9)] as dnsPacket.RecordType, class: 'IN' }],
      additionals: rnd() < 0.5 ? [{ type: 'OPT', name: '.', udpPayloadSize: int(65536), flags: 0 } as dnsPacket.Answer] : [],
    });
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const kind = int(8);
    let b: Buffer;
    switch (kind) {
      case 0: // random bytes
        b = Buffer.from(Array.from({ length: int(600) }, () => int(256)));
        break;
      case 1: {
        // mutated valid query
        b = valid();
        for (let k = 0, m = 1 + int(6); k < m; k++) b[int(b.length)] = int(256);
        break;
      }
      case 2: // truncated valid query
        b = valid().subarray(0, int(40));
        break;
      case 3: {
        // weird qtype / qclass
        b = valid();
        const qEnd = b.length - (b.readUInt16BE(10) ? 11 : 0);
        b.writeUInt16BE(int(65536), qEnd - 4);
        b.writeUInt16BE([0, 1, 3, 4, 254, 255, int(65536)][int(7)]!, qEnd - 2);
        break;
      }
      case 4: {
        // header counts lying
        b = valid();
        for (const off of [4, 6, 8, 10]) if (rnd() < 0.5) b.writeUInt16BE(int(65536), off);
        break;
      }
      case 5: {
        // opcodes, QR set, flags
        b = valid();
        b[2] = int(256);
        b[3] = int(256);
        break;
      }
      case 6: {
        // compression pointers and long labels in the question
        b = valid();
        b[12 + int(8)] = rnd() < 0.5 ? 0xc0 | int(64) : 63 + int(192);
        break;
      }
      default: // oversized
        b = Buffer.concat([valid(), Buffer.alloc(1000 + int(20000), int(256))]);
    }
    out.push(b);
  }
  return out;
}

function checkResponse(b: Buffer): void {
  assert.ok(b.length >= 12, 'response shorter than a header');
  assert.ok(b[2]! & 0x80, 'QR bit');
  dnsPacket.decode(b); // must decode
}

test('fuzz: UDP and TCP garbage never breaks the server', async () => {
  const server = new DnsServer({ listen: ['127.0.0.1:0'], noForward: true, pods: 'insecure' });
  server.setState(clusterState());
  await server.start();
  const port = server.addresses().udp[0]!.port;
  try {
    // UDP: send in bursts, collect whatever comes back.
    const pk = packets(0xc0ffee, 4000);
    const sock = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (let i = 0; i < pk.length; i += 200) {
      await Promise.all(pk.slice(i, i + 200).map((b) => new Promise<void>((r) => sock.send(b, port, '127.0.0.1', () => r()))));
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 300));
    sock.close();
    assert.ok(replies.length > 1000, `only ${replies.length} replies`);
    for (const r of replies) checkResponse(r);

    // TCP: frames of garbage on a few connections, some cut mid-frame.
    const tpk = packets(0xbeef, 600);
    let tcpReplies = 0;
    for (let c = 0; c < 6; c++) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        let buf = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            checkResponse(buf.subarray(2, 2 + buf.readUInt16BE(0)));
            tcpReplies++;
            buf = buf.subarray(2 + buf.readUInt16BE(0));
          }
        });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('connect', () => {
          const frames = tpk.slice(c * 100, (c + 1) * 100).map((b) => {
            const l = Buffer.alloc(2);
            l.writeUInt16BE(Math.min(b.length, 65535));
            return Buffer.concat([l, b.subarray(0, 65535)]);
          });
          const all = Buffer.concat(frames);
          // Odd connections stop mid-frame: the server must just wait, then time out or see the close.
          s.end(c % 2 ? all.subarray(0, all.length - 7) : all);
        });
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 3000);
      });
    }
    assert.ok(tcpReplies > 100, `only ${tcpReplies} TCP replies`);

    assert.equal(server.stats.errors, 0, 'a handler threw');
    // Still serving, and correctly, on both transports.
    for (const tcp of [false, true]) {
      const r = await query({ host: '127.0.0.1', port }, 'kubernetes.default.svc.cluster.local', 'A', { tcp });
      assert.deepEqual(r.answers.map((a) => (a as { data: string }).data), ['10.96.0.1']);
      const srv = await query({ host: '127.0.0.1', port }, '_mysql._tcp.db.default.svc.cluster.local', 'SRV', { tcp });
      assert.equal(srv.answers.length, 3);
      assert.equal((await query({ host: '127.0.0.1', port }, 'nope.default.svc.cluster.local', 'A', { tcp })).rcode, 'NXDOMAIN');
    }
  } finally {
    await server.close();
  }
});

test('specific malformed queries get the right RCODE', async () => {
  const server = new DnsServer({ listen: ['127.0.0.1:0'], noForward: true });
  server.setState(clusterState());
  const ok = dnsPacket.encode({ type: 'query', id: 7, flags: 0, questions: [{ name: 'kubernetes.default.svc.cluster.local', type: 'A', class: 'IN' }] });
  const rc = (b: Buffer | null) => (b ? b[3]! & 0x0f : null);
  const h = (b: Buffer) => server.handle(b, 'udp') as Buffer | null;
  assert.equal(rc(h(ok)), 0);
  // Short header → drop; a response → drop.
  assert.equal(h(Buffer.alloc(5)), null);
  const resp = Buffer.from(ok);
  resp[2]! |= 0x80;
  assert.equal(h(resp), null);
  // Truncated question → FORMERR with the id kept.
  const trunc = h(ok.subarray(0, 20))!;
  assert.equal(rc(trunc), 1);
  assert.equal(trunc.readUInt16BE(0), 7);
  // Two questions → FORMERR.
  const two = Buffer.from(ok);
  two.writeUInt16BE(2, 4);
  assert.equal(rc(h(two)), 1);
  // NOTIFY / UPDATE opcodes → NOTIMP.
  for (const opcode of [2, 4, 5]) {
    const b = Buffer.from(ok);
    b[2] = opcode << 3;
    assert.equal(rc(h(b)), 4, `opcode ${opcode}`);
  }
  // CHAOS and HESIOD classes → REFUSED; ANY class answered like IN.
  for (const [klass, want] of [[3, 5], [4, 5], [255, 0]] as const) {
    const b = Buffer.from(ok);
    b.writeUInt16BE(klass, b.length - 2);
    assert.equal(rc(h(b)), want, `class ${klass}`);
  }
  // AXFR → REFUSED.
  const axfr = Buffer.from(ok);
  axfr.writeUInt16BE(252, axfr.length - 4);
  assert.equal(rc(h(axfr)), 5);
  // An unknown type on an existing name → NODATA, on a missing name → NXDOMAIN.
  const odd = Buffer.from(ok);
  odd.writeUInt16BE(65280, odd.length - 4);
  assert.equal(rc(h(odd)), 0);
});

test('a record that cannot be encoded costs SERVFAIL for that name only', async () => {
  const { svc } = await import('./dns-fixtures.js');
  const st = clusterState();
  st.services.push(svc('default', 'badext', { type: 'ExternalName', externalName: `${'x'.repeat(70)}.example.test`, ipFamilies: [], selector: undefined }));
  const server = new DnsServer({ listen: ['127.0.0.1:0'], noForward: true });
  server.setState(st);
  const q = (name: string) =>
    server.handle(dnsPacket.encode({ type: 'query', id: 9, flags: 0, questions: [{ name, type: 'CNAME', class: 'IN' }] }), 'udp') as Buffer;
  assert.equal(q('badext.default.svc.cluster.local')[3]! & 0x0f, 2);
  assert.equal(q('ext.default.svc.cluster.local')[3]! & 0x0f, 0);
  assert.equal(server.stats.errors, 1);
});
