// The UDP half of the userspace proxy: one socket per service port; each
// client address gets its own connected socket to an endpoint (upstream's
// clientCache), replies go back through the service socket so conntrack
// un-NATs them to the service address, and a session ends after an idle
// timeout (upstream --udp-timeout, default 250 ms) refreshed by traffic
// either way. IPVS counts UDP connections as inactive; so do we.
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from '../../util/log.js';
import type { EndpointState, LoadBalancer } from './loadbalancer.js';
import type { ProxyCounters } from './tcp.js';

export interface UdpProxyOptions {
  idleTimeoutMs: number;
  dstIP: string;
  counters: ProxyCounters;
  log: Logger;
}

interface Session {
  backend: Socket;
  endpoint: EndpointState;
  timer: NodeJS.Timeout;
  ready: boolean;
  queue: Buffer[];
}

export class UdpPortProxy {
  socket!: Socket;
  readonly sessions = new Map<string, Session>();
  private closed = false;

  constructor(
    readonly lb: LoadBalancer,
    private readonly opts: UdpProxyOptions,
  ) {}

  listen(ip: string, port: number): Promise<number> {
    this.socket = createSocket({ type: isIPv6(ip) ? 'udp6' : 'udp4' });
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      this.socket.once('error', onErr);
      this.socket.bind({ address: ip, port }, () => {
        this.socket.off('error', onErr);
        this.socket.on('error', (e) => this.opts.log.error('udp socket error', { service: this.lb.key, err: e }));
        this.socket.on('message', (msg, rinfo) => this.onClient(msg, rinfo.address, rinfo.port));
        resolve(this.socket.address().port);
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket?.close();
    } catch {
      /* never bound */
    }
    for (const k of [...this.sessions.keys()]) this.end(k);
  }

  private onClient(msg: Buffer, ip: string, port: number): void {
    const key = `${ip}:${port}`;
    let s = this.sessions.get(key);
    if (!s) {
      const ep = this.lb.pick({ srcIP: ip, srcPort: port, dstIP: this.opts.dstIP });
      if (!ep) {
        this.opts.counters.rejected();
        return; // dropped, as a kernel with no destination would
      }
      s = this.open(key, ep, ip, port);
    }
    this.touch(key, s);
    if (s.ready) s.backend.send(msg);
    else s.queue.push(msg);
  }

  private open(key: string, ep: EndpointState, ip: string, port: number): Session {
    const backend = createSocket({ type: isIPv6(ep.ip) ? 'udp6' : 'udp4' });
    const s: Session = { backend, endpoint: ep, timer: setTimeout(() => {}, 0), ready: false, queue: [] };
    this.sessions.set(key, s);
    ep.inactiveConns++;
    this.opts.counters.accepted();
    backend.on('message', (reply) => {
      this.touch(key, s);
      if (!this.closed) this.socket.send(reply, port, ip);
    });
    backend.on('error', (e) => {
      // ICMP port unreachable on a connected socket: this endpoint is not serving; forget the session.
      this.opts.counters.dialFailed(ep.key);
      this.opts.log.info('udp endpoint error', { service: this.lb.key, endpoint: ep.key, err: e });
      this.end(key);
    });
    backend.connect(ep.port, ep.ip, () => {
      s.ready = true;
      for (const m of s.queue) backend.send(m);
      s.queue = [];
    });
    return s;
  }

  private touch(key: string, s: Session): void {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => this.end(key), this.opts.idleTimeoutMs);
  }

  private end(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    clearTimeout(s.timer);
    try {
      s.backend.close();
    } catch {
      /* already closed */
    }
    s.endpoint.inactiveConns--;
    this.lb.release(s.endpoint);
  }

  cut(endpointKey: string): number {
    let n = 0;
    for (const [k, s] of this.sessions) {
      if (s.endpoint.key !== endpointKey) continue;
      this.end(k);
      n++;
    }
    return n;
  }

  cutAll(): void {
    for (const k of [...this.sessions.keys()]) this.end(k);
  }
}
