// Can every DNAT destination in the live rules be reached? Asks the kernel's
// routing table (`ip route get`) for each one, and checks the address
// against what the cluster says it should be: a pod IP in a pod CIDR, or a
// node's IP for a hostNetwork endpoint.
import type { Ruleset } from '../netfilter/ruleset.js';
import type { ClusterState } from '../k8s/types.js';
import { cidrContains, normalizeIP } from '../util/ip.js';
import { exec } from '../util/exec.js';
import type { CheckResult } from './check.js';

export interface DnatTarget {
  ip: string;
  port?: number;
  chain: string;
  line: number;
  /** The service named by the rule's comment, when there is one. */
  service?: string;
}

/** Every distinct DNAT destination in the nat table. */
export function dnatTargets(rs: Ruleset): DnatTarget[] {
  const out = new Map<string, DnatTarget>();
  const nat = rs.tables.get('nat');
  if (!nat) return [];
  for (const chain of nat.chains.values())
    for (const r of chain.rules) {
      if (r.target?.kind !== 'DNAT') continue;
      const to = r.target.to[0];
      if (!to?.from) continue;
      const m = /^\[?([0-9a-fA-F.:]+?)\]?(?::(\d+))?(?:-|$)/.exec(to.text);
      const ip = normalizeIP(m?.[1] ?? '') ?? m?.[1] ?? to.text;
      const comment = r.matches.find((x) => x.kind === 'comment');
      const t: DnatTarget = { ip, chain: chain.name, line: r.line };
      if (m?.[2]) t.port = Number(m[2]);
      if (comment && comment.kind === 'comment') t.service = comment.text.split(' ')[0];
      if (!out.has(`${ip}|${t.port}`)) out.set(`${ip}|${t.port}`, t);
    }
  return [...out.values()];
}

export interface RouteAnswer {
  ok: boolean;
  /** `ip route get` output, or its error. */
  text: string;
  dev?: string;
}

export async function routeGet(ip: string): Promise<RouteAnswer> {
  const r = await exec('ip', ['route', 'get', ip], { allowFail: true });
  const text = (r.stdout || r.stderr).trim().split('\n')[0] ?? '';
  if (r.code !== 0 || /^(unreachable|blackhole|prohibit)/.test(text)) return { ok: false, text };
  const dev = / dev (\S+)/.exec(text)?.[1];
  return { ok: true, text, ...(dev ? { dev } : {}) };
}

/** The host-gw route to an endpoint: its node's pod CIDR via the node's address, when the cluster says both. */
function routeFix(ip: string, state: ClusterState | undefined): string | undefined {
  if (!state) return undefined;
  const ep = state.endpointSlices.flatMap((s) => s.endpoints).find((e) => e.addresses.includes(ip) && e.nodeName);
  const node = ep && state.nodes.find((n) => n.meta.name === ep.nodeName);
  if (!node) return undefined;
  const fam = ip.includes(':') ? 6 : 4;
  const via = node.addresses.find((a) => a.type === 'InternalIP' && a.address.includes(':') === (fam === 6))?.address;
  const cidr = node.podCIDRs.find((c) => cidrContains(c, ip));
  if (!via || via === ip) return undefined;
  return `ip route add ${cidr ?? ip} via ${via}`;
}

export interface ReachFacts {
  targets: DnatTarget[];
  state?: ClusterState;
  /** This node's addresses. */
  localIPs: string[];
  /** --cluster-cidr. */
  clusterCIDRs: string[];
  route: (ip: string) => Promise<RouteAnswer>;
}

export async function reachChecks(f: ReachFacts): Promise<CheckResult[]> {
  const podCIDRs = [...f.clusterCIDRs, ...(f.state?.nodes.flatMap((n) => n.podCIDRs) ?? [])];
  const nodeOf = new Map<string, string>();
  for (const n of f.state?.nodes ?? []) for (const a of n.addresses) nodeOf.set(normalizeIP(a.address) ?? a.address, n.meta.name);
  const results: CheckResult[] = [];
  const unreachable: string[] = [];
  const routeFixes: string[] = [];
  const strangers: string[] = [];
  for (const t of f.targets) {
    const where = `${t.ip}${t.port ? `:${t.port}` : ''} (${t.service ?? t.chain}, nat ${t.chain} line ${t.line})`;
    const r = await f.route(t.ip);
    if (!r.ok) {
      unreachable.push(`${where}: ip route get → ${r.text || 'no route'}`);
      const fix = routeFix(t.ip, f.state);
      if (fix && !routeFixes.includes(fix)) routeFixes.push(fix);
    }
    const inPodCIDR = podCIDRs.some((c) => cidrContains(c, t.ip));
    if (!inPodCIDR && !nodeOf.has(t.ip) && !f.localIPs.includes(t.ip) && (f.state || podCIDRs.length))
      strangers.push(`${where}: neither in a pod CIDR (${podCIDRs.join(', ') || 'none known'}) nor any known node's address`);
  }
  results.push(
    unreachable.length
      ? {
          id: 'reach.routes',
          title: 'every DNAT destination has a route',
          status: 'fail',
          evidence: unreachable,
          fix: routeFixes.length
            ? routeFixes.join(' && ')
            : "add the route to that pod network (the CNI or overlay route to the node that hosts it): ip route add <that node's pod CIDR> via <that node's IP>",
        }
      : { id: 'reach.routes', title: 'every DNAT destination has a route', status: 'ok', evidence: [`${f.targets.length} destination(s) routable`] },
  );
  if (f.state || podCIDRs.length)
    results.push(
      strangers.length
        ? {
            id: 'reach.addresses',
            title: 'DNAT destinations are pods or known nodes',
            status: 'warn',
            evidence: [...strangers, 'an endpoint on an address no node has: a node\'s IP may have changed, or the EndpointSlice is stale'],
            fix: 'compare with kubectl get endpointslices -A -o wide and kubectl get nodes -o wide; fix or delete the stale EndpointSlice',
          }
        : { id: 'reach.addresses', title: 'DNAT destinations are pods or known nodes', status: 'ok', evidence: ['every destination is in a pod CIDR or is a node address'] },
    );
  return results;
}

export interface TrapFacts {
  live: Ruleset;
  /** This node's addresses: the tracer's local addresses. */
  localIPs: string[];
  /** The address NodePort packets are sent to (the node IP); default the first non-loopback local address. */
  nodeIP?: string;
  state?: ClusterState;
  trace: (dst: string, dport: number, proto: string) => { verdict: string; probability: number; destination: string; path: { table: string | null; chain: string | null; line: number | null; rule: string }[] }[];
}

/**
 * Seed 001 §4: a NodePort whose endpoint is a hostNetwork pod on another
 * node is DNATed to that node's IP and forwarded; with FORWARD's policy at
 * DROP and nothing accepting it, the connection dies. Each NodePort is traced
 * from outside, and a DROP in FORWARD is reported with the trace as evidence.
 */
export function forwardTrapChecks(f: TrapFacts): CheckResult[] {
  const nodeIP = f.nodeIP ?? f.localIPs.find((ip) => !ip.startsWith('127.') && ip !== '::1');
  const nat = f.live.tables.get('nat');
  const ports = new Map<string, { port: number; proto: string; service: string }>();
  for (const r of nat?.chains.get('KUBE-NODEPORTS')?.rules ?? []) {
    const dport = r.matches.find((m) => m.kind === 'port' && m.dir === 'dport');
    const proto = r.matches.find((m) => m.kind === 'proto');
    const comment = r.matches.find((m) => m.kind === 'comment');
    if (!dport || dport.kind !== 'port' || r.matches.some((m) => m.kind === 'addr')) continue;
    const port = dport.ranges[0]![0];
    const p = proto && proto.kind === 'proto' ? proto.proto : 'tcp';
    ports.set(`${p}/${port}`, { port, proto: p, service: comment && comment.kind === 'comment' ? comment.text : '?' });
  }
  if (!nodeIP || ports.size === 0)
    return [{ id: 'reach.nodeport_forward', title: 'NodePort traffic is forwarded to remote endpoints', status: 'ok', evidence: ['no NodePorts programmed'] }];
  const nodeAddrs = new Set((f.state?.nodes ?? []).flatMap((n) => n.addresses.map((a) => a.address)));
  const dropped: string[] = [];
  for (const { port, proto, service } of ports.values()) {
    for (const o of f.trace(nodeIP, port, proto)) {
      if (o.verdict !== 'DROP') continue;
      const last = o.path.at(-1);
      if (!last || last.chain !== 'FORWARD') continue;
      const host = o.destination.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const kind = nodeAddrs.has(host) ? 'a hostNetwork endpoint on another node' : 'a pod';
      dropped.push(
        `${service} (NodePort ${proto}/${port}) → ${o.destination}, ${kind}: dropped in FORWARD with probability ${o.probability.toFixed(4)}`,
        ...o.path.filter((s) => s.line !== null || s.chain === 'FORWARD').slice(-6).map((s) => `    ${s.table ?? ''} ${s.chain ?? ''}${s.line ? ` line ${s.line}` : ''}: ${s.rule}`),
        `    (kproxy trace --rules <(${f.live.family === 6 ? 'ip6tables' : 'iptables'}-save) --from external --proto ${proto} --dst ${nodeIP.includes(':') ? `[${nodeIP}]` : nodeIP}:${port})`,
      );
    }
  }
  return dropped.length
    ? [
        {
          id: 'reach.nodeport_forward',
          title: 'NodePort traffic is forwarded to remote endpoints',
          status: 'fail',
          evidence: dropped,
          fix: `${f.live.family === 6 ? 'ip6tables' : 'iptables'} -P FORWARD ACCEPT`,
        },
      ]
    : [{ id: 'reach.nodeport_forward', title: 'NodePort traffic is forwarded to remote endpoints', status: 'ok', evidence: [`${ports.size} NodePort(s) traced from outside: none dropped in FORWARD`] }];
}
