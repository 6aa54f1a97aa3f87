// The userspace proxy's TCP data path on Node's libuv TCP handles (handles.ts
// says why and how they are checked). Per connection there are two handles,
// one HandleConn and the libuv requests; no streams, no event listeners, no
// closures, no per-connection timer (dial timeouts sit in one FIFO per timeout
// value, checked by one timer). Each read is written to the other side at once;
// when the kernel does not take it all (the write goes async) reading from that
// side stops until the write completes: backpressure with at most one chunk in
// flight per direction. An EOF is passed on as a shutdown (FIN) and the other
// direction keeps flowing; a read or write error closes that side and resets
// the other, as the net path does.
import type { EndpointState, LoadBalancer } from './loadbalancer.js';
import { uvError, type ConnectReq, type RawTcp, type ShutdownReq, type TcpHandle, type WriteReq } from './handles.js';
import type { TcpPortProxy, TcpProxyOptions } from './tcp.js';

const enum St {
  Dialing,
  /** Established both ways. */
  Active,
  /** One side has sent its FIN (IPVS's inactive). */
  Inactive,
  Gone,
}

class HandleConn {
  state = St.Dialing;
  backend: TcpHandle | undefined = undefined;
  endpoint: EndpointState | undefined = undefined;
  attempt = 0;
  /** Bumped per dial, so a timeout entry for an earlier dial is ignored. */
  dialSeq = 0;
  failed: Set<string> | undefined = undefined;
  srcIP = '0.0.0.0';
  srcPort: number | undefined = undefined;
  /** Client → backend: EOF seen, shutdown of the backend done, reading paused on a pending write. */
  upEof = false;
  upShut = false;
  upPaused = false;
  /** Backend → client. */
  downEof = false;
  downShut = false;
  downPaused = false;

  constructor(
    readonly proxy: HandleTcpPortProxy,
    readonly client: TcpHandle,
  ) {}
}

/** Dial deadlines: one FIFO per timeout value (entries arrive in deadline order), one timer for the earliest head. */
class DialClock {
  private readonly queues = new Map<number, { conn: HandleConn[]; seq: number[]; at: number[]; head: number }>();
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;

  constructor(private readonly expire: (conn: HandleConn) => void) {}

  add(conn: HandleConn, timeoutMs: number): void {
    let q = this.queues.get(timeoutMs);
    if (!q) this.queues.set(timeoutMs, (q = { conn: [], seq: [], at: [], head: 0 }));
    const at = Date.now() + timeoutMs;
    q.conn.push(conn);
    q.seq.push(conn.dialSeq);
    q.at.push(at);
    if (at < this.armedAt) this.arm(at);
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - Date.now()) + 1);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const [ms, q] of this.queues) {
      while (q.head < q.at.length && q.at[q.head]! <= now) {
        const conn = q.conn[q.head]!;
        const seq = q.seq[q.head]!;
        q.conn[q.head] = undefined as unknown as HandleConn;
        q.head++;
        if (conn.state === St.Dialing && conn.dialSeq === seq && conn.backend) this.expire(conn);
      }
      if (q.head === q.at.length) {
        this.queues.delete(ms);
        continue;
      }
      if (q.head > 1024 && q.head * 2 > q.at.length) {
        q.conn.splice(0, q.head);
        q.seq.splice(0, q.head);
        q.at.splice(0, q.head);
        q.head = 0;
      }
      next = Math.min(next, q.at[q.head]!);
    }
    if (next !== Infinity && next < this.armedAt) this.arm(next);
  }
}

function closeSide(h: TcpHandle, rst: boolean): void {
  if (rst && h.reset() === 0) return;
  h.close();
}

export class HandleTcpPortProxy implements TcpPortProxy {
  readonly dataPath = 'handles';
  private server: TcpHandle | undefined;
  private readonly conns = new Set<HandleConn>();
  /** Accepted, still looking for an endpoint. */
  private readonly dialing = new Set<HandleConn>();
  private closed = false;
  private readonly clock: DialClock;
  private spareWrite: WriteReq | undefined;
  private readonly onRead: (this: TcpHandle, ab: ArrayBuffer | undefined) => void;
  private readonly onWritten: (this: WriteReq, status: number) => void;
  private readonly onShutdown: (this: ShutdownReq, status: number) => void;
  private readonly onConnect: (this: ConnectReq, status: number, handle: TcpHandle) => void;

  constructor(
    private readonly raw: RawTcp,
    readonly lb: LoadBalancer,
    private readonly opts: TcpProxyOptions,
  ) {
    this.clock = new DialClock((c) => this.dialTimedOut(c));
    // libuv calls these with `this` = the handle or request; one function per proxy, not per connection.
    const self = this;
    this.onRead = function (this: TcpHandle, ab: ArrayBuffer | undefined): void {
      self.read(this, ab);
    };
    this.onWritten = function (this: WriteReq, status: number): void {
      self.written(this, status);
    };
    this.onShutdown = function (this: ShutdownReq, status: number): void {
      self.shutdownDone(this, status);
    };
    this.onConnect = function (this: ConnectReq, status: number, handle: TcpHandle): void {
      self.connected(this, status, handle);
    };
  }

  get connections(): number {
    return this.conns.size;
  }

  listen(ip: string, port: number): Promise<number> {
    const s = this.raw.server();
    let err = ip.includes(':') ? s.bind6(ip, port, 0) : s.bind(ip, port);
    const where = `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
    if (err) {
      s.close();
      return Promise.reject(uvError(err, 'bind', where));
    }
    err = s.listen(4096);
    if (err) {
      s.close();
      return Promise.reject(uvError(err, 'listen', where));
    }
    const self = this;
    s.owner = this;
    s.onconnection = function (status: number, client: TcpHandle | undefined): void {
      if (status < 0 || !client) {
        self.opts.log.error('listener error', { service: self.lb.key, err: uvError(status, 'accept') });
        return;
      }
      self.accept(client);
    };
    this.server = s;
    const out: Record<string, unknown> = {};
    s.getsockname(out);
    return Promise.resolve(typeof out.port === 'number' ? out.port : port);
  }

  close(): void {
    this.closed = true;
    this.server?.close();
    this.server = undefined;
  }

  cut(endpointKey: string): number {
    let n = 0;
    for (const c of this.conns) {
      if (c.endpoint?.key !== endpointKey) continue;
      this.finish(c, false);
      n++;
    }
    return n;
  }

  cutAll(): void {
    for (const c of this.conns) this.finish(c, false);
    // Dials in flight too: their deadlines are on an unref'd timer, and a dial to an
    // endpoint that never answers would otherwise hold the process for the kernel's timeout.
    for (const c of this.dialing) {
      c.state = St.Gone;
      c.backend?.close();
      c.backend = undefined;
      closeSide(c.client, true);
    }
    this.dialing.clear();
  }

  private newWriteReq(): WriteReq {
    const req = this.raw.writeReq();
    req.oncomplete = this.onWritten;
    req.async = false;
    req.buffer = null;
    return req;
  }

  private accept(client: TcpHandle): void {
    const conn = new HandleConn(this, client);
    client.owner = conn;
    this.dialing.add(conn);
    if (this.lb.needsClientAddress) {
      const peer: Record<string, unknown> = {};
      if (client.getpeername(peer) === 0) {
        conn.srcIP = typeof peer.address === 'string' ? peer.address : '0.0.0.0';
        conn.srcPort = typeof peer.port === 'number' ? peer.port : undefined;
      }
    }
    this.dial(conn);
  }

  private dial(conn: HandleConn): void {
    const timeouts = this.opts.dialTimeoutsMs;
    const i = conn.attempt;
    if (i >= timeouts.length || this.closed) return this.reject(conn);
    // After a failure: no affinity (upstream sessionAffinityReset) and not the endpoints that failed,
    // unless every endpoint has failed, when the next try gets a longer timeout on any of them.
    if (conn.failed && conn.failed.size >= this.lb.endpointCount) conn.failed.clear();
    const ep = this.lb.pick({ srcIP: conn.srcIP, srcPort: conn.srcPort, dstIP: this.opts.dstIP, resetAffinity: i > 0, exclude: conn.failed });
    if (!ep) return this.reject(conn);
    const b = this.raw.socket();
    b.owner = conn;
    const req = this.raw.connectReq();
    req.oncomplete = this.onConnect;
    req.address = ep.ip;
    req.port = ep.port;
    req.owner = conn;
    conn.backend = b;
    conn.endpoint = ep;
    conn.dialSeq++;
    const err = ep.ip.includes(':') ? b.connect6(req, ep.ip, ep.port) : b.connect(req, ep.ip, ep.port);
    if (err) return this.dialFailed(conn, uvError(err, 'connect', ep.key));
    this.clock.add(conn, timeouts[i]!);
  }

  private connected(req: ConnectReq, status: number, handle: TcpHandle): void {
    const conn = req.owner as HandleConn;
    // A dial that timed out (its handle already closed) or a connection cut meanwhile.
    if (conn.backend !== handle || conn.state !== St.Dialing) return;
    if (status < 0) return this.dialFailed(conn, uvError(status, 'connect', conn.endpoint?.key));
    this.splice(conn);
  }

  private dialTimedOut(conn: HandleConn): void {
    this.dialFailed(conn, new Error(`dial ${conn.endpoint?.key}: timed out after ${this.opts.dialTimeoutsMs[conn.attempt]} ms`));
  }

  private dialFailed(conn: HandleConn, err: Error): void {
    const ep = conn.endpoint!;
    conn.backend?.close();
    conn.backend = undefined;
    this.opts.counters.dialFailed(ep.key);
    this.opts.log.info('dial failed, trying another endpoint', { service: this.lb.key, endpoint: ep.key, attempt: conn.attempt + 1, err });
    (conn.failed ??= new Set()).add(ep.key);
    conn.attempt++;
    this.dial(conn);
  }

  private reject(conn: HandleConn): void {
    this.opts.counters.rejected();
    const peer: Record<string, unknown> = {};
    conn.client.getpeername(peer);
    this.opts.log.info('no endpoint could take the connection; resetting it', { service: this.lb.key, client: `${String(peer.address)}:${String(peer.port)}` });
    conn.state = St.Gone;
    conn.backend = undefined;
    this.dialing.delete(conn);
    closeSide(conn.client, true);
  }

  private splice(conn: HandleConn): void {
    const { client } = conn;
    const backend = conn.backend!;
    conn.state = St.Active;
    conn.endpoint!.activeConns++;
    this.dialing.delete(conn);
    this.conns.add(conn);
    this.opts.counters.accepted();
    client.setNoDelay(true);
    backend.setNoDelay(true);
    client.onread = this.onRead;
    backend.onread = this.onRead;
    const e1 = client.readStart();
    const e2 = backend.readStart();
    if (e1 || e2) this.finish(conn, true, e1 ? client : backend);
  }

  private read(src: TcpHandle, ab: ArrayBuffer | undefined): void {
    const conn = src.owner as HandleConn;
    if (conn.state === St.Gone) return;
    const raw = this.raw;
    const nread = raw.state[raw.kReadBytesOrError]!;
    const up = src === conn.client;
    const dst = up ? conn.backend! : conn.client;
    if (nread > 0) {
      const buf = new Uint8Array(ab!, raw.state[raw.kArrayBufferOffset]!, nread);
      // Node wraps the request object only when the write cannot complete at once; until
      // then the same object serves every write (one allocation less per chunk).
      const req = (this.spareWrite ??= this.newWriteReq());
      req.handle = dst;
      req.owner = conn;
      const err = dst.writeBuffer(req, buf);
      if (err) return this.finish(conn, true, dst);
      if (raw.state[raw.kLastWriteWasAsync]) {
        this.spareWrite = undefined;
        req.async = true;
        req.buffer = buf;
        src.readStop();
        if (up) conn.upPaused = true;
        else conn.downPaused = true;
      }
      return;
    }
    if (nread === 0) return;
    if (nread !== raw.UV_EOF) return this.finish(conn, true, src);
    // EOF: pass the FIN on once the writes before it are out (libuv orders shutdown after pending writes).
    if (up) {
      if (conn.upEof) return;
      conn.upEof = true;
    } else {
      if (conn.downEof) return;
      conn.downEof = true;
    }
    src.readStop();
    if (conn.state === St.Active) {
      // IPVS counts a connection active while established and inactive once it is
      // closing; a half-closed proxied connection is the userspace equivalent.
      conn.state = St.Inactive;
      conn.endpoint!.activeConns--;
      conn.endpoint!.inactiveConns++;
    }
    const req = raw.shutdownReq();
    req.oncomplete = this.onShutdown;
    req.handle = dst;
    req.owner = conn;
    const err = dst.shutdown(req);
    if (err) this.finish(conn, true, dst);
  }

  private written(req: WriteReq, status: number): void {
    const conn = req.owner as HandleConn;
    req.buffer = null;
    req.owner = undefined;
    if (conn.state === St.Gone) return;
    if (status < 0) return this.finish(conn, true, req.handle);
    // Resume the side whose data this was.
    if (req.handle === conn.backend) {
      if (conn.upPaused) {
        conn.upPaused = false;
        if (!conn.upEof && conn.client.readStart()) this.finish(conn, true, conn.client);
      }
    } else if (conn.downPaused) {
      conn.downPaused = false;
      if (!conn.downEof && conn.backend!.readStart()) this.finish(conn, true, conn.backend);
    }
  }

  private shutdownDone(req: ShutdownReq, status: number): void {
    const conn = req.owner as HandleConn;
    if (conn.state === St.Gone) return;
    if (status < 0) return this.finish(conn, true, req.handle);
    if (req.handle === conn.backend) conn.upShut = true;
    else conn.downShut = true;
    // Both FINs passed on: the connection is over.
    if (conn.upShut && conn.downShut) this.finish(conn, false);
  }

  /**
   * Closes both sides and settles the counts. `abort`: an error on `failed` (or a
   * failure to even start); that side is closed and the other gets an RST, so an
   * abort is passed on as an abort.
   */
  private finish(conn: HandleConn, abort: boolean, failed?: TcpHandle): void {
    if (conn.state === St.Gone) return;
    const ep = conn.endpoint!;
    if (conn.state === St.Active) ep.activeConns--;
    else if (conn.state === St.Inactive) ep.inactiveConns--;
    conn.state = St.Gone;
    this.conns.delete(conn);
    closeSide(conn.client, abort && conn.client !== failed);
    if (conn.backend) closeSide(conn.backend, abort && conn.backend !== failed);
    this.lb.release(ep);
  }
}
