// IPVS tables as ipvsadm prints them, for the tracer: the save format
// (`ipvsadm -Sn`, what ipvsadm-restore reads) and the listing (`ipvsadm -Ln`,
// which also carries each real server's ActiveConn/InActConn counters).
// Addresses must be numeric (-n); a name is an error that says so.
import { normalizeIP, splitHostPort } from '../util/ip.js';

export type IpvsProto = 'tcp' | 'udp' | 'sctp';
export type IpvsForward = 'masq' | 'route' | 'tunnel';

export interface IpvsDest {
  address: string;
  port: number;
  forward: IpvsForward;
  weight: number;
  /** From a listing; undefined in save format (treated as idle). */
  activeConns?: number;
  inactiveConns?: number;
  line: number;
}

export interface IpvsService {
  /** Undefined for firewall-mark services. */
  proto?: IpvsProto;
  address?: string;
  port?: number;
  fwmark?: number;
  family: 4 | 6;
  scheduler: string;
  /** Persistence timeout in seconds (ipvsadm -p / "persistent N"). */
  persistent?: number;
  /** Persistence netmask as printed (-M / "mask"). */
  netmask?: string;
  /** Scheduler flags (-b / "(flag,flag)"), e.g. mh-port, sh-fallback. */
  schedFlags: string[];
  onePacket: boolean;
  dests: IpvsDest[];
  line: number;
}

export interface IpvsTable {
  format: 'save' | 'listing';
  services: IpvsService[];
}

export class IpvsParseError extends Error {
  constructor(
    readonly line: number,
    readonly detail: string,
    readonly source?: string,
  ) {
    super(`${source ? `${source}:` : 'line '}${line}: ${detail}`);
  }
}

/** "10.0.0.1:80" / "[fd00::1]:80" → normalized address and port. */
function addrPort(s: string, fail: (m: string) => never): { address: string; port: number; family: 4 | 6 } {
  const hp = splitHostPort(s);
  if (hp.port === undefined) fail(`"${s}" is not ADDRESS:PORT`);
  const ip = normalizeIP(hp.host);
  if (!ip) fail(`"${hp.host}" is not a numeric address (dump with ipvsadm -n)`);
  if (!Number.isInteger(hp.port) || hp.port! < 0 || hp.port! > 65535) fail(`bad port in "${s}"`);
  return { address: ip!, port: hp.port!, family: ip!.includes(':') ? 6 : 4 };
}

const PROTO_SWITCH: Record<string, IpvsProto> = { '-t': 'tcp', '--tcp-service': 'tcp', '-u': 'udp', '--udp-service': 'udp', '--sctp-service': 'sctp' };
const FWD_SWITCH: Record<string, IpvsForward> = { '-m': 'masq', '--masquerading': 'masq', '-g': 'route', '--gatewaying': 'route', '-i': 'tunnel', '--ipip': 'tunnel' };
const FWD_NAME: Record<string, IpvsForward> = { Masq: 'masq', Route: 'route', Local: 'route', Tunnel: 'tunnel' };

/** Whether the text looks like ipvsadm output of either kind. */
export function looksLikeIpvsadm(text: string): boolean {
  return /^\s*(-A\s|IP Virtual Server version|Prot LocalAddress)/m.test(text);
}

export function parseIpvsadm(text: string, source?: string): IpvsTable {
  const lines = text.split('\n');
  const first = lines.findIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (first < 0) return { format: 'save', services: [] };
  const head = lines[first]!.trim();
  if (head.startsWith('-')) return parseSaveLines(lines, source);
  if (/^(IP Virtual Server version|Prot LocalAddress)/.test(head)) return parseListingLines(lines, source);
  throw new IpvsParseError(first + 1, 'neither `ipvsadm -Sn` output (lines starting -A/-a) nor an `ipvsadm -Ln` listing', source);
}

function serviceKey(proto: string | undefined, addr: string | undefined, port: number | undefined, fwmark: number | undefined): string {
  return fwmark !== undefined ? `fwm ${fwmark}` : `${proto} ${addr}:${port}`;
}

function parseSaveLines(lines: string[], source?: string): IpvsTable {
  const services: IpvsService[] = [];
  const byKey = new Map<string, IpvsService>();
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (!line || line.startsWith('#')) return;
    const fail = (m: string): never => {
      throw new IpvsParseError(n, m, source);
    };
    const w = line.split(/\s+/);
    const cmd = w[0];
    if (cmd !== '-A' && cmd !== '-a' && cmd !== '--add-service' && cmd !== '--add-server') fail(`unexpected "${cmd}" (save format has -A and -a lines only)`);
    let proto: IpvsProto | undefined;
    let fwmark: number | undefined;
    let ap: { address: string; port: number; family: 4 | 6 } | undefined;
    let family: 4 | 6 = 4;
    const svc: Partial<IpvsService> = { schedFlags: [], onePacket: false };
    const dest: Partial<IpvsDest> = { forward: 'route', weight: 1, line: n };
    for (let k = 1; k < w.length; k++) {
      const t = w[k]!;
      const next = (): string => w[++k] ?? fail(`${t} needs a value`);
      if (PROTO_SWITCH[t]) {
        proto = PROTO_SWITCH[t];
        ap = addrPort(next(), fail);
        family = ap.family;
      } else if (t === '-f' || t === '--fwmark-service') {
        fwmark = Number(next());
        if (!Number.isInteger(fwmark)) fail('bad firewall mark');
      } else if (t === '-6' || t === '--ipv6') family = 6;
      else if (t === '-s' || t === '--scheduler') svc.scheduler = next();
      else if (t === '-p' || t === '--persistent') {
        const v = w[k + 1];
        if (v !== undefined && /^\d+$/.test(v)) svc.persistent = Number(w[++k]);
        else svc.persistent = 300; // ipvsadm's default persistence timeout
      } else if (t === '-M' || t === '--netmask') svc.netmask = next();
      else if (t === '--pe' || t === 'pe') next();
      else if (t === '-b' || t === '--sched-flags') svc.schedFlags = next().split(',').filter(Boolean);
      else if (t === '-o' || t === '--ops' || t === 'ops') svc.onePacket = true;
      else if (t === '-r' || t === '--real-server') {
        const r = addrPort(next(), fail);
        dest.address = r.address;
        dest.port = r.port;
      } else if (FWD_SWITCH[t]) dest.forward = FWD_SWITCH[t];
      else if (t === '-w' || t === '--weight') {
        dest.weight = Number(next());
        if (!Number.isInteger(dest.weight) || dest.weight < 0) fail('bad weight');
      } else if (t === '-x' || t === '-y' || t === '--u-threshold' || t === '--l-threshold' || t === '--tun-type' || t === '--tun-port') next();
      else if (t === '--tun-nocsum' || t === '--tun-csum' || t === '--tun-remcsum') continue;
      else fail(`unknown option "${t}"`);
    }
    if (!ap && fwmark === undefined) fail('no service address (-t/-u/--sctp-service ADDR:PORT or -f MARK)');
    const key = serviceKey(proto, ap?.address, ap?.port, fwmark);
    if (cmd === '-A' || cmd === '--add-service') {
      if (byKey.has(key)) fail(`service ${key} defined twice`);
      const s: IpvsService = {
        family,
        scheduler: svc.scheduler ?? 'wlc', // ipvsadm's default scheduler
        schedFlags: svc.schedFlags ?? [],
        onePacket: svc.onePacket ?? false,
        dests: [],
        line: n,
      };
      if (proto) s.proto = proto;
      if (ap) {
        s.address = ap.address;
        s.port = ap.port;
      }
      if (fwmark !== undefined) s.fwmark = fwmark;
      if (svc.persistent !== undefined) s.persistent = svc.persistent;
      if (svc.netmask !== undefined) s.netmask = svc.netmask;
      byKey.set(key, s);
      services.push(s);
    } else {
      const s = byKey.get(key) ?? fail(`real server for unknown service ${key} (its -A line must come first)`);
      if (dest.address === undefined) fail('-a needs -r ADDR:PORT');
      s.dests.push(dest as IpvsDest);
    }
  });
  return { format: 'save', services };
}

function parseListingLines(lines: string[], source?: string): IpvsTable {
  const services: IpvsService[] = [];
  let cur: IpvsService | undefined;
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trimEnd();
    const t = line.trim();
    const fail = (m: string): never => {
      throw new IpvsParseError(n, m, source);
    };
    if (!t || t.startsWith('#') || /^(IP Virtual Server version|Prot LocalAddress|-> RemoteAddress)/.test(t)) return;
    if (t.startsWith('->')) {
      if (!cur) fail('real server before any service');
      const w = t.slice(2).trim().split(/\s+/);
      const r = addrPort(w[0] ?? '', fail);
      const fwd = FWD_NAME[w[1] ?? ''] ?? fail(`unknown forwarding method "${w[1]}"`);
      const nums = w.slice(2).filter((x) => /^\d+$/.test(x)).map(Number);
      if (nums.length < 3) fail('expected Weight ActiveConn InActConn');
      cur!.dests.push({ address: r.address, port: r.port, forward: fwd, weight: nums[0]!, activeConns: nums[1]!, inactiveConns: nums[2]!, line: n });
      return;
    }
    const w = t.split(/\s+/);
    const s: IpvsService = { family: 4, scheduler: '', schedFlags: [], onePacket: false, dests: [], line: n };
    let k: number;
    if (w[0] === 'FWM') {
      s.fwmark = Number(w[1]);
      if (!Number.isInteger(s.fwmark)) fail('bad firewall mark');
      k = 2;
      if (w[k] === 'IPv6') {
        s.family = 6;
        k++;
      }
    } else {
      const proto = ({ TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' } as Record<string, IpvsProto>)[w[0] ?? ''] ?? fail(`unknown protocol "${w[0]}"`);
      const ap = addrPort(w[1] ?? '', fail);
      s.proto = proto;
      s.address = ap.address;
      s.port = ap.port;
      s.family = ap.family;
      k = 2;
    }
    s.scheduler = w[k++] ?? fail('no scheduler');
    for (; k < w.length; k++) {
      const x = w[k]!;
      if (x.startsWith('(')) s.schedFlags = x.replace(/[()]/g, '').split(/[,|]/).filter(Boolean);
      else if (x === 'persistent') s.persistent = Number(w[++k]);
      else if (x === 'mask') s.netmask = w[++k];
      else if (x === 'pe') k++;
      else if (x === 'ops') s.onePacket = true;
    }
    services.push(s);
    cur = s;
  });
  return { format: 'listing', services };
}

/** The service a packet to dst:dport/proto hits (address services only; fwmark ones need the mark). */
export function findIpvsService(table: IpvsTable, proto: string, dst: string, dport: number | undefined): IpvsService | undefined {
  const ip = normalizeIP(dst);
  return table.services.find((s) => s.proto === proto && s.address === ip && s.port === dport);
}
