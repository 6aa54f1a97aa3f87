// The kernel's hash inputs and functions, bit for bit, so that sh/dh/mh pick
// the same server an ipvs node with the same destination list would pick.
import { parseIP } from '../../util/ip.js';

/**
 * `ntohl(addr_fold)` as ip_vs_{sh,dh,mh}.c compute it: the IPv4 address as a host
 * integer; for IPv6 the XOR of its four 32-bit words.
 */
export function addrFold(ip: string): number {
  const p = parseIP(ip);
  if (!p) throw new Error(`scheduler: ${JSON.stringify(ip)} is not an IP address`);
  const b = p.bytes;
  let v = 0;
  for (let i = 0; i < b.length; i += 4) v ^= ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
  return v >>> 0;
}

/** GOLDEN_RATIO_32 (include/linux/hash.h). */
const GOLDEN_RATIO_32 = 0x61c88647;

/**
 * hash_32(val, bits) of the generic include/linux/hash.h (no arch has its own on
 * x86): `(val * GOLDEN_RATIO_32) >> (32 - bits)`, the product's top bits.
 */
export function hash32(val: number, bits: number): number {
  return Math.imul(val >>> 0, GOLDEN_RATIO_32) >>> (32 - bits);
}

/**
 * ip_vs_sh_hashkey(): `(offset + hash_32(ntohs(port) + ntohl(addr_fold), 8)) & 255`.
 * (Kernels before 4.x used `(port + addr) * 2654435761UL & 255`, the low bits; the
 * differential test against Linux 6.1 showed the top bits are what counts now.)
 */
export function shHashkey(addr: number, port: number, offset: number): number {
  return (offset + hash32((port + addr) >>> 0, 8)) & 0xff;
}

/** ip_vs_dh_hashkey(): `hash_32(ntohl(addr_fold), 8)`. */
export function dhHashkey(addr: number): number {
  return hash32(addr, 8);
}

const M64 = (1n << 64n) - 1n;
const rol = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & M64;

/**
 * hsiphash() of one u32 on a 64-bit kernel: SipHash-1-3 with the 128-bit key
 * {k0, k1} (two unsigned longs), truncated to 32 bits (lib/siphash.c, HPOSTAMBLE).
 */
export function hsiphashU32(v: number, k0: bigint, k1: bigint): number {
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  const round = (): void => {
    v0 = (v0 + v1) & M64; v1 = rol(v1, 13n); v1 ^= v0; v0 = rol(v0, 32n);
    v2 = (v2 + v3) & M64; v3 = rol(v3, 16n); v3 ^= v2;
    v0 = (v0 + v3) & M64; v3 = rol(v3, 21n); v3 ^= v0;
    v2 = (v2 + v1) & M64; v1 = rol(v1, 17n); v1 ^= v2; v2 = rol(v2, 32n);
  };
  // len 4: no full 8-byte block; b = len << 56 | le32(data)
  const b = (4n << 56n) | BigInt(v >>> 0);
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xffn;
  round();
  round();
  round();
  return Number((v0 ^ v1 ^ v2 ^ v3) & 0xffffffffn);
}

/** generate_hash_secret() in ip_vs_mh.c: fixed keys, so every node builds the same table. */
export const MH_KEY1 = 2654435761n;
export const MH_KEY2 = 2654446892n;

/** ip_vs_mh_hashkey(): hsiphash of the u32 `offset + port + addr`. */
export function mhHashkey(addr: number, port: number, key: bigint, offset: number): number {
  return hsiphashU32((offset + port + addr) >>> 0, key, key);
}
