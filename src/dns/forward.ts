// Forwarding names outside the cluster zone to upstream resolvers (CoreDNS's
// `forward . /etc/resolv.conf` plus `cache 30` in kubeadm's Corefile): UDP
// first, TCP when the upstream truncates, each upstream tried in order with a
// per-try timeout, concurrent identical questions sharing one upstream
// query, and a small cache that honours the records' TTLs (capped at 30 s).
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import { isIP } from 'node:net';
import { splitHostPort } from '../util/ip.js';
import { exchangeTcp } from './client.js';

export interface Upstream {
  host: string;
  port: number;
}

export interface ForwardResult {
  rcode: number;
  answers: dnsPacket.Answer[];
  authorities: dnsPacket.Answer[];
  additionals: dnsPacket.Answer[];
}

export interface ForwarderOptions {
  /** Per upstream try (default 2000 ms). */
  timeoutMs?: number;
  /** Cap on cached TTLs in seconds (default 30, kubeadm's `cache 30`). */
  maxTtl?: number;
  /** Entries kept (default 10000). */
  maxEntries?: number;
}

interface CacheEntry {
  expires: number;
  stored: number;
  result: ForwardResult;
}

/** Parses "IP", "IP:PORT", "[IPv6]:PORT". */
export function parseUpstream(s: string): Upstream {
  const { host, port } = splitHostPort(s.trim());
  if (!isIP(host)) throw new Error(`invalid upstream "${s}": expected IP[:PORT]`);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new Error(`invalid upstream port in "${s}"`);
  return { host, port: port ?? 53 };
}

/** The nameservers of a resolv.conf file (the host's by default). */
export function resolvConfNameservers(path = '/etc/resolv.conf'): Upstream[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!.split('%')[0]!)) out.push({ host: m[1]!.split('%')[0]!, port: 53 });
  }
  return out;
}

function ttlOf(r: ForwardResult, maxTtl: number): number {
  let ttl = maxTtl;
  const recs = r.answers.length ? r.answers : r.authorities;
  for (const rr of recs) {
    if (rr.type === 'OPT') continue;
    const t = rr.ttl ?? 0;
    if (t < ttl) ttl = t;
    // RFC 2308: a negative answer lives for min(SOA TTL, SOA minimum).
    if (rr.type === 'SOA' && !r.answers.length) ttl = Math.min(ttl, (rr.data as dnsPacket.SoaData).minimum ?? ttl);
  }
  return Math.max(0, ttl);
}

export class Forwarder {
  private readonly timeoutMs: number;
  private readonly maxTtl: number;
  private readonly maxEntries: number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<ForwardResult | null>>();
  private readonly sockets = new Map<4 | 6, dgram.Socket>();
  private readonly pending = new Map<number, (msg: Buffer) => void>();
  private closed = false;

  constructor(
    readonly upstreams: Upstream[],
    opts: ForwarderOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxTtl = opts.maxTtl ?? 30;
    this.maxEntries = opts.maxEntries ?? 10000;
  }

  /** Resolves a question upstream; null when every upstream failed or timed out (→ SERVFAIL). */
  async query(name: string, type: number, klass = 1): Promise<ForwardResult | null> {
    const key = `${name.toLowerCase()}\0${type}\0${klass}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit) {
      if (hit.expires > now) return age(hit.result, Math.floor((now - hit.stored) / 1000));
      this.cache.delete(key);
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.resolve(name, type, klass).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const r = await p;
    if (r && (r.rcode === 0 || r.rcode === 3)) {
      const ttl = ttlOf(r, this.maxTtl);
      if (ttl > 0) {
        if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
        this.cache.set(key, { expires: Date.now() + ttl * 1000, stored: Date.now(), result: r });
      }
    }
    return r;
  }

  private async resolve(name: string, type: number, klass: number): Promise<ForwardResult | null> {
    for (const up of this.upstreams) {
      if (this.closed) return null;
      try {
        let msg = await this.udp(up, name, type, klass);
        if (msg.flags !== undefined && msg.flags & dnsPacket.TRUNCATED_RESPONSE) msg = await this.tcp(up, name, type, klass);
        const rcode = (msg.flags ?? 0) & 0x0f;
        // SERVFAIL/REFUSED from one upstream: try the next, as forward's health checks would route around it.
        if ((rcode === 2 || rcode === 5) && up !== this.upstreams[this.upstreams.length - 1]) continue;
        return {
          rcode,
          answers: msg.answers ?? [],
          authorities: msg.authorities ?? [],
          additionals: (msg.additionals ?? []).filter((a) => a.type !== 'OPT'),
        };
      } catch {
        /* timeout or garbage: next upstream */
      }
    }
    return null;
  }

  private encodeQuery(id: number, name: string, type: number, klass: number): Buffer {
    return dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name, type: typeName(type), class: className(klass) }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer],
    });
  }

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.sockets.get(family);
    if (s) return s;
    s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.on('message', (msg) => {
      if (msg.length < 2) return;
      const cb = this.pending.get(msg.readUInt16BE(0));
      if (cb) cb(msg);
    });
    s.on('error', () => {
      /* per-query timeouts report failures */
    });
    s.unref();
    this.sockets.set(family, s);
    return s;
  }

  private udp(up: Upstream, name: string, type: number, klass: number): Promise<dnsPacket.Packet> {
    return new Promise((resolve, reject) => {
      let id = randomInt(0, 65536);
      for (let i = 0; this.pending.has(id) && i < 100; i++) id = randomInt(0, 65536);
      const sock = this.socket(isIP(up.host) === 6 ? 6 : 4);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`upstream ${up.host}:${up.port} timed out`));
      }, this.timeoutMs);
      this.pending.set(id, (msg) => {
        let p: dnsPacket.Packet;
        try {
          p = dnsPacket.decode(msg);
        } catch {
          return; // garbage with our id: keep waiting for the real answer
        }
        const q = p.questions?.[0];
        if (p.type !== 'response' || !q || q.name.toLowerCase() !== name.toLowerCase()) return;
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(p);
      });
      sock.send(this.encodeQuery(id, name, type, klass), up.port, up.host, (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  private async tcp(up: Upstream, name: string, type: number, klass: number): Promise<dnsPacket.Packet> {
    const q = this.encodeQuery(randomInt(0, 65536), name, type, klass);
    return dnsPacket.decode(await exchangeTcp(up, q, this.timeoutMs, () => new Error('upstream TCP timeout')));
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    this.cache.clear();
  }
}

function age(r: ForwardResult, secs: number): ForwardResult {
  if (secs <= 0) return r;
  const dec = (rrs: dnsPacket.Answer[]) => rrs.map((rr) => (rr.type === 'OPT' ? rr : { ...rr, ttl: Math.max(0, (rr.ttl ?? 0) - secs) }));
  return { rcode: r.rcode, answers: dec(r.answers), authorities: dec(r.authorities), additionals: dec(r.additionals) };
}

const CLASS_NAMES: Record<number, dnsPacket.RecordClass> = { 1: 'IN', 2: 'CS', 3: 'CH', 4: 'HS', 255: 'ANY' };

function className(c: number): dnsPacket.RecordClass {
  return CLASS_NAMES[c] ?? ('IN' as dnsPacket.RecordClass);
}

/** dns-packet takes type names; it maps "UNKNOWN_nnn" back to the number itself. */
export function typeName(t: number): dnsPacket.RecordType {
  const known: Record<number, string> = {
    1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 13: 'HINFO', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV',
    35: 'NAPTR', 39: 'DNAME', 43: 'DS', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 50: 'NSEC3', 52: 'TLSA', 255: 'ANY', 257: 'CAA',
  };
  return (known[t] ?? `UNKNOWN_${t}`) as dnsPacket.RecordType;
}
