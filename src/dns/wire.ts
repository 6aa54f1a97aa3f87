// The hot path of the server, on raw bytes: reading the header, the question
// and the EDNS0 OPT record of a query, and writing responses whose answer
// section was encoded once per (name, type). dns-packet stays the codec for
// everything else (forwarded messages, tests); this file exists because
// decoding and re-encoding every query with it costs more than the lookup.
import type { RR } from './records.js';
import { parseIP } from '../util/ip.js';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export const TYPE: Record<string, number> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255,
};
export const TYPE_NAME: Record<number, string> = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));

export interface Edns {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
}

export interface Query {
  id: number;
  /** Byte 2 of the header (QR, opcode, AA, TC, RD). */
  flags1: number;
  opcode: number;
  rd: boolean;
  /** Offset just after QTYPE/QCLASS. */
  qEnd: number;
  /**
   * The question name's wire bytes as a latin1 string, lower-cased, plus the
   * qtype as one char: the response cache key, computed without building a
   * dotted name (only cache misses need that: see questionName()).
   */
  key: string;
  qtype: number;
  qclass: number;
  edns: Edns | null;
}

export type ParseResult =
  | { ok: true; query: Query }
  /** Header readable: answer with this rcode (FORMERR/NOTIMP). */
  | { ok: false; rcode: number; id: number; flags1: number }
  /** Not even a header, or a response: drop. */
  | { ok: false; drop: true };

const DROP = { ok: false as const, drop: true as const };

export function parseQuery(buf: Buffer): ParseResult {
  if (buf.length < 12) return DROP;
  const id = buf.readUInt16BE(0);
  const flags1 = buf[2]!;
  if (flags1 & 0x80) return DROP; // a response: never answer those (reflection loops)
  const opcode = (flags1 >> 3) & 0x0f;
  if (opcode !== 0) return { ok: false, rcode: RCODE.NOTIMP, id, flags1 };
  const formerr = { ok: false as const, rcode: RCODE.FORMERR, id, flags1 };
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1) return formerr;
  // The question name: plain labels only (a pointer in the first name has nothing to point at).
  let off = 12;
  for (;;) {
    if (off >= buf.length) return formerr;
    const len = buf[off]!;
    if (len === 0) break;
    if (len > 63) return formerr;
    off += 1 + len;
  }
  off++;
  if (off - 12 > 255 || off + 4 > buf.length) return formerr;
  const qtype = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const key = buf.toString('latin1', 12, off).toLowerCase() + String.fromCharCode(qtype);
  off += 4;
  const qEnd = off;
  // Skip answer/authority (none expected in a query), then find OPT among the additional records.
  let edns: Edns | null = null;
  const records = an + ns + ar;
  for (let i = 0; i < records; i++) {
    const nameEnd = skipName(buf, off);
    if (nameEnd < 0 || nameEnd + 10 > buf.length) return formerr;
    const type = buf.readUInt16BE(nameEnd);
    const rdlen = buf.readUInt16BE(nameEnd + 8);
    const end = nameEnd + 10 + rdlen;
    if (end > buf.length) return formerr;
    if (type === 41) {
      // RFC 6891: one OPT, in the additional section, owned by the root.
      if (edns || i < an + ns || nameEnd !== off + 1) return formerr;
      const ttl = buf.readUInt32BE(nameEnd + 4);
      edns = { udpSize: buf.readUInt16BE(nameEnd + 2), version: (ttl >>> 16) & 0xff, dnssecOk: (ttl & 0x8000) !== 0 };
    }
    off = end;
  }
  return { ok: true, query: { id, flags1, opcode, rd: (flags1 & 1) === 1, qEnd, key, qtype, qclass, edns } };
}

/**
 * The question name of a parsed query: `raw` keeps the client's case, `lower`
 * is for lookups. Bytes outside LDH-ish ASCII are escaped (\DDD) so they
 * cannot collide with a Kubernetes name.
 */
export function questionName(buf: Buffer): { raw: string; lower: string; odd: boolean } {
  let off = 12;
  let raw = '';
  let odd = false;
  for (;;) {
    const len = buf[off]!;
    if (len === 0) break;
    let label = '';
    for (let i = off + 1; i <= off + len; i++) {
      const c = buf[i]!;
      if (c === 0x2e || c === 0x5c || c <= 0x20 || c >= 0x7f) {
        odd = true;
        label += '\\' + String(c).padStart(3, '0');
      } else label += String.fromCharCode(c);
    }
    raw += (raw ? '.' : '') + label;
    off += 1 + len;
  }
  return { raw, lower: raw.toLowerCase(), odd };
}

function skipName(buf: Buffer, off: number): number {
  for (let n = 0; n < 128; n++) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (len > 63) return -1;
    off += 1 + len;
  }
  return -1;
}

/** Encodes names, compressing against the question name (which sits at offset 12 of every response). */
export class NameWriter {
  /** Suffix (lower-case, dotted) → offset in the message, for each label boundary of the question. */
  private readonly suffixes = new Map<string, number>();

  /** `qbuf` is the query: offsets come from its wire labels, never from a re-escaped string. */
  constructor(qbuf: Buffer) {
    const starts: number[] = [];
    const labels: string[] = [];
    let off = 12;
    while (off < qbuf.length && qbuf[off]! !== 0) {
      starts.push(off);
      labels.push(qbuf.toString('latin1', off + 1, off + 1 + qbuf[off]!).toLowerCase());
      off += 1 + qbuf[off]!;
    }
    // Suffixes from the right; one with a label that is not plain LDH could be
    // mistaken for a different split of the same text, so stop there.
    let suffix = '';
    for (let i = labels.length - 1; i >= 0; i--) {
      if (!/^[a-z0-9_-]+$/.test(labels[i]!)) break;
      suffix = suffix ? `${labels[i]}.${suffix}` : labels[i]!;
      this.suffixes.set(suffix, starts[i]!);
    }
  }

  encode(name: string, compress = true): Buffer {
    const n = name.endsWith('.') ? name.slice(0, -1) : name;
    if (n === '') return Buffer.from([0]);
    const labels = n.split('.');
    const parts: Buffer[] = [];
    for (let i = 0; i < labels.length; i++) {
      if (compress) {
        const ptr = this.suffixes.get(labels.slice(i).join('.').toLowerCase());
        if (ptr !== undefined) {
          parts.push(Buffer.from([0xc0 | (ptr >> 8), ptr & 0xff]));
          return Buffer.concat(parts);
        }
      }
      const l = Buffer.from(labels[i]!, 'ascii');
      if (l.length === 0 || l.length > 63) throw new Error(`invalid label in ${name}`);
      parts.push(Buffer.from([l.length]), l);
    }
    parts.push(Buffer.from([0]));
    return Buffer.concat(parts);
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** One resource record in wire form, owner compressed against the question. */
export function encodeRR(rr: RR, w: NameWriter): Buffer {
  let rdata: Buffer;
  switch (rr.type) {
    case 'A':
    case 'AAAA': {
      const p = parseIP(rr.data);
      if (!p) throw new Error(`bad address ${rr.data}`);
      rdata = Buffer.from(p.family === 4 && rr.type === 'AAAA' ? mapped(p.bytes) : p.bytes);
      break;
    }
    case 'PTR':
    case 'CNAME':
    case 'NS':
      rdata = w.encode(rr.data);
      break;
    case 'TXT':
      rdata = Buffer.concat(rr.data.map((s) => {
        const b = Buffer.from(s, 'utf8').subarray(0, 255);
        return Buffer.concat([Buffer.from([b.length]), b]);
      }));
      break;
    case 'SRV':
      // RFC 2782: the target is not compressed.
      rdata = Buffer.concat([u16(rr.data.priority), u16(rr.data.weight), u16(rr.data.port), w.encode(rr.data.target, false)]);
      break;
    case 'SOA':
      rdata = Buffer.concat([
        w.encode(rr.data.mname),
        w.encode(rr.data.rname),
        u32(rr.data.serial),
        u32(rr.data.refresh),
        u32(rr.data.retry),
        u32(rr.data.expire),
        u32(rr.data.minimum),
      ]);
      break;
  }
  return Buffer.concat([w.encode(rr.name), u16(TYPE[rr.type]!), u16(1), u32(rr.ttl), u16(rdata.length), rdata]);
}

function mapped(v4: Uint8Array): Uint8Array {
  const b = new Uint8Array(16);
  b[10] = 0xff;
  b[11] = 0xff;
  b.set(v4, 12);
  return b;
}

/** A response body encoded once and reused for every query of the same (name, type). */
export interface Prepared {
  rcode: number;
  aa: boolean;
  /** Encoded records per section; each element is one RR (so truncation drops whole records). */
  answers: Buffer[];
  authorities: Buffer[];
  additionals: Buffer[];
  /** All three sections concatenated, for the common case where everything fits. */
  body: Buffer;
}

export function prepare(rcode: number, aa: boolean, answers: Buffer[], authorities: Buffer[], additionals: Buffer[]): Prepared {
  return { rcode, aa, answers, authorities, additionals, body: Buffer.concat([...answers, ...authorities, ...additionals]) };
}

const OPT_LEN = 11;

/** Our OPT record: the size we accept, extended rcode, version 0, the DO bit echoed. */
function writeOpt(out: Buffer, off: number, udpSize: number, extRcode: number, dnssecOk: boolean): number {
  out[off] = 0;
  out.writeUInt16BE(TYPE.OPT!, off + 1);
  out.writeUInt16BE(udpSize, off + 3);
  out[off + 5] = extRcode;
  out[off + 6] = 0;
  out.writeUInt16BE(dnssecOk ? 0x8000 : 0, off + 7);
  out.writeUInt16BE(0, off + 9);
  return off + OPT_LEN;
}

/** The largest UDP response a client accepts: 512 without EDNS, its advertised size (bounded) with. */
export function udpLimit(q: Query | null): number {
  if (!q?.edns) return 512;
  return Math.min(Math.max(q.edns.udpSize, 512), 4096);
}

/**
 * A response to `query` (whose bytes are `qbuf`): header, the question copied
 * verbatim (so names compressed against it keep the client's case), the
 * prepared sections and, when the client used EDNS, an OPT. When `limit` is
 * exceeded, additional and authority records go first (no TC, as miekg/dns's
 * Truncate), then answers, and TC is set.
 */
export function buildResponse(qbuf: Buffer, q: Query, p: Prepared, limit: number, ra: boolean): Buffer {
  const optLen = q.edns ? OPT_LEN : 0;
  const head = q.qEnd;
  let total = head + p.body.length + optLen;
  let answers = p.answers.length;
  let authorities = p.authorities.length;
  let additionals = p.additionals.length;
  let body = p.body;
  let tc = false;
  if (total > limit) {
    const parts: Buffer[] = [];
    let size = head + optLen;
    answers = 0;
    for (const rr of p.answers) {
      if (size + rr.length > limit) {
        tc = true;
        break;
      }
      parts.push(rr);
      size += rr.length;
      answers++;
    }
    authorities = 0;
    additionals = 0;
    if (!tc) {
      for (const rr of p.authorities) {
        if (size + rr.length > limit) break;
        parts.push(rr);
        size += rr.length;
        authorities++;
      }
      if (authorities === p.authorities.length) {
        for (const rr of p.additionals) {
          if (size + rr.length > limit) break;
          parts.push(rr);
          size += rr.length;
          additionals++;
        }
      }
    }
    body = Buffer.concat(parts);
    total = size;
  }
  const out = Buffer.allocUnsafe(total);
  qbuf.copy(out, 0, 0, head);
  // QR, opcode 0, AA, TC, RD echoed; RA; rcode.
  out[2] = 0x80 | (p.aa ? 0x04 : 0) | (tc ? 0x02 : 0) | (q.flags1 & 0x01);
  out[3] = (ra ? 0x80 : 0) | (p.rcode & 0x0f);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answers, 6);
  out.writeUInt16BE(authorities, 8);
  out.writeUInt16BE(additionals + (q.edns ? 1 : 0), 10);
  body.copy(out, head);
  if (q.edns) writeOpt(out, head + body.length, 1232, p.rcode >> 4, q.edns.dnssecOk);
  return out;
}

/** A bodiless error response (FORMERR/NOTIMP/REFUSED/SERVFAIL/BADVERS), question echoed when we have one. */
export function errorResponse(
  qbuf: Buffer,
  id: number,
  flags1: number,
  rcode: number,
  q: Query | null,
  ra: boolean,
): Buffer {
  const head = q ? q.qEnd : 12;
  const optLen = q?.edns ? OPT_LEN : 0;
  const out = Buffer.alloc(head + optLen);
  if (q) qbuf.copy(out, 0, 0, head);
  out.writeUInt16BE(id, 0);
  out[2] = 0x80 | (flags1 & 0x78) | (flags1 & 0x01);
  out[3] = (ra ? 0x80 : 0) | (rcode & 0x0f);
  out.writeUInt16BE(q ? 1 : 0, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(q?.edns ? 1 : 0, 10);
  if (q?.edns) writeOpt(out, head, 1232, rcode >> 4, q.edns.dnssecOk);
  return out;
}
