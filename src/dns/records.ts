// The cluster zone as CoreDNS's `kubernetes` plugin serves it, computed from a
// ClusterState. Pure: buildZone() indexes the state once (Maps keyed by
// "<svc>.<ns>", by IP and by namespace) and lookup() answers one question the
// way plugin/kubernetes (parse.go, kubernetes.go findServices/findPods,
// reverse.go) and plugin/backend_lookup.go do, including their quirks:
//  - A/AAAA of a ClusterIP service do not depend on endpoints;
//  - a headless service with no ready endpoints is NXDOMAIN;
//  - `<svc>.<ns>.svc.<zone>` answers SRV for every port (named or not);
//  - an SRV weight is floor(100 / number of records), priority 0;
//  - `dns-version.<zone>` exists only for TXT;
//  - for "other" qtypes a fake A lookup decides NODATA vs NXDOMAIN.
// Names are handled lower-case and without the trailing dot.
import type { ClusterState, Service } from '../k8s/types.js';
import { normalizeIP, parseIP } from '../util/ip.js';

export type PodMode = 'disabled' | 'insecure' | 'verified';

export interface ZoneOptions {
  /** Default cluster.local. */
  zone?: string;
  /** TTL of every record (CoreDNS default 5; 0–3600). */
  ttl?: number;
  /** Pod records `a-b-c-d.<ns>.pod.<zone>`; CoreDNS's default is disabled, kubeadm's Corefile uses insecure. */
  pods?: PodMode;
  /** SOA serial; CoreDNS uses the unix time of the last change it saw. */
  serial?: number;
}

/** The schema version CoreDNS reports at dns-version.<zone> (kubernetes/dns docs/specification.md). */
export const DNS_SCHEMA_VERSION = '1.1.0';
const DNS_VERSION_TTL = 28800;

export type RR =
  | { name: string; type: 'A' | 'AAAA'; ttl: number; data: string }
  | { name: string; type: 'PTR' | 'CNAME' | 'NS'; ttl: number; data: string }
  | { name: string; type: 'TXT'; ttl: number; data: string[] }
  | { name: string; type: 'SRV'; ttl: number; data: { priority: number; weight: number; port: number; target: string } }
  | {
      name: string;
      type: 'SOA';
      ttl: number;
      data: { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };
    };

export type Lookup =
  | {
      kind: 'answer';
      rcode: 'NOERROR' | 'NXDOMAIN';
      answers: RR[];
      authorities: RR[];
      additionals: RR[];
      /** An ExternalName target outside the zone: the server resolves it upstream and appends the answers. */
      chase?: { name: string; type: 'A' | 'AAAA' };
    }
  /** Not ours: forward (or REFUSED when forwarding is off). */
  | { kind: 'forward' };

export type ZoneAnswer = Extract<Lookup, { kind: 'answer' }>;

interface EndpointAddr {
  ip: string;
  family: 4 | 6;
  hostname: string;
  /** Port -1 is CoreDNS's sentinel for a slice without ports: A records yes, SRV no. */
  ports: { name: string; port: number; protocol: string }[];
}

interface SvcEntry {
  svc: Service;
  endpoints: EndpointAddr[];
}

// One result of findServices: msg.Service in CoreDNS.
interface Found {
  /** An IP, or a hostname for ExternalName (then the record is a CNAME). */
  host: string;
  port: number;
  /** The name the records for this entry live at: <svc>.<ns>.svc.<zone> or <hostname>.<svc>.<ns>.svc.<zone>. */
  key: string;
}

type QType = string;

const NX = Symbol('nxdomain');

/** The kube-* namespaces every cluster has, even when the state shows nothing in them. */
const BUILTIN_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

function dashed(ip: string): string {
  return ip.includes('.') ? ip.replace(/\./g, '-') : ip.replace(/:/g, '-');
}

export class ZoneData {
  readonly zone: string;
  readonly ttl: number;
  readonly pods: PodMode;
  readonly serial: number;
  private readonly svcs = new Map<string, SvcEntry>();
  private readonly namespaces = new Set<string>(BUILTIN_NAMESPACES);
  /** ClusterIP → <svc>.<ns>.svc.<zone> (first service wins, as the indexer lookup does). */
  private readonly clusterIPs = new Map<string, string>();
  /** Ready endpoint IP → <hostname>.<svc>.<ns>.svc.<zone>, one per selecting service. */
  private readonly endpointIPs = new Map<string, string[]>();
  /** Primary pod IP → namespaces (pods verified). */
  private readonly podIPs = new Map<string, Set<string>>();
  /** Addresses of kube-system/kube-dns, served for ns.dns.<zone>. */
  private readonly nsAddrs: string[] = [];

  constructor(state: ClusterState, opts: ZoneOptions = {}) {
    this.zone = normalizeName(opts.zone ?? 'cluster.local');
    this.ttl = opts.ttl ?? 5;
    this.pods = opts.pods ?? 'disabled';
    this.serial = opts.serial ?? Math.floor(Date.now() / 1000);
    this.index(state);
  }

  private index(state: ClusterState): void {
    for (const s of state.services) {
      const ns = s.meta.namespace.toLowerCase();
      const key = `${s.meta.name.toLowerCase()}.${ns}`;
      this.namespaces.add(ns);
      if (this.svcs.has(key)) continue;
      this.svcs.set(key, { svc: s, endpoints: [] });
      const domain = `${key}.svc.${this.zone}`;
      if (s.type !== 'ExternalName') {
        for (const ip of s.clusterIPs) {
          const n = normalizeIP(ip);
          if (n && !this.clusterIPs.has(n)) this.clusterIPs.set(n, domain);
        }
      }
      if (s.meta.namespace === 'kube-system' && s.meta.name === 'kube-dns') this.nsAddrs.push(...s.clusterIPs);
    }
    for (const slice of state.endpointSlices) {
      this.namespaces.add(slice.meta.namespace.toLowerCase());
      if (slice.addressType === 'FQDN' || !slice.serviceName) continue;
      const key = `${slice.serviceName.toLowerCase()}.${slice.meta.namespace.toLowerCase()}`;
      const entry = this.svcs.get(key);
      if (!entry) continue;
      const ports = slice.ports.length
        ? slice.ports.filter((p) => p.port !== null).map((p) => ({ name: p.name, port: p.port as number, protocol: p.protocol }))
        : [{ name: '', port: -1, protocol: '' }];
      for (const ep of slice.endpoints) {
        // The EndpointSlice controller marks every endpoint ready when the service
        // publishes not-ready addresses; hand-written slices may not, so do it here.
        if (!ep.conditions.ready && !entry.svc.publishNotReadyAddresses) continue;
        for (const a of ep.addresses) {
          const p = parseIP(a);
          if (!p) continue;
          const ip = normalizeIP(a)!;
          const hostname = (ep.hostname || dashed(ip)).toLowerCase();
          entry.endpoints.push({ ip, family: p.family, hostname, ports });
          const target = `${hostname}.${key}.svc.${this.zone}`;
          const list = this.endpointIPs.get(ip);
          if (!list) this.endpointIPs.set(ip, [target]);
          else if (!list.includes(target)) list.push(target);
        }
      }
    }
    for (const pod of state.pods) {
      const ns = pod.meta.namespace.toLowerCase();
      this.namespaces.add(ns);
      const primary = pod.podIPs[0] && normalizeIP(pod.podIPs[0]);
      if (!primary) continue;
      let set = this.podIPs.get(primary);
      if (!set) this.podIPs.set(primary, (set = new Set()));
      set.add(ns);
    }
  }

  /** True for names this server is authoritative for (the zone; reverse names are decided per IP). */
  inZone(name: string): boolean {
    return name === this.zone || name.endsWith('.' + this.zone);
  }

  soa(owner = this.zone): RR {
    return {
      name: owner,
      type: 'SOA',
      ttl: Math.min(this.ttl, 300),
      data: {
        mname: `ns.dns.${this.zone}`,
        rname: `hostmaster.${this.zone}`,
        serial: this.serial >>> 0,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: this.ttl,
      },
    };
  }

  /** Answers one question. `name` must be lower-case without the trailing dot. */
  lookup(name: string, qtype: QType): Lookup {
    const rev = reverseZoneOf(name);
    if (rev) return this.lookupReverse(name, rev, qtype);
    if (!this.inZone(name)) return { kind: 'forward' };
    return this.lookupZone(name, qtype);
  }

  private answer(rcode: 'NOERROR' | 'NXDOMAIN', answers: RR[], additionals: RR[] = [], soaOwner?: string): ZoneAnswer {
    return {
      kind: 'answer',
      rcode,
      answers,
      additionals,
      authorities: answers.length === 0 ? [this.soa(soaOwner)] : [],
    };
  }

  private lookupReverse(name: string, revZone: string, qtype: QType): Lookup {
    const ip = addressFromReverse(name);
    if (!ip) return { kind: 'forward' };
    const targets = this.ptrTargets(ip);
    // kubeadm's Corefile has `fallthrough in-addr.arpa ip6.arpa`: IPs the cluster does not know go on upstream.
    if (targets.length === 0) return { kind: 'forward' };
    if (qtype !== 'PTR') return this.answer('NOERROR', [], [], revZone);
    return this.answer(
      'NOERROR',
      targets.map((t) => ({ name, type: 'PTR', ttl: this.ttl, data: t })),
    );
  }

  /** PTR targets for an IP: the service of a ClusterIP, else every ready endpoint with that IP. */
  ptrTargets(ip: string): string[] {
    const n = normalizeIP(ip);
    if (!n) return [];
    const svc = this.clusterIPs.get(n);
    if (svc) return [svc];
    return this.endpointIPs.get(n) ?? [];
  }

  /** NXDOMAIN when the reverse name of an unknown IP cannot be forwarded. */
  reverseNx(name: string): ZoneAnswer {
    return this.answer('NXDOMAIN', [], [], reverseZoneOf(name) ?? this.zone);
  }

  private lookupZone(name: string, qtype: QType): Lookup {
    const base = name === this.zone ? '' : name.slice(0, name.length - this.zone.length - 1);

    if (qtype === 'TXT') {
      if (base === 'dns-version') {
        return this.answer('NOERROR', [{ name, type: 'TXT', ttl: DNS_VERSION_TTL, data: [DNS_SCHEMA_VERSION] }]);
      }
      return this.existence(name, base);
    }
    if (qtype === 'SOA' && base === '') return this.answer('NOERROR', [this.soa()]);
    if (qtype === 'NS' && base === '') {
      const nsName = `ns.dns.${this.zone}`;
      return this.answer('NOERROR', [{ name, type: 'NS', ttl: this.ttl, data: nsName }], this.nsGlue(nsName));
    }
    if (base === 'ns.dns') {
      const answers = qtype === 'A' || qtype === 'AAAA' ? this.nsGlue(name).filter((r) => r.type === qtype) : [];
      return this.answer('NOERROR', answers);
    }
    if (qtype !== 'A' && qtype !== 'AAAA' && qtype !== 'SRV' && qtype !== 'CNAME') return this.existence(name, base);

    const found = this.records(base, qtype === 'SRV');
    if (found === NX) return this.answer('NXDOMAIN', []);
    switch (qtype) {
      case 'A':
      case 'AAAA':
        return this.addressAnswer(name, qtype, found);
      case 'CNAME': {
        const first = found[0];
        const answers: RR[] = first && !parseIP(first.host) ? [{ name, type: 'CNAME', ttl: this.ttl, data: first.host }] : [];
        return this.answer('NOERROR', answers);
      }
      case 'SRV':
        return this.srvAnswer(name, found);
    }
    return this.answer('NOERROR', []);
  }

  private nsGlue(owner: string): RR[] {
    return this.nsAddrs.flatMap((ip): RR[] => {
      const fam = parseIP(ip)?.family;
      return fam ? [{ name: owner, type: fam === 4 ? 'A' : 'AAAA', ttl: this.ttl, data: ip }] : [];
    });
  }

  /** NODATA when the name exists (for any type), NXDOMAIN when not: CoreDNS's "fake A lookup". */
  private existence(name: string, base: string): Lookup {
    return this.answer(this.records(base, false) === NX ? 'NXDOMAIN' : 'NOERROR', []);
  }

  private addressAnswer(name: string, qtype: 'A' | 'AAAA', found: Found[]): Lookup {
    const want = qtype === 'A' ? 4 : 6;
    const answers: RR[] = [];
    const seen = new Set<string>();
    for (const f of found) {
      const p = parseIP(f.host);
      if (!p) {
        // ExternalName: the CNAME, then the target's addresses (inside the zone here, outside via upstream).
        answers.push({ name, type: 'CNAME', ttl: this.ttl, data: f.host });
        const target = normalizeName(f.host);
        if (this.inZone(target)) {
          const inner = this.lookupZone(target, qtype);
          if (inner.kind === 'answer') answers.push(...inner.answers.filter((r) => r.name !== name));
          return this.answer('NOERROR', answers);
        }
        return { ...this.answer('NOERROR', answers), chase: { name: target, type: qtype } };
      }
      if (p.family !== want || seen.has(f.host)) continue;
      seen.add(f.host);
      answers.push({ name, type: qtype, ttl: this.ttl, data: f.host });
    }
    return this.answer('NOERROR', answers);
  }

  private srvAnswer(name: string, found: Found[]): Lookup {
    const internal = found.filter((f) => parseIP(f.host));
    const n = internal.length;
    const weight = n ? Math.floor(100 / n) : 0;
    const answers: RR[] = [];
    const additionals: RR[] = [];
    const dupSrv = new Set<string>();
    const dupAddr = new Set<string>();
    for (const f of internal) {
      if (f.port === -1) continue;
      const k = `${f.key}\0${f.port}`;
      if (!dupSrv.has(k)) {
        dupSrv.add(k);
        answers.push({ name, type: 'SRV', ttl: this.ttl, data: { priority: 0, weight, port: f.port, target: f.key } });
      }
      const a = `${f.key}\0${f.host}`;
      if (!dupAddr.has(a)) {
        dupAddr.add(a);
        additionals.push({ name: f.key, type: parseIP(f.host)!.family === 4 ? 'A' : 'AAAA', ttl: this.ttl, data: f.host });
      }
    }
    return this.answer('NOERROR', answers, additionals);
  }

  /**
   * parseRequest + findServices/findPods: the entries a name stands for, or NX.
   * An empty list means the name exists but holds nothing (NODATA).
   */
  private records(base: string, srv: boolean): Found[] | typeof NX {
    if (base === '' || base === 'svc' || base === 'pod') return [];
    const segs = base.split('.');
    let last = segs.length - 1;
    const podOrSvc = segs[last--]!;
    if (podOrSvc !== 'svc' && podOrSvc !== 'pod') return NX;
    if (last < 0) return [];
    const namespace = segs[last--]!;
    if (!this.namespaces.has(namespace)) return NX;
    if (last < 0) return [];
    const service = segs[last--]!;
    let endpoint = '';
    let port = '';
    let protocol = '';
    if (last === 0) endpoint = segs[0]!;
    else if (last === 1) {
      protocol = stripUnderscore(segs[1]!);
      port = stripUnderscore(segs[0]!);
    } else if (last > 1) return NX;

    if (podOrSvc === 'pod') return this.findPod(service, namespace);

    const entry = this.svcs.get(`${service}.${namespace}`);
    if (!entry) return NX;
    const { svc } = entry;
    const key = `${service}.${namespace}.svc.${this.zone}`;
    const out: Found[] = [];
    let matched = false;

    if (svc.type === 'ExternalName') {
      if (endpoint !== '' || !svc.externalName || parseIP(svc.externalName)) return NX;
      // SRV for external services is not implemented in CoreDNS: the name exists, without SRV records.
      return srv ? [] : [{ host: normalizeName(svc.externalName), port: 0, key }];
    }
    if (svc.headless || endpoint !== '') {
      for (const ep of entry.endpoints) {
        if (endpoint !== '' && endpoint !== ep.hostname) continue;
        for (const p of ep.ports) {
          if (!matchPortProto(port, p.name, protocol, p.protocol)) continue;
          matched = true;
          out.push({ host: ep.ip, port: p.port, key: `${ep.hostname}.${key}` });
        }
      }
      return matched ? out : NX;
    }
    const ports = svc.ports.length ? svc.ports : [{ name: '', port: -1, protocol: '' }];
    for (const p of ports) {
      if (!matchPortProto(port, p.name, protocol, p.protocol)) continue;
      matched = true;
      for (const ip of svc.clusterIPs) out.push({ host: ip, port: p.port, key });
    }
    return matched ? out : NX;
  }

  private findPod(podname: string, namespace: string): Found[] | typeof NX {
    if (this.pods === 'disabled') return NX;
    const raw = (podname.split('-').length - 1 === 3 && !podname.includes('--')) ? podname.replace(/-/g, '.') : podname.replace(/-/g, ':');
    const ip = normalizeIP(raw);
    if (!ip) return NX;
    const key = `${podname}.${namespace}.pod.${this.zone}`;
    if (this.pods === 'verified' && !this.podIPs.get(ip)?.has(namespace)) return NX;
    return [{ host: ip, port: 0, key }];
  }
}

function matchPortProto(qPort: string, port: string, qProto: string, proto: string): boolean {
  return (qPort === '' || qPort === port.toLowerCase()) && (qProto === '' || qProto === proto.toLowerCase());
}

function stripUnderscore(s: string): string {
  return s.startsWith('_') ? s.slice(1) : s;
}

/** Lower-case, no trailing dot. */
export function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

export function buildZone(state: ClusterState, opts: ZoneOptions = {}): ZoneData {
  return new ZoneData(state, opts);
}

/** 'in-addr.arpa' / 'ip6.arpa' when the name is inside a reverse zone. */
export function reverseZoneOf(name: string): string | null {
  if (name === 'in-addr.arpa' || name.endsWith('.in-addr.arpa')) return 'in-addr.arpa';
  if (name === 'ip6.arpa' || name.endsWith('.ip6.arpa')) return 'ip6.arpa';
  return null;
}

/** dnsutil.ExtractAddressFromReverse: the IP a full reverse name stands for, or null. */
export function addressFromReverse(name: string): string | null {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) < 256)) return null;
    return parts.reverse().join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const nibbles = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return null;
    const hex = nibbles.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    return normalizeIP(groups.join(':'));
  }
  return null;
}

/** The reverse name of an IP: d.c.b.a.in-addr.arpa or the 32-nibble ip6.arpa name. */
export function reverseName(ip: string): string | null {
  const p = parseIP(ip);
  if (!p) return null;
  if (p.family === 4) return `${[...p.bytes].reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (const b of p.bytes) nibbles.push((b >> 4).toString(16), (b & 15).toString(16));
  return `${nibbles.reverse().join('.')}.ip6.arpa`;
}
