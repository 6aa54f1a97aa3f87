// Stale UDP conntrack entries (upstream pkg/proxy/conntrack/cleanup.go,
// CleanStaleEntries): after a successful sync that touched a UDP service,
// list the UDP flows of the family and delete those whose original
// destination is a service IP:port (ClusterIP, external IP, LB IP) or a
// NodePort, but whose reply comes from an address that is not a serving
// endpoint of that service any more. Without this, a UDP client that keeps
// sending (DNS, syslog) stays pinned to a dead pod until its entry times out.
// Upstream speaks netlink; kproxy runs the `conntrack` tool.
import type { ClusterState, IPFamily } from '../k8s/types.js';
import { buildServicePortMap } from '../proxy/service-port.js';
import { buildEndpointsMap } from '../proxy/endpoints.js';
import { exec } from '../util/exec.js';

export interface Flow {
  origSrc: string;
  origDst: string;
  origSport: number;
  origDport: number;
  replySrc: string;
}

/** Parses `conntrack -L -p udp -o extended` lines. */
export function parseFlows(text: string): Flow[] {
  const out: Flow[] = [];
  for (const line of text.split('\n')) {
    if (!/\budp\b/.test(line)) continue;
    const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!);
    const dst = [...line.matchAll(/\bdst=(\S+)/g)].map((m) => m[1]!);
    const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]));
    const dport = [...line.matchAll(/\bdport=(\d+)/g)].map((m) => Number(m[1]));
    if (src.length < 2 || dst.length < 1 || dport.length < 1) continue;
    out.push({ origSrc: src[0]!, origDst: dst[0]!, origSport: sport[0] ?? 0, origDport: dport[0]!, replySrc: src[1]! });
  }
  return out;
}

/** What each UDP service address and NodePort may be answered from (serving endpoints). */
export interface UdpServing {
  /** "ip|port" of a service IP → serving endpoint IPs. */
  byAddr: Map<string, Set<string>>;
  /** NodePort → serving endpoint IPs. */
  byNodePort: Map<number, Set<string>>;
}

export function udpServing(state: ClusterState, family: IPFamily, nodeName: string): UdpServing {
  // Only services with a UDP port matter: building the maps of the whole cluster (10k TCP
  // services) cost ~200 ms after every full sync for nothing.
  const services = state.services.filter((s) => s.ports.some((p) => p.protocol === 'UDP'));
  const byAddr = new Map<string, Set<string>>();
  const byNodePort = new Map<number, Set<string>>();
  if (services.length === 0) return { byAddr, byNodePort };
  const names = new Set(services.map((s) => `${s.meta.namespace}/${s.meta.name}`));
  const slices = state.endpointSlices.filter((e) => names.has(`${e.meta.namespace}/${e.serviceName}`));
  const ports = buildServicePortMap(services, family);
  const eps = buildEndpointsMap(slices, ports, family, nodeName);
  for (const [key, sp] of ports) {
    if (sp.protocol !== 'UDP') continue;
    // Traffic policy, topology and terminating state are ignored on purpose (upstream).
    const serving = new Set((eps.get(key) ?? []).filter((e) => e.serving).map((e) => e.ip));
    for (const ip of [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerVIPs]) if (ip) byAddr.set(`${ip}|${sp.port}`, serving);
    if (sp.nodePort) byNodePort.set(sp.nodePort, serving);
  }
  return { byAddr, byNodePort };
}

/** The deletions to run: one filter per (orig dst, orig dport, reply src). */
export function staleFilters(flows: Flow[], s: UdpServing): { dst?: string; dport: number; replySrc: string }[] {
  const out = new Map<string, { dst?: string; dport: number; replySrc: string }>();
  for (const f of flows) {
    const set = s.byAddr.get(`${f.origDst}|${f.origDport}`);
    if (set && !set.has(f.replySrc)) out.set(`${f.origDst}|${f.origDport}|${f.replySrc}`, { dst: f.origDst, dport: f.origDport, replySrc: f.replySrc });
    const np = s.byNodePort.get(f.origDport);
    if (!set && np && !np.has(f.replySrc)) out.set(`*|${f.origDport}|${f.replySrc}`, { dport: f.origDport, replySrc: f.replySrc });
  }
  return [...out.values()];
}

export interface ConntrackOptions {
  /** Prefix for running in another namespace (tests, bench). */
  wrap?: string[];
}

function run(wrap: string[], args: string[]) {
  return wrap.length
    ? exec(wrap[0]!, [...wrap.slice(1), 'conntrack', ...args], { allowFail: true, timeoutMs: 30_000 })
    : exec('conntrack', args, { allowFail: true, timeoutMs: 30_000 });
}

/** Deletes stale UDP entries for one family; returns how many deletions were run. */
export async function cleanStaleUdp(state: ClusterState, family: IPFamily, nodeName: string, opts: ConntrackOptions = {}): Promise<number> {
  const wrap = opts.wrap ?? [];
  const fam = family === 'IPv6' ? 'ipv6' : 'ipv4';
  const serving = udpServing(state, family, nodeName);
  if (!serving.byAddr.size && !serving.byNodePort.size) return 0;
  const listed = await run(wrap, ['-L', '-p', 'udp', '-f', fam, '-o', 'extended']);
  if (listed.code !== 0) throw new Error(`conntrack -L failed: ${listed.stderr.trim()}`);
  const filters = staleFilters(parseFlows(listed.stdout), serving);
  for (const f of filters) {
    const args = ['-D', '-p', 'udp', '-f', fam, '--dport', String(f.dport), '--reply-src', f.replySrc];
    if (f.dst) args.push('--orig-dst', f.dst);
    // Exit 1 with "0 flow entries" when the flow went away meanwhile: fine.
    await run(wrap, args);
  }
  return filters.length;
}
