// The TCP half of the userspace proxy: one listener per service port. Each
// accepted connection gets an endpoint from the load balancer, a dial with
// upstream's escalating timeouts (250 ms, 500 ms, 1 s, 2 s) and a fresh
// endpoint after each failure, then bytes copied both ways with backpressure
// and half-close. When every try fails the client gets a TCP RST, not a hang.
// Two implementations with the same behaviour: on Node's TCP handles
// (tcp-handles.ts, the default: about a third of the CPU per connection) and
// on net.Socket (tcp-net.ts, the fallback).
import type { Logger } from '../../util/log.js';
import { rawTcp } from './handles.js';
import type { LoadBalancer } from './loadbalancer.js';
import { HandleTcpPortProxy } from './tcp-handles.js';
import { NetTcpPortProxy } from './tcp-net.js';

/** upstream pkg/proxy/userspace EndpointDialTimeouts. */
export const ENDPOINT_DIAL_TIMEOUTS_MS = [250, 500, 1000, 2000];

export interface ProxyCounters {
  accepted(): void;
  rejected(): void;
  dialFailed(endpoint: string): void;
}

export interface TcpProxyOptions {
  dialTimeoutsMs: number[];
  /** The address dh hashes (the service's cluster IP: the original destination is not visible after REDIRECT). */
  dstIP: string;
  counters: ProxyCounters;
  log: Logger;
}

export type TcpDataPath = 'handles' | 'net';

export interface TcpPortProxy {
  readonly lb: LoadBalancer;
  readonly dataPath: TcpDataPath;
  /** Proxied connections open now. */
  readonly connections: number;
  /** Resolves with the port bound (useful with port 0); rejects with the errno code (EADDRINUSE…) in `code`. */
  listen(ip: string, port: number): Promise<number>;
  /** Stops accepting; established connections carry on (they drain). */
  close(): void;
  /** Ends the connections still open to an endpoint (after its termination grace); returns how many. */
  cut(endpointKey: string): number;
  cutAll(): void;
}

/** The data path to use: the one asked for (option, else KPROXY_USERSPACE_DATAPATH), handles when available. */
export function chooseDataPath(want?: string): TcpDataPath {
  const w = want ?? process.env.KPROXY_USERSPACE_DATAPATH;
  if (w !== undefined && w !== '' && w !== 'handles' && w !== 'net') throw new Error(`userspace data path ${JSON.stringify(w)}: use handles or net`);
  if (w === 'net') return 'net';
  return rawTcp() ? 'handles' : 'net';
}

export function createTcpProxy(path: TcpDataPath, lb: LoadBalancer, opts: TcpProxyOptions): TcpPortProxy {
  const raw = path === 'handles' ? rawTcp() : undefined;
  return raw ? new HandleTcpPortProxy(raw, lb, opts) : new NetTcpPortProxy(lb, opts);
}
