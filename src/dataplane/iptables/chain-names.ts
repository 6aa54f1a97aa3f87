// Per-service chain names, as upstream proxier.go computes them:
//   KUBE-SVC-/SVL-/EXT-/FW- + base32(sha256(servicePortName + protocol))[:16]
//   KUBE-SEP-               + base32(sha256(servicePortName + protocol + "ip:port"))[:16]
// where servicePortName is "ns/name" or "ns/name:port" and protocol is lower case.
// sha256 is the main cost of a render, so results are memoized per hashed string.
import { createHash } from 'node:crypto';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The first 16 characters of RFC 4648 base32 (upper case) of sha256(s): exactly the first 10 digest bytes. */
export function hash16(s: string): string {
  const d = createHash('sha256').update(s, 'utf8').digest();
  let out = '';
  // 10 bytes = 80 bits = 16 base32 digits, processed as two 40-bit groups.
  for (let g = 0; g < 10; g += 5) {
    let v = 0n;
    for (let i = 0; i < 5; i++) v = (v << 8n) | BigInt(d[g + i]!);
    for (let k = 7; k >= 0; k--) out += B32[Number((v >> BigInt(k * 5)) & 31n)];
  }
  return out;
}

const MAX_CACHE = 1 << 20;
const cache = new Map<string, string>();

function cachedHash(s: string): string {
  let h = cache.get(s);
  if (h === undefined) {
    h = hash16(s);
    // A long-running agent sees services come and go; bound the memo rather than evict precisely.
    if (cache.size >= MAX_CACHE) cache.clear();
    cache.set(s, h);
  }
  return h;
}

/** portProtoHash: the 16-character suffix shared by a service port's SVC/SVL/EXT/FW chains. */
export function servicePortHash(servicePortName: string, protocol: string): string {
  return cachedHash(servicePortName + protocol.toLowerCase());
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
  return 'KUBE-SEP-' + cachedHash(servicePortName + protocol.toLowerCase() + endpoint);
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
