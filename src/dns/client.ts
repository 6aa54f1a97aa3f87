// A minimal stub-resolver query: one question to one server over UDP, retried
// over TCP when the answer comes back truncated (what glibc does). Used by
// `kproxy resolve` and by the tests.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';

export interface QueryResult {
  rcode: string;
  flags: number;
  aa: boolean;
  tc: boolean;
  answers: dnsPacket.Answer[];
  authorities: dnsPacket.Answer[];
  additionals: dnsPacket.Answer[];
  transport: 'udp' | 'tcp';
  ms: number;
}

export interface QueryOptions {
  timeoutMs?: number;
  /** Go straight to TCP. */
  tcp?: boolean;
  /** Do not retry over TCP on TC (to observe truncation). */
  noTcpRetry?: boolean;
  /** Advertise EDNS0 with this UDP size (none when undefined). */
  ednsSize?: number;
  recursionDesired?: boolean;
}

export class QueryTimeout extends Error {}

function encode(id: number, name: string, type: string, o: QueryOptions): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: o.recursionDesired === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    additionals: o.ednsSize ? [{ type: 'OPT', name: '.', udpPayloadSize: o.ednsSize, flags: 0 } as dnsPacket.Answer] : [],
  });
}

function result(p: dnsPacket.Packet, transport: 'udp' | 'tcp', start: number): QueryResult {
  const flags = p.flags ?? 0;
  return {
    rcode: (p as { rcode?: string }).rcode ?? 'NOERROR',
    flags,
    aa: (flags & dnsPacket.AUTHORITATIVE_ANSWER) !== 0,
    tc: (flags & dnsPacket.TRUNCATED_RESPONSE) !== 0,
    answers: p.answers ?? [],
    authorities: p.authorities ?? [],
    additionals: (p.additionals ?? []).filter((a) => a.type !== 'OPT'),
    transport,
    ms: Date.now() - start,
  };
}

export async function query(server: { host: string; port: number }, name: string, type = 'A', o: QueryOptions = {}): Promise<QueryResult> {
  const start = Date.now();
  if (!o.tcp) {
    const r = await queryUdp(server, name, type, o, start);
    if (!r.tc || o.noTcpRetry) return r;
  }
  return queryTcp(server, name, type, o, start);
}

function queryUdp(server: { host: string; port: number }, name: string, type: string, o: QueryOptions, start: number): Promise<QueryResult> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const sock = dgram.createSocket(net.isIP(server.host) === 6 ? 'udp6' : 'udp4');
    const done = (f: () => void) => {
      clearTimeout(timer);
      sock.close();
      f();
    };
    const timer = setTimeout(() => done(() => reject(new QueryTimeout(`no answer from ${server.host}:${server.port} within ${o.timeoutMs ?? 2000} ms`))), o.timeoutMs ?? 2000);
    sock.on('error', (e) => done(() => reject(e)));
    sock.on('message', (msg) => {
      let p: dnsPacket.Packet;
      try {
        p = dnsPacket.decode(msg);
      } catch {
        return;
      }
      if (p.id !== id) return;
      done(() => resolve(result(p, 'udp', start)));
    });
    sock.send(encode(id, name, type, o), server.port, server.host);
  });
}

/**
 * One DNS message over TCP (RFC 7766 two-byte length framing): connects,
 * sends `q`, resolves with the first whole reply. Shared by the stub client
 * and the forwarder.
 */
export function exchangeTcp(server: { host: string; port: number }, q: Buffer, timeoutMs: number, onTimeout: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    const fail = (e: Error) => {
      sock.destroy();
      reject(e);
    };
    sock.setTimeout(timeoutMs, () => fail(onTimeout()));
    sock.on('error', fail);
    sock.on('connect', () => {
      const len = Buffer.allocUnsafe(2);
      len.writeUInt16BE(q.length);
      sock.write(Buffer.concat([len, q]));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        sock.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
  });
}

async function queryTcp(server: { host: string; port: number }, name: string, type: string, o: QueryOptions, start: number): Promise<QueryResult> {
  const timeoutMs = o.timeoutMs ?? 2000;
  const reply = await exchangeTcp(server, encode(randomInt(0, 65536), name, type, o), timeoutMs, () => new QueryTimeout(`no answer from ${server.host}:${server.port} (tcp) within ${timeoutMs} ms`));
  return result(dnsPacket.decode(reply), 'tcp', start);
}
