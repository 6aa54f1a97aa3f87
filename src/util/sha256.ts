// SHA-256 of a short ASCII string, in JavaScript (FIPS 180-4). kube-proxy names
// every chain by a hash: 120,000 of them at 10,000 services. Each crypto.hash()
// call costs over a microsecond in its binding and allocates a Buffer for the
// digest; a string of under 56 characters is one 64-byte block, computed here in
// a third of the time, with no allocation. Anything else goes to node:crypto,
// loaded only then (it is some 30 modules: 6 ms of a small command's start).
import { createRequire } from 'node:module';

let crypto: typeof import('node:crypto') | undefined;

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const W = new Int32Array(64);
const OUT = new Uint8Array(32);

/** One block: the message (ASCII, under 56 characters), its 0x80 terminator and its bit length. */
function compressOneBlock(s: string): void {
  W.fill(0, 0, 16);
  const n = s.length;
  for (let i = 0; i < n; i++) W[i >> 2]! |= s.charCodeAt(i) << (24 - (i & 3) * 8);
  W[n >> 2]! |= 0x80 << (24 - (n & 3) * 8);
  W[15] = n * 8;
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = IV[0]! | 0, b = IV[1]! | 0, c = IV[2]! | 0, d = IV[3]! | 0;
  let e = IV[4]! | 0, f = IV[5]! | 0, g = IV[6]! | 0, h = IV[7]! | 0;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  put(0, a);
  put(1, b);
  put(2, c);
  put(3, d);
  put(4, e);
  put(5, f);
  put(6, g);
  put(7, h);
}

/** Word i of the digest: the state word plus the initial value, big-endian. */
function put(i: number, word: number): void {
  const v = (word + IV[i]!) | 0;
  OUT[i * 4] = v >>> 24;
  OUT[i * 4 + 1] = (v >>> 16) & 255;
  OUT[i * 4 + 2] = (v >>> 8) & 255;
  OUT[i * 4 + 3] = v & 255;
}

function isShortAscii(s: string): boolean {
  if (s.length > 55) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * The SHA-256 digest of s (as UTF-8). Short ASCII strings return a shared array, valid
 * until the next call: read what you need from it at once.
 */
export function sha256(s: string): Uint8Array {
  if (!isShortAscii(s)) {
    crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
    return crypto.createHash('sha256').update(s, 'utf8').digest();
  }
  compressOneBlock(s);
  return OUT;
}
