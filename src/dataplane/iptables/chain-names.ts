// Per-service chain names, as upstream proxier.go computes them:
//   KUBE-SVC-/SVL-/EXT-/FW- + base32(sha256(servicePortName + protocol))[:16]
//   KUBE-SEP-               + base32(sha256(servicePortName + protocol + "ip:port"))[:16]
// where servicePortName is "ns/name" or "ns/name:port" and protocol is lower case.
// sha256 is a large cost of a render, so results are memoized per hashed string.
import { sha256 } from '../../util/sha256.js';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

const B32_CODES = Array.from(B32, (c) => c.charCodeAt(0));

/** The first 16 characters of RFC 4648 base32 (upper case) of sha256(s): exactly the first 10 digest bytes. */
export function hash16(s: string, prefix = ''): string {
  const d = sha256(s);
  // 10 bytes = 80 bits = 16 base32 digits: two groups of 5 bytes → 8 digits, with 32-bit integer ops only.
  // The prefix goes into the same string: 'KUBE-SEP-' + hash would be a two-part rope, kept as
  // such in the memo, and flattened into a second copy by every comparison of the canonical sort.
  const p = prefix.length;
  const c = new Array<number>(p + 16);
  for (let i = 0; i < p; i++) c[i] = prefix.charCodeAt(i);
  for (let g = 0, o = p; g < 10; g += 5, o += 8) {
    const b0 = d.charCodeAt(g), b1 = d.charCodeAt(g + 1), b2 = d.charCodeAt(g + 2), b3 = d.charCodeAt(g + 3), b4 = d.charCodeAt(g + 4);
    c[o] = B32_CODES[b0 >> 3]!;
    c[o + 1] = B32_CODES[((b0 & 7) << 2) | (b1 >> 6)]!;
    c[o + 2] = B32_CODES[(b1 >> 1) & 31]!;
    c[o + 3] = B32_CODES[((b1 & 1) << 4) | (b2 >> 4)]!;
    c[o + 4] = B32_CODES[((b2 & 15) << 1) | (b3 >> 7)]!;
    c[o + 5] = B32_CODES[(b3 >> 2) & 31]!;
    c[o + 6] = B32_CODES[((b3 & 3) << 3) | (b4 >> 5)]!;
    c[o + 7] = B32_CODES[b4 & 31]!;
  }
  return String.fromCharCode(...c);
}

// Memo: service port name → protocol → { its hash, endpoint → SEP hash }. Two levels of
// lookups by strings the caller already holds avoid building (and hashing) a
// concatenated key per endpoint on every render.
interface PortEntry {
  hash: string;
  eps: Map<string, string>;
}
const MAX_CACHE = 1 << 20;
let cached = 0;
const cache = new Map<string, Map<string, PortEntry>>();

function portEntry(servicePortName: string, protocol: string): PortEntry {
  const proto = protocol.toLowerCase();
  let byProto = cache.get(servicePortName);
  if (!byProto) {
    // A long-running agent sees services come and go; bound the memo rather than evict precisely.
    if (cached >= MAX_CACHE) {
      cache.clear();
      cached = 0;
    }
    cache.set(servicePortName, (byProto = new Map()));
  }
  let e = byProto.get(proto);
  if (!e) {
    byProto.set(proto, (e = { hash: hash16(servicePortName + proto), eps: new Map() }));
    cached++;
  }
  return e;
}

/** portProtoHash: the 16-character suffix shared by a service port's SVC/SVL/EXT/FW chains. */
export function servicePortHash(servicePortName: string, protocol: string): string {
  return portEntry(servicePortName, protocol).hash;
}

export function serviceChainName(servicePortName: string, protocol: string): string {
  return 'KUBE-SVC-' + servicePortHash(servicePortName, protocol);
}
export function serviceLocalChainName(servicePortName: string, protocol: string): string {
  return 'KUBE-SVL-' + servicePortHash(servicePortName, protocol);
}
export function externalChainName(servicePortName: string, protocol: string): string {
  return 'KUBE-EXT-' + servicePortHash(servicePortName, protocol);
}
export function firewallChainName(servicePortName: string, protocol: string): string {
  return 'KUBE-FW-' + servicePortHash(servicePortName, protocol);
}

/** KUBE-SEP-…: endpoint is BaseEndpointInfo.String(), i.e. JoinHostPort(ip, port). */
export function endpointChainName(servicePortName: string, protocol: string, endpoint: string): string {
  return endpointChainNamer(servicePortName, protocol)(endpoint);
}

/** endpointChainName for one service port's endpoints (the memo is looked up once, not per endpoint). */
export function endpointChainNamer(servicePortName: string, protocol: string): (endpoint: string) => string {
  const e = portEntry(servicePortName, protocol);
  const hashed = servicePortName + protocol.toLowerCase();
  return (endpoint) => {
    let h = e.eps.get(endpoint);
    if (h === undefined) {
      h = hash16(hashed + endpoint, 'KUBE-SEP-');
      e.eps.set(endpoint, h);
      cached++;
    }
    return h;
  };
}

/** isServiceChainName: the per-service chains kube-proxy owns and may delete when stale. */
export function isServiceChainName(chain: string): boolean {
  return (
    chain.startsWith('KUBE-SVC-') ||
    chain.startsWith('KUBE-SVL-') ||
    chain.startsWith('KUBE-SEP-') ||
    chain.startsWith('KUBE-FW-') ||
    chain.startsWith('KUBE-EXT-')
  );
}

/** A base32 digit's rank in string order ('2'..'7' sort before 'A'..'Z'); 255 for any other character. */
const B32_RANK = new Uint8Array(65536).fill(255);
[...B32].sort().forEach((c, i) => (B32_RANK[c.charCodeAt(0)] = i));

const KEY_DIGITS = 6;
const INDEX_SPAN = 2 ** 22;

function plainOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function plainSort<T extends { name: string }>(items: T[]): T[] {
  return items.slice().sort((a, b) => plainOrder(a.name, b.name));
}

/**
 * The items in plain string order of their names (stable for equal names). The
 * canonical ruleset sorts 150k chain names at 10k services, and a comparator sort of
 * that many takes 100-250 ms (cold). Per-service chains end in "-" and 16 base32 digits of a hash, so
 * within one prefix their first six digits (30 uniform bits) are a numeric key that a
 * Float64Array sorts natively, the item's index in the low bits; equal keys are settled
 * by the whole name. Names of any other shape are sorted as usual and merged in.
 */
export function sortByName<T extends { name: string }>(items: T[]): T[] {
  if (items.length >= INDEX_SPAN) return plainSort(items);
  // The few prefixes ("KUBE-SEP-", …), looked up without slicing a string per name.
  const groups: { prefix: string; members: number[] }[] = [];
  const rest: number[] = [];
  for (let i = 0; i < items.length; i++) {
    const name = items[i]!.name;
    const p = name.length - 16;
    let ok = p > 0 && name.charCodeAt(p - 1) === 0x2d; // "KUBE-SEP-" + digits
    for (let d = 0; ok && d < KEY_DIGITS; d++) ok = B32_RANK[name.charCodeAt(p + d)] !== 255;
    if (!ok) {
      rest.push(i);
      continue;
    }
    let g = groups.find((x) => x.prefix.length === p && name.startsWith(x.prefix));
    if (!g) groups.push((g = { prefix: name.slice(0, p), members: [] }));
    g.members.push(i);
  }
  groups.sort((a, b) => plainOrder(a.prefix, b.prefix));
  // Groups follow one another in prefix order unless one prefix starts another ("KUBE-FW-", "KUBE-FW-A-").
  for (let k = 1; k < groups.length; k++) if (groups[k]!.prefix.startsWith(groups[k - 1]!.prefix)) return plainSort(items);
  const sorted: T[] = [];
  for (const { prefix, members: g } of groups) {
    const p = prefix.length;
    const keys = new Float64Array(g.length);
    for (let j = 0; j < g.length; j++) {
      const name = items[g[j]!]!.name;
      let key = 0;
      for (let d = 0; d < KEY_DIGITS; d++) key = key * 32 + B32_RANK[name.charCodeAt(p + d)]!;
      keys[j] = key * INDEX_SPAN + g[j]!;
    }
    keys.sort();
    const start = sorted.length;
    for (let j = 0; j < keys.length; j++) sorted.push(items[keys[j]! % INDEX_SPAN]!);
    // Runs of equal keys (a few per 100k), in index order: order them by the whole name.
    let runStart = 0;
    let runKey = keys.length > 0 ? Math.floor(keys[0]! / INDEX_SPAN) : 0;
    for (let j = 1; j <= keys.length; j++) {
      const key = j < keys.length ? Math.floor(keys[j]! / INDEX_SPAN) : -1;
      if (key === runKey) continue;
      if (j - runStart > 1) {
        const run = plainSort(sorted.slice(start + runStart, start + j));
        for (let r = 0; r < run.length; r++) sorted[start + runStart + r] = run[r]!;
      }
      runStart = j;
      runKey = key;
    }
  }
  if (rest.length === 0) return sorted;
  // Merge in the others (a few: KUBE-MARK-MASQ, KUBE-POSTROUTING, …); a name is never both kinds.
  const others = plainSort(rest.map((i) => items[i]!));
  const out: T[] = [];
  let from = 0;
  for (const o of others) {
    let lo = from;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]!.name <= o.name) lo = mid + 1;
      else hi = mid;
    }
    for (let j = from; j < lo; j++) out.push(sorted[j]!);
    out.push(o);
    from = lo;
  }
  for (let j = from; j < sorted.length; j++) out.push(sorted[j]!);
  return out;
}
