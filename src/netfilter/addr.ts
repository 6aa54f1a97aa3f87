// Addresses and prefixes in the form the simulator compares fast: IPv4 as an
// unsigned 32-bit number, IPv6 as a bigint. Parsing reuses src/util/ip.ts so
// the tracer reads addresses exactly as the rest of kproxy does.
import { parseIP, formatIP, ipToBigInt, bigIntToIP, type Family } from '../util/ip.js';

export interface Addr {
  family: Family;
  /** IPv4 value (unsigned); 0 for IPv6. */
  v4: number;
  /** IPv6 value; 0n for IPv4. */
  v6: bigint;
  text: string;
}

export interface Cidr {
  family: Family;
  prefix: number;
  v4net: number;
  v4mask: number;
  v6net: bigint;
  v6mask: bigint;
  /** As iptables-save prints it (a host prefix keeps its /32 or /128). */
  text: string;
}

/** Dotted-quad fast path (the common case in large dumps); null when not plain a.b.c.d. */
function fastV4(s: string): number | null {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return null;
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else return null;
  }
  if (dots !== 3 || digits === 0 || part > 255) return null;
  return v * 256 + part;
}

export function parseAddr(s: string): Addr | null {
  const f = fastV4(s);
  // The input is already canonical unless a part has a leading zero ("10.01.0.1").
  if (f !== null) return { family: 4, v4: f, v6: 0n, text: /(^|\.)0\d/.test(s) ? addrFromV4(f).text : s };
  const p = parseIP(s);
  if (!p) return null;
  if (p.family === 4) {
    const b = p.bytes;
    return { family: 4, v4: ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0, v6: 0n, text: formatIP(p) };
  }
  return { family: 6, v4: 0, v6: ipToBigInt(p), text: formatIP(p) };
}

export function addrFromV4(n: number): Addr {
  const v = n >>> 0;
  return { family: 4, v4: v, v6: 0n, text: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}` };
}

export function addrFromV6(v: bigint): Addr {
  return { family: 6, v4: 0, v6: v, text: formatIP(bigIntToIP(v, 6)) };
}

const V6ALL = (1n << 128n) - 1n;

/**
 * Parses "a.b.c.d", "a.b.c.d/N", "a.b.c.d/255.255.0.0" (the listing prints dotted masks for
 * non-contiguous ones) and IPv6 forms. A bare address is a host prefix.
 */
export function parseCidr(input: string): Cidr | null {
  const s = input.trim();
  const slash = s.indexOf('/');
  const a = parseAddr(slash < 0 ? s : s.slice(0, slash));
  if (!a) return null;
  const bits = a.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const m = s.slice(slash + 1);
    if (/^\d{1,3}$/.test(m)) prefix = Number(m);
    else {
      const mask = parseAddr(m);
      if (!mask || mask.family !== a.family) return null;
      prefix = a.family === 4 ? countLeadingOnes32(mask.v4) : countLeadingOnes128(mask.v6);
      if (prefix < 0) return null;
    }
    if (prefix > bits) return null;
  }
  if (a.family === 4) {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { family: 4, prefix, v4net: (a.v4 & mask) >>> 0, v4mask: mask, v6net: 0n, v6mask: 0n, text: s };
  }
  const mask = prefix === 0 ? 0n : (V6ALL << BigInt(128 - prefix)) & V6ALL;
  return { family: 6, prefix, v4net: 0, v4mask: 0, v6net: a.v6 & mask, v6mask: mask, text: s };
}

function countLeadingOnes32(m: number): number {
  let n = 0;
  while (n < 32 && (m >>> (31 - n)) & 1) n++;
  // A non-contiguous mask cannot be a prefix.
  return ((m << n) >>> 0) === 0 || n === 32 ? n : -1;
}

function countLeadingOnes128(m: bigint): number {
  let n = 0;
  while (n < 128 && (m >> BigInt(127 - n)) & 1n) n++;
  return n;
}

export function cidrHas(c: Cidr, a: Addr): boolean {
  if (c.family !== a.family) return false;
  if (c.family === 4) return ((a.v4 & c.v4mask) >>> 0) === c.v4net;
  return (a.v6 & c.v6mask) === c.v6net;
}

export function addrCompare(a: Addr, b: Addr): number {
  if (a.family === 4) return a.v4 - b.v4;
  return a.v6 < b.v6 ? -1 : a.v6 > b.v6 ? 1 : 0;
}

export function addrEq(a: Addr, b: Addr): boolean {
  return a.family === b.family && a.v4 === b.v4 && a.v6 === b.v6;
}

export function isLoopback(a: Addr): boolean {
  return a.family === 4 ? a.v4 >>> 24 === 127 : a.v6 === 1n;
}

/** "ip:port" / "[ip6]:port"; the port is omitted when undefined. */
export function hostPort(a: Addr, port: number | undefined): string {
  if (port === undefined) return a.text;
  return a.family === 6 ? `[${a.text}]:${port}` : `${a.text}:${port}`;
}
