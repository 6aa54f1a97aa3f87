// SHA-256 for chain and slice names. kube-proxy names every chain by a hash:
// 120,000 of them at 10,000 services. node:crypto is loaded on the first call,
// not at import: it is some 30 modules, 6 ms of a small command's start that
// never names a chain (trace, dns, --help).
//
// The digest comes back as a Latin-1 string (one char per byte): for 120k short
// names, crypto.hash(…, 'binary') takes 26-54 ms here against 245-344 ms for
// 'buffer' (a Buffer allocated per call) and 350-450 ms for createHash.
import { createRequire } from 'node:module';

let crypto: typeof import('node:crypto') | undefined;

/** The SHA-256 digest of s (as UTF-8), byte i at charCodeAt(i). */
export function sha256(s: string): string {
  crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return crypto.hash('sha256', s, 'binary'); // 'binary' is Latin-1
}
