// SHA-256 for chain and slice names. kube-proxy names every chain by a hash:
// 120,000 of them at 10,000 services. node:crypto is loaded on the first call,
// not at import: it is some 30 modules, 6 ms of a small command's start that
// never names a chain (trace, dns, --help).
//
// We once computed short names in JavaScript (one block, no Buffer: 55 ms against
// crypto.hash's 110-140 ms for 120k names). A hand-written hash to keep up with,
// for 70 ms of a 10k-service render, is not worth it: node:crypto it is.
import { createRequire } from 'node:module';

let crypto: typeof import('node:crypto') | undefined;

/** The SHA-256 digest of s (as UTF-8). */
export function sha256(s: string): Uint8Array {
  crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return crypto.hash('sha256', s, 'buffer');
}
