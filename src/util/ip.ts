// IP and CIDR parsing the way Kubernetes does it (netutils.ParseIPSloppy /
// ParseCIDRSloppy): IPv4 octets with leading zeros are read as decimal
// ("172.30.0.041" → 172.30.0.41), CIDRs are masked to their network
// ("203.0.113.000/025" → 203.0.113.0/25), IPv6 is printed in RFC 5952 form,
// and IPv4-mapped IPv6 prints as IPv4 (as Go's net.IP.String does).

export type Family = 4 | 6;

export interface ParsedIP {
  family: Family;
  /** 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6. */
  bytes: Uint8Array;
}

function parseV4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^[0-9]{1,3}$/.test(p)) return null;
    const n = Number.parseInt(p, 10);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | null {
  if (s.includes('%')) return null; // zones are not valid in Kubernetes objects
  let head = s;
  let v4tail: Uint8Array | null = null;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.slice(lastColon + 1).includes('.')) {
    v4tail = parseV4(s.slice(lastColon + 1));
    if (!v4tail) return null;
    head = s.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = head.split('::');
  if (dbl.length > 2) return null;
  const toGroups = (x: string): number[] | null => {
    if (x === '') return [];
    const gs = x.split(':');
    const out: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(Number.parseInt(g, 16));
    }
    return out;
  };
  const left = toGroups(dbl[0]!);
  const right = dbl.length === 2 ? toGroups(dbl[1]!) : [];
  if (!left || !right) return null;
  let groups: number[];
  if (dbl.length === 2) {
    const fill = 8 - left.length - right.length;
    if (fill < 1) return null;
    groups = [...left, ...new Array<number>(fill).fill(0), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (v4tail) out.set(v4tail, 12);
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Parses an IP address sloppily, as Kubernetes does. Returns null when it is not an IP. */
export function parseIP(input: string): ParsedIP | null {
  const s = input.trim();
  if (s === '') return null;
  if (!s.includes(':')) {
    const b = parseV4(s);
    return b ? { family: 4, bytes: b } : null;
  }
  const b = parseV6(s);
  if (!b) return null;
  if (isV4Mapped(b)) return { family: 4, bytes: b.slice(12) };
  return { family: 6, bytes: b };
}

export function formatIP(ip: ParsedIP): string {
  const b = ip.bytes;
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Whether s is an IPv4 address in canonical form already ("10.0.0.1": four decimal
 * octets, no leading zeros, nothing around them). Almost every address in real input is,
 * and checking costs no allocation; parsing and re-printing builds several strings.
 */
export function isCanonicalIPv4(s: string): boolean {
  const len = s.length;
  if (len < 7 || len > 15) return false;
  let dots = 0;
  let digits = 0;
  let octet = 0;
  let first = 0;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return false;
      digits = 0;
      octet = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 0) first = c;
      else if (first === 0x30) return false; // a leading zero: ParseIPSloppy reads it, the canonical form drops it
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return false;
    } else return false;
  }
  return dots === 3 && digits > 0;
}

/** The canonical text of an IP, or null when the input is not an IP. */
export function normalizeIP(s: string): string | null {
  if (isCanonicalIPv4(s)) return s;
  const p = parseIP(s);
  return p ? formatIP(p) : null;
}

export function ipFamily(s: string): Family | null {
  if (isCanonicalIPv4(s)) return 4;
  return parseIP(s)?.family ?? null;
}

export interface ParsedCIDR {
  family: Family;
  /** Network address bytes (host bits cleared). */
  bytes: Uint8Array;
  prefix: number;
}

export function parseCIDR(input: string): ParsedCIDR | null {
  const s = input.trim();
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIP(s.slice(0, slash));
  const plen = s.slice(slash + 1);
  if (!ip || !/^[0-9]{1,3}$/.test(plen)) return null;
  // A mapped IPv6 CIDR (::ffff:a.b.c.d/N) has a 128-bit prefix length; keep it IPv6-sized.
  let bytes = ip.bytes;
  let family = ip.family;
  let prefix = Number.parseInt(plen, 10);
  if (ip.family === 4 && s.slice(0, slash).includes(':')) {
    if (prefix < 96) return null;
    prefix -= 96;
  }
  const bits = bytes.length * 8;
  if (prefix > bits) return null;
  bytes = maskBytes(bytes, prefix);
  return { family, bytes, prefix };
}

function maskBytes(b: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(b);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

export function formatCIDR(c: ParsedCIDR): string {
  return `${formatIP({ family: c.family, bytes: c.bytes })}/${c.prefix}`;
}

/** The canonical text of a CIDR, or null when the input is not one. */
export function normalizeCIDR(s: string): string | null {
  const c = parseCIDR(s);
  return c ? formatCIDR(c) : null;
}

/** Whether `ip` lies in `cidr`. A bare IP as `cidr` means a host route (/32 or /128). */
export function cidrContains(cidr: string | ParsedCIDR, ip: string | ParsedIP): boolean {
  const c = typeof cidr === 'string' ? (cidr.includes('/') ? parseCIDR(cidr) : hostCIDR(cidr)) : cidr;
  const a = typeof ip === 'string' ? parseIP(ip) : ip;
  if (!c || !a || c.family !== a.family) return false;
  const m = maskBytes(a.bytes, c.prefix);
  for (let i = 0; i < m.length; i++) if (m[i] !== c.bytes[i]) return false;
  return true;
}

function hostCIDR(s: string): ParsedCIDR | null {
  const p = parseIP(s);
  return p ? { family: p.family, bytes: p.bytes, prefix: p.bytes.length * 8 } : null;
}

export function ipToBigInt(ip: ParsedIP): bigint {
  let v = 0n;
  for (const byte of ip.bytes) v = (v << 8n) | BigInt(byte);
  return v;
}

export function bigIntToIP(v: bigint, family: Family): ParsedIP {
  const n = family === 4 ? 4 : 16;
  const bytes = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return { family, bytes };
}

/** net.JoinHostPort: IPv6 hosts in brackets. */
export function joinHostPort(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits "ip:port" / "[ip6]:port"; port is undefined when absent. */
export function splitHostPort(s: string): { host: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (m) return { host: m[1]!, port: m[2] ? Number(m[2]) : undefined };
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const [h, p] = s.split(':');
    return { host: h!, port: p ? Number(p) : undefined };
  }
  return { host: s };
}
