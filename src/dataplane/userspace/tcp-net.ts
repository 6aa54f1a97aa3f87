// The portable TCP data path of the userspace proxy, on net.Server and
// net.Socket: used when Node's TCP handles are not available in the shape
// tcp-handles.ts needs, or when asked for (dataPath 'net'). It behaves as the
// handle path does; it costs about three times the CPU per short connection.
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { EndpointState, LoadBalancer } from './loadbalancer.js';
import type { TcpPortProxy, TcpProxyOptions } from './tcp.js';

interface Conn {
  client: Socket;
  backend: Socket;
  endpoint: EndpointState;
}

/** Dials an endpoint; `done` gets the connected socket or the reason it failed. Callbacks, not promises: this is the hot path. */
function dial(ep: EndpointState, timeoutMs: number, done: (err: Error | undefined, s?: Socket) => void): void {
  const s = connect({ host: ep.ip, port: ep.port, allowHalfOpen: true, noDelay: true });
  const timer = setTimeout(() => {
    s.destroy();
    done(new Error(`dial ${ep.key}: timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  const onError = (e: Error): void => {
    clearTimeout(timer);
    s.destroy();
    done(new Error(`dial ${ep.key}: ${e.message}`));
  };
  s.once('error', onError);
  s.once('connect', () => {
    clearTimeout(timer);
    s.off('error', onError);
    done(undefined, s);
  });
}

/**
 * Copies src to dst with backpressure, then passes the FIN on (half-close).
 * The same as src.pipe(dst), without the stream bookkeeping pipe() adds per connection.
 */
function forward(src: Socket, dst: Socket): void {
  const resume = (): void => {
    src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    if (!dst.write(chunk)) {
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.on('end', () => {
    if (!dst.destroyed) dst.end();
  });
}

export class NetTcpPortProxy implements TcpPortProxy {
  readonly dataPath = 'net';
  readonly server: Server;
  private readonly conns = new Set<Conn>();
  private closed = false;

  constructor(
    readonly lb: LoadBalancer,
    private readonly opts: TcpProxyOptions,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (c) => void this.handle(c));
  }

  listen(ip: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      this.server.once('error', onErr);
      this.server.listen({ host: ip, port, backlog: 4096 }, () => {
        this.server.off('error', onErr);
        this.server.on('error', (e) => this.opts.log.error('listener error', { service: this.lb.key, err: e }));
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  get connections(): number {
    return this.conns.size;
  }

  close(): void {
    this.closed = true;
    this.server.close();
  }

  private handle(client: Socket): void {
    client.on('error', () => {
      /* reported through close; the backend side is torn down in splice */
    });
    const needSrc = this.lb.needsClientAddress;
    const srcIP = needSrc ? client.remoteAddress ?? '0.0.0.0' : '0.0.0.0';
    const srcPort = needSrc ? client.remotePort : undefined;
    const failed = new Set<string>();
    const attempt = (i: number): void => {
      if (i >= this.opts.dialTimeoutsMs.length || this.closed || client.destroyed) return this.reject(client);
      // After a failure: no affinity (upstream sessionAffinityReset) and not the endpoints that failed,
      // unless every endpoint has failed, when the next try gets a longer timeout on any of them.
      if (failed.size >= this.lb.endpointCount) failed.clear();
      const ep = this.lb.pick({ srcIP, srcPort, dstIP: this.opts.dstIP, resetAffinity: i > 0, exclude: failed });
      if (!ep) return this.reject(client);
      dial(ep, this.opts.dialTimeoutsMs[i]!, (err, backend) => {
        if (err || !backend) {
          this.opts.counters.dialFailed(ep.key);
          this.opts.log.info('dial failed, trying another endpoint', { service: this.lb.key, endpoint: ep.key, attempt: i + 1, err });
          failed.add(ep.key);
          return attempt(i + 1);
        }
        if (client.destroyed) {
          backend.destroy();
          return;
        }
        this.opts.counters.accepted();
        this.splice({ client, backend, endpoint: ep });
      });
    };
    attempt(0);
  }

  private reject(client: Socket): void {
    this.opts.counters.rejected();
    this.opts.log.info('no endpoint could take the connection; resetting it', { service: this.lb.key, client: `${client.remoteAddress}:${client.remotePort}` });
    if (!client.destroyed) client.resetAndDestroy();
  }

  private splice(conn: Conn): void {
    const { client, backend, endpoint } = conn;
    this.conns.add(conn);
    endpoint.activeConns++;
    // IPVS counts a connection active while established and inactive once it is
    // closing; a half-closed proxied connection is the userspace equivalent.
    let state: 'active' | 'inactive' | 'gone' = 'active';
    const halfClosed = (): void => {
      if (state !== 'active') return;
      state = 'inactive';
      endpoint.activeConns--;
      endpoint.inactiveConns++;
    };
    let open = 2;
    const gone = (): void => {
      if (--open > 0) return;
      if (state === 'active') endpoint.activeConns--;
      else if (state === 'inactive') endpoint.inactiveConns--;
      state = 'gone';
      this.conns.delete(conn);
      this.lb.release(endpoint);
    };
    client.on('end', halfClosed);
    backend.on('end', halfClosed);
    client.on('close', gone);
    backend.on('close', gone);
    // An abort on one side is passed on as an abort (RST), a clean end as a FIN (pipe ends the writer).
    client.on('error', () => {
      if (!backend.destroyed) backend.resetAndDestroy();
    });
    backend.on('error', () => {
      if (!client.destroyed) client.resetAndDestroy();
    });
    forward(client, backend);
    forward(backend, client);
    client.resume();
  }

  cut(endpointKey: string): number {
    let n = 0;
    for (const c of this.conns) {
      if (c.endpoint.key !== endpointKey) continue;
      c.client.destroy();
      c.backend.destroy();
      n++;
    }
    return n;
  }

  cutAll(): void {
    for (const c of this.conns) {
      c.client.destroy();
      c.backend.destroy();
    }
  }
}
