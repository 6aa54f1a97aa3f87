// The DNS server: UDP and TCP listeners in front of the zone (records.ts) and
// the forwarder (forward.ts). Zone answers are encoded once per (name, type)
// and reused until the cluster state changes, so the hot path is: parse the
// header and question, one Map lookup, copy bytes, patch the header.
// Every handler is wrapped: a bad packet costs an error response or a drop,
// never the process.
import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';
import type { ClusterState } from '../k8s/types.js';
import type { ClusterSource } from '../k8s/source.js';
import { logger } from '../util/log.js';
import { splitHostPort } from '../util/ip.js';
import { buildZone, normalizeName, reverseZoneOf, type PodMode, type RR, type ZoneData } from './records.js';
import { Forwarder, resolvConfNameservers, typeName, type ForwardResult, type Upstream } from './forward.js';
import {
  RCODE,
  TYPE_NAME,
  buildResponse,
  encodeRR,
  errorResponse,
  NameWriter,
  parseQuery,
  prepare,
  questionName,
  udpLimit,
  type Prepared,
  type Query,
} from './wire.js';

const log = logger({ component: 'dns' });

export interface DnsServerOptions {
  /** Cluster domain (default cluster.local). */
  zone?: string;
  /** Record TTL in seconds (default 5). */
  ttl?: number;
  pods?: PodMode;
  /** host:port to listen on, UDP and TCP (default 0.0.0.0:53). Port 0 picks one free port for both. */
  listen?: string[];
  /** Upstream resolvers; undefined = the host's /etc/resolv.conf; null or [] with noForward = REFUSED. */
  upstreams?: Upstream[];
  noForward?: boolean;
  /** Per-upstream try timeout (default 2000 ms). */
  forwardTimeoutMs?: number;
  /** TCP connections idle longer than this are closed (default 10 s). */
  tcpIdleMs?: number;
}

export interface DnsStats {
  queries: number;
  udp: number;
  tcp: number;
  dropped: number;
  forwarded: number;
  cacheHits: number;
  errors: number;
  rcodes: Record<string, number>;
}

type Transport = 'udp' | 'tcp';

const RCODE_NAMES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS' };
const MAX_CACHED = 100_000;

export class DnsServer {
  readonly zoneName: string;
  readonly ttl: number;
  readonly pods: PodMode;
  readonly stats: DnsStats = { queries: 0, udp: 0, tcp: 0, dropped: 0, forwarded: 0, cacheHits: 0, errors: 0, rcodes: {} };
  private zone: ZoneData | null = null;
  private serial = 0;
  private readonly prepared = new Map<string, Prepared>();
  private readonly forwarder: Forwarder | null;
  private readonly udpSockets: dgram.Socket[] = [];
  private readonly tcpServers: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  private readonly listen: string[];
  private readonly tcpIdleMs: number;

  constructor(opts: DnsServerOptions = {}) {
    this.zoneName = normalizeName(opts.zone ?? 'cluster.local');
    this.ttl = opts.ttl ?? 5;
    if (!Number.isInteger(this.ttl) || this.ttl < 0 || this.ttl > 3600) throw new Error(`invalid ttl ${opts.ttl}: 0–3600 seconds`);
    this.pods = opts.pods ?? 'disabled';
    this.listen = opts.listen?.length ? opts.listen : ['0.0.0.0:53'];
    this.tcpIdleMs = opts.tcpIdleMs ?? 10_000;
    let ups = opts.noForward ? [] : (opts.upstreams ?? resolvConfNameservers());
    // Forwarding to ourselves would loop (CoreDNS has the `loop` plugin for this).
    ups = ups.filter((u) => !this.listen.some((l) => isSelf(l, u)));
    this.forwarder = ups.length ? new Forwarder(ups, { timeoutMs: opts.forwardTimeoutMs }) : null;
    if (!opts.noForward && !ups.length) log.warn('no upstream resolvers: names outside the zone get REFUSED');
  }

  get upstreams(): Upstream[] {
    return this.forwarder?.upstreams ?? [];
  }

  get synced(): boolean {
    return this.zone !== null;
  }

  /** Replaces the zone with one built from `state`; answers change from the next query on. */
  setState(state: ClusterState): void {
    this.serial = Math.max(this.serial + 1, Math.floor(Date.now() / 1000));
    this.zone = buildZone(state, { zone: this.zoneName, ttl: this.ttl, pods: this.pods, serial: this.serial });
    this.prepared.clear();
  }

  async start(): Promise<void> {
    const hasV4 = this.listen.some((l) => !splitHostPort(l).host.includes(':'));
    for (const l of this.listen) {
      const { host, port } = splitHostPort(l);
      if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535 || net.isIP(host) === 0) {
        throw new Error(`invalid --listen "${l}": expected IP:PORT or [IPv6]:PORT`);
      }
      const v6 = net.isIP(host) === 6;
      // Port 0: let UDP pick, then take the same port for TCP (retrying if it is taken).
      for (let attempt = 0; ; attempt++) {
        const udp = await this.bindUdp(host, port, v6, v6 && hasV4);
        const udpPort = udp.address().port;
        try {
          await this.bindTcp(host, udpPort, v6 && hasV4);
          this.udpSockets.push(udp);
          break;
        } catch (e) {
          udp.close();
          if (port !== 0 || attempt > 10) throw e;
        }
      }
    }
  }

  private bindUdp(host: string, port: number, v6: boolean, ipv6Only: boolean): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      // Replies go to the sender's address, always an IP literal: skip dns.lookup (an isIP
      // regex and a nextTick per reply, a measurable share of the hot path).
      const s = dgram.createSocket({
        type: v6 ? 'udp6' : 'udp4',
        ipv6Only,
        lookup: ((addr: string, _opts: unknown, cb: (e: Error | null, a: string, f: number) => void) =>
          cb(null, addr, v6 ? 6 : 4)) as unknown as typeof import('node:dns').lookup,
      });
      s.once('error', reject);
      s.bind({ address: host, port }, () => {
        s.off('error', reject);
        s.on('error', (e) => log.warn('udp socket error', { error: e }));
        s.on('message', (msg, rinfo) => this.onUdp(s, msg, rinfo));
        try {
          s.setRecvBufferSize(4 << 20);
          s.setSendBufferSize(4 << 20);
        } catch {
          /* capped by net.core.rmem_max: fine */
        }
        resolve(s);
      });
    });
  }

  private bindTcp(host: string, port: number, ipv6Only: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer((sock) => this.onTcp(sock));
      srv.maxConnections = 1000;
      srv.once('error', reject);
      srv.listen({ host, port, ipv6Only }, () => {
        srv.off('error', reject);
        srv.on('error', (e) => log.warn('tcp server error', { error: e }));
        this.tcpServers.push(srv);
        resolve();
      });
    });
  }

  /** Where the server listens (after start()). */
  addresses(): { udp: AddressInfo[]; tcp: AddressInfo[] } {
    return {
      udp: this.udpSockets.map((s) => s.address()),
      tcp: this.tcpServers.map((s) => s.address() as AddressInfo),
    };
  }

  async close(): Promise<void> {
    for (const s of this.udpSockets) s.close();
    this.udpSockets.length = 0;
    for (const c of this.conns) c.destroy();
    await Promise.all(this.tcpServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.tcpServers.length = 0;
    this.forwarder?.close();
  }

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.udp++;
    let r: Buffer | null | Promise<Buffer | null>;
    try {
      r = this.handle(msg, 'udp');
    } catch (e) {
      this.internalError(e);
      return;
    }
    if (r === null) return;
    if (!(r instanceof Promise)) sock.send(r, rinfo.port, rinfo.address);
    else
      r.then(
        (b) => b && sock.send(b, rinfo.port, rinfo.address),
        (e) => this.internalError(e),
      );
  }

  private onTcp(sock: net.Socket): void {
    this.conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(this.tcpIdleMs, () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.conns.delete(sock));
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      // A client that never completes a frame cannot make us buffer without bound.
      if (buf.length > 4 * 65537) {
        sock.destroy();
        return;
      }
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const frame = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        this.stats.tcp++;
        let r: Buffer | null | Promise<Buffer | null>;
        try {
          r = this.handle(frame, 'tcp');
        } catch (e) {
          this.internalError(e);
          continue;
        }
        if (r === null) continue;
        if (!(r instanceof Promise)) writeFrame(sock, r);
        else
          r.then(
            (b) => b && writeFrame(sock, b),
            (e) => this.internalError(e),
          );
      }
    });
  }

  private internalError(e: unknown): void {
    this.stats.errors++;
    log.error('internal error while answering a query', { error: e instanceof Error ? e.stack : String(e) });
  }

  private count(rcode: number): void {
    const n = RCODE_NAMES[rcode] ?? String(rcode);
    this.stats.rcodes[n] = (this.stats.rcodes[n] ?? 0) + 1;
  }

  /**
   * Answers one message. Returns the response bytes, null to drop, or a
   * promise when the answer comes from upstream.
   */
  handle(msg: Buffer, transport: Transport): Buffer | null | Promise<Buffer | null> {
    this.stats.queries++;
    const parsed = parseQuery(msg);
    if (!parsed.ok) {
      if ('drop' in parsed) {
        this.stats.dropped++;
        return null;
      }
      this.count(parsed.rcode);
      return errorResponse(msg, parsed.id, parsed.flags1, parsed.rcode, null, true);
    }
    const q = parsed.query;
    const limit = transport === 'udp' ? udpLimit(q) : 65535;
    const fail = (rcode: number) => {
      this.count(rcode);
      return errorResponse(msg, q.id, q.flags1, rcode, q, true);
    };
    if (q.edns && q.edns.version > 0) return fail(16); // BADVERS
    // Fast path: an answer already encoded for this (name, type).
    const hit = this.prepared.get(q.key);
    if (hit && (q.qclass === 1 || q.qclass === 255)) {
      this.stats.cacheHits++;
      this.count(hit.rcode);
      return buildResponse(msg, q, hit, limit, true);
    }
    if (q.qclass !== 1 && q.qclass !== 255) return fail(RCODE.REFUSED);
    if (q.qtype === 252 || q.qtype === 251) return fail(RCODE.REFUSED); // no zone transfers
    if (q.qtype === 41) return fail(RCODE.FORMERR); // OPT is not a question
    try {
      const r = this.answerSlow(msg, q, limit, fail);
      return r instanceof Promise
        ? r.catch((e: unknown) => {
            this.internalError(e);
            return fail(RCODE.SERVFAIL);
          })
        : r;
    } catch (e) {
      // A record we cannot encode (say, an ExternalName with an overlong label) must not cost the answer.
      this.internalError(e);
      return fail(RCODE.SERVFAIL);
    }
  }

  private answerSlow(msg: Buffer, q: Query, limit: number, fail: (rcode: number) => Buffer): Buffer | null | Promise<Buffer | null> {
    const { raw, lower: name } = questionName(msg);
    const inZone = name === this.zoneName || name.endsWith('.' + this.zoneName);
    const zone = this.zone;
    if (!zone) {
      // Before the first sync a NXDOMAIN would be wrong and cached by clients: SERVFAIL.
      if (inZone || reverseZoneOf(name)) return fail(RCODE.SERVFAIL);
      return this.forward(msg, q, raw, limit);
    }
    const qtypeName = TYPE_NAME[q.qtype] ?? `TYPE${q.qtype}`;
    const res = zone.lookup(name, qtypeName);
    if (res.kind === 'forward') {
      if (!this.forwarder && reverseZoneOf(name)) return this.respondZone(msg, q, name, zone.reverseNx(name), limit);
      return this.forward(msg, q, raw, limit);
    }
    if (res.chase && this.forwarder) {
      const chase = res.chase;
      return this.forwarder.query(chase.name, chase.type === 'A' ? 1 : 28).then((up) => {
        const extra: RR[] = [];
        for (const a of up?.answers ?? []) {
          if ((a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME') && typeof a.data === 'string') {
            extra.push({ name: a.name.toLowerCase(), type: a.type, ttl: a.ttl ?? this.ttl, data: a.data });
          }
        }
        const p = this.encode(msg, res.rcode === 'NXDOMAIN' ? 3 : 0, [...res.answers, ...extra], res.authorities, res.additionals);
        this.count(p.rcode);
        return buildResponse(msg, q, p, limit, true);
      });
    }
    return this.respondZone(msg, q, name, res, limit);
  }

  private respondZone(
    msg: Buffer,
    q: Query,
    name: string,
    res: { rcode: 'NOERROR' | 'NXDOMAIN'; answers: RR[]; authorities: RR[]; additionals: RR[] },
    limit: number,
  ): Buffer {
    const p = this.encode(msg, res.rcode === 'NXDOMAIN' ? 3 : 0, res.answers, res.authorities, res.additionals);
    if (this.prepared.size >= MAX_CACHED) this.prepared.clear();
    this.prepared.set(q.key, p);
    this.count(p.rcode);
    return buildResponse(msg, q, p, limit, true);
  }

  private encode(qbuf: Buffer, rcode: number, answers: RR[], authorities: RR[], additionals: RR[]): Prepared {
    const w = new NameWriter(qbuf);
    return prepare(
      rcode,
      true,
      answers.map((r) => encodeRR(r, w)),
      authorities.map((r) => encodeRR(r, w)),
      additionals.map((r) => encodeRR(r, w)),
    );
  }

  private async forward(msg: Buffer, q: Query, name: string, limit: number): Promise<Buffer | null> {
    if (!this.forwarder) {
      this.count(RCODE.REFUSED);
      return errorResponse(msg, q.id, q.flags1, RCODE.REFUSED, q, false);
    }
    this.stats.forwarded++;
    const r = await this.forwarder.query(name, q.qtype, q.qclass);
    if (!r) {
      this.count(RCODE.SERVFAIL);
      return errorResponse(msg, q.id, q.flags1, RCODE.SERVFAIL, q, true);
    }
    this.count(r.rcode);
    return encodeForwarded(q, name, r, limit);
  }
}

/** A forwarded answer re-encoded for the client: its id, question and EDNS; truncated to `limit` with TC. */
function encodeForwarded(q: Query, name: string, r: ForwardResult, limit: number): Buffer {
  const opt = q.edns
    ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: q.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as dnsPacket.Answer]
    : [];
  let answers = r.answers;
  let authorities = r.authorities;
  let additionals = r.additionals;
  let tc = false;
  for (let i = 0; ; i++) {
    const buf = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_AVAILABLE | (q.rd ? dnsPacket.RECURSION_DESIRED : 0) | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | r.rcode,
      questions: [{ name, type: typeName(q.qtype), class: q.qclass === 255 ? 'ANY' : 'IN' }],
      answers,
      authorities,
      additionals: [...additionals, ...opt],
    });
    if (buf.length <= limit || i > 1000) return buf;
    if (additionals.length) additionals = [];
    else if (authorities.length) authorities = [];
    else {
      tc = true;
      answers = answers.slice(0, -1);
    }
  }
}

function writeFrame(sock: net.Socket, b: Buffer): void {
  if (sock.destroyed) return;
  const len = Buffer.allocUnsafe(2);
  len.writeUInt16BE(b.length);
  sock.write(Buffer.concat([len, b]));
}

function isSelf(listen: string, up: Upstream): boolean {
  const { host, port } = splitHostPort(listen);
  if (port !== up.port) return false;
  if (host === up.host) return true;
  const any = host === '0.0.0.0' || host === '::';
  return any && (up.host.startsWith('127.') || up.host === '::1');
}

/**
 * Serves the cluster zone from a ClusterSource (`kproxy dns`, and `kproxy run
 * --dns`). The caller starts and stops the source; the server answers SERVFAIL
 * for the zone until the source's first full sync, then follows every change.
 */
export async function startDnsServer(source: ClusterSource, opts: DnsServerOptions = {}): Promise<DnsServer> {
  const server = new DnsServer(opts);
  const onChange = (state: ClusterState) => {
    try {
      server.setState(state);
      log.info('zone updated', { services: state.services.length, endpointSlices: state.endpointSlices.length, pods: state.pods.length });
    } catch (e) {
      log.error('cannot build the DNS zone from the new state', { error: e });
    }
  };
  source.on('change', onChange);
  if (source.synced) onChange(source.current());
  try {
    await server.start();
  } catch (e) {
    source.off('change', onChange);
    await server.close();
    throw e;
  }
  const close = server.close.bind(server);
  server.close = async () => {
    source.off('change', onChange);
    await close();
  };
  return server;
}
