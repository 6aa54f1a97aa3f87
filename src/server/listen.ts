// Parsing kube-proxy style bind addresses ("0.0.0.0:10256", "[::]:10256",
// ":10256") and binding an HTTP server to one, with a clear error when the
// address is malformed or taken.
import type { Server } from 'node:http';

export interface BoundAddress {
  host: string;
  port: number;
}

/** Splits "host:port"; an empty host means every address (as Go's net.Listen does). */
export function parseBindAddress(addr: string): BoundAddress {
  const m = /^(?:\[([0-9a-fA-F:.%\w]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr.trim());
  if (!m) throw new Error(`invalid bind address "${addr}": want host:port, e.g. 0.0.0.0:10256 or [::]:10256`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid bind address "${addr}": port ${port} is out of range`);
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '::' : host, port };
}

/**
 * Starts `server` listening on `addr`; resolves with the bound address (the real port when port 0 was asked).
 * Go listens dual-stack for "0.0.0.0:p" ("go treats them all the same", service_health.go), so a
 * wildcard address binds "::" (IPv4 arrives mapped), falling back to IPv4 where IPv6 is off.
 */
export async function listenOn(server: Server, addr: string): Promise<BoundAddress> {
  const { host, port } = parseBindAddress(addr);
  if (host === '0.0.0.0' || host === '::') {
    try {
      return await listenHost(server, addr, '::', port);
    } catch (e) {
      if (!/EAFNOSUPPORT|EADDRNOTAVAIL/.test((e as Error).message)) throw e;
      return listenHost(server, addr, '0.0.0.0', port);
    }
  }
  return listenHost(server, addr, host, port);
}

function listenHost(server: Server, addr: string, host: string, port: number): Promise<BoundAddress> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(new Error(`cannot listen on ${addr}: ${e.code ?? e.message}`));
    };
    const onListening = () => {
      server.off('error', onError);
      const a = server.address();
      resolve(typeof a === 'object' && a ? { host: a.address, port: a.port } : { host, port });
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true, ipv6Only: false });
  });
}
