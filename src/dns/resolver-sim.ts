// What a pod's resolver does with a name: the resolv.conf kubelet writes for
// the pod's dnsPolicy (pkg/kubelet/network/dns/dns.go), then glibc's
// res_nsearch over it (ndots, the search list, nameservers in order).
import { query, QueryTimeout, type QueryResult } from './client.js';

export type DnsPolicy = 'ClusterFirst' | 'ClusterFirstWithHostNet' | 'Default' | 'None';

export interface ResolvConf {
  nameservers: string[];
  searches: string[];
  options: string[];
}

export function parseResolvConf(text: string): ResolvConf {
  const rc: ResolvConf = { nameservers: [], searches: [], options: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (!line) continue;
    const [key, ...fields] = line.split(/\s+/);
    if (key === 'nameserver' && fields[0]) rc.nameservers.push(fields[0]);
    // The last search/domain line wins (resolv.conf(5)); kubelet drops "." and trailing dots.
    else if (key === 'search' || key === 'domain') rc.searches = fields.filter((s) => s !== '.').map((s) => s.replace(/\.$/, ''));
    else if (key === 'options') rc.options.push(...fields);
  }
  return rc;
}

export function formatResolvConf(rc: ResolvConf): string {
  const lines = rc.nameservers.map((n) => `nameserver ${n}`);
  if (rc.searches.length) lines.push(`search ${rc.searches.join(' ')}`);
  if (rc.options.length) lines.push(`options ${rc.options.join(' ')}`);
  return lines.join('\n') + '\n';
}

export interface PodDnsInput {
  namespace: string;
  dnsPolicy: DnsPolicy;
  hostNetwork: boolean;
  /** kubelet --cluster-dns. */
  clusterDNS: string[];
  /** kubelet --cluster-domain. */
  clusterDomain: string;
  /** The node's resolv.conf (kubelet --resolv-conf); null when kubelet's --resolv-conf is "". */
  host: ResolvConf | null;
}

export interface PodDns {
  conf: ResolvConf;
  /** Which branch of kubelet's getPodDNSType applied, in words. */
  explanation: string;
}

const MAX_NAMESERVERS = 3;
const MAX_SEARCHES = 32;

function dedup(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** kubelet's GetPodDNS for a pod without spec.dnsConfig. */
export function podResolvConf(p: PodDnsInput): PodDns {
  const host: ResolvConf = p.host ?? { nameservers: ['127.0.0.1', '::1'], searches: ['.'], options: [] };
  const hostCopy = (why: string): PodDns => ({
    conf: {
      nameservers: host.nameservers.slice(0, MAX_NAMESERVERS),
      searches: host.searches.slice(0, MAX_SEARCHES),
      options: [...host.options],
    },
    explanation: why,
  });
  switch (p.dnsPolicy) {
    case 'None':
      return { conf: { nameservers: [], searches: [], options: [] }, explanation: 'dnsPolicy None: an empty resolv.conf; spec.dnsConfig must provide everything' };
    case 'Default':
      return hostCopy("dnsPolicy Default: the node's resolv.conf");
    case 'ClusterFirst':
    case 'ClusterFirstWithHostNet': {
      if (p.dnsPolicy === 'ClusterFirst' && p.hostNetwork) {
        return hostCopy(
          "dnsPolicy ClusterFirst with hostNetwork: kubelet falls back to Default, the node's resolv.conf (cluster names do not resolve; use ClusterFirstWithHostNet)",
        );
      }
      if (!p.clusterDNS.length) return hostCopy("kubelet has no --cluster-dns: ClusterFirst falls back to Default, the node's resolv.conf");
      const domain = p.clusterDomain;
      const cluster = domain ? [`${p.namespace}.svc.${domain}`, `svc.${domain}`, domain] : [];
      return {
        conf: {
          nameservers: p.clusterDNS.slice(0, MAX_NAMESERVERS),
          searches: dedup([...cluster, ...host.searches.filter((s) => s !== '.')]).slice(0, MAX_SEARCHES),
          options: ['ndots:5'],
        },
        explanation:
          p.dnsPolicy === 'ClusterFirst'
            ? 'dnsPolicy ClusterFirst: the cluster DNS, the cluster search list then the node\'s, ndots:5'
            : 'dnsPolicy ClusterFirstWithHostNet: the cluster DNS even with hostNetwork, the cluster search list then the node\'s, ndots:5',
      };
    }
  }
}

export function ndotsOf(rc: ResolvConf): number {
  let n = 1;
  for (const o of rc.options) {
    const m = /^ndots:(\d+)$/.exec(o);
    if (m) n = Math.min(15, Number(m[1]));
  }
  return n;
}

/**
 * The names glibc's res_nsearch tries, in order: a trailing dot means only
 * the name itself; at least ndots dots means the name first, then the search
 * list; fewer means the search list first, then the name.
 */
export function searchCandidates(name: string, rc: ResolvConf): { candidates: string[]; rule: string } {
  if (name.endsWith('.')) return { candidates: [name], rule: `"${name}" ends with a dot: absolute, no search list` };
  const dots = name.split('.').length - 1;
  const ndots = ndotsOf(rc);
  const searched = rc.searches.map((s) => `${name}.${s}.`);
  if (dots >= ndots) {
    return {
      candidates: dedup([`${name}.`, ...searched]),
      rule: `"${name}" has ${dots} dot(s) ≥ ndots:${ndots}: tried as is first, then with each search domain`,
    };
  }
  return {
    candidates: dedup([...searched, `${name}.`]),
    rule: `"${name}" has ${dots} dot(s) < ndots:${ndots}: each search domain first, then as is`,
  };
}

export interface Attempt {
  name: string;
  type: string;
  nameserver: string;
  /** Where the query actually went (differs when --server maps the cluster DNS). */
  sentTo: string;
  outcome: string;
  result?: QueryResult;
  ms: number;
}

export interface WalkResult {
  attempts: Attempt[];
  /** The answer that ended the walk, or null when every candidate failed. */
  answer: { name: string; result: QueryResult } | null;
  /** NXDOMAIN / SERVFAIL / NODATA / TIMEOUT when the walk failed. */
  failure?: string;
}

export type Sender = (nameserver: string, name: string, type: string) => Promise<{ sentTo: string; result: QueryResult }>;

/** Sends to `nameserver`:53, or to `server` when the nameserver is the cluster DNS IP and --server maps it. */
export function defaultSender(map: Map<string, { host: string; port: number }>, timeoutMs: number): Sender {
  return async (ns, name, type) => {
    const target = map.get(ns) ?? { host: ns, port: 53 };
    const result = await query(target, name, type, { timeoutMs });
    return { sentTo: target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`, result };
  };
}

/**
 * glibc res_nsearch over `rc`: for each candidate, nameservers in order
 * (SERVFAIL, REFUSED, NOTIMP or a timeout move to the next one); NXDOMAIN or
 * NODATA go to the next candidate; SERVFAIL on every server also moves on
 * (got_servfail); an answer ends the walk.
 */
export async function walk(name: string, type: string, rc: ResolvConf, send: Sender): Promise<WalkResult> {
  const { candidates } = searchCandidates(name, rc);
  const attempts: Attempt[] = [];
  let failure = rc.nameservers.length ? 'NXDOMAIN' : 'NO NAMESERVERS';
  let sawServfail = false;
  let sawNodata = false;
  for (const cand of candidates) {
    for (const ns of rc.nameservers) {
      const start = Date.now();
      try {
        const { sentTo, result } = await send(ns, cand, type);
        const hit = result.rcode === 'NOERROR' && result.answers.some((a) => a.type === type);
        const nodata = result.rcode === 'NOERROR' && !hit;
        const outcome = hit ? 'answer' : nodata ? 'NODATA' : result.rcode;
        attempts.push({ name: cand, type, nameserver: ns, sentTo, outcome, result, ms: Date.now() - start });
        if (hit) return { attempts, answer: { name: cand, result } };
        if (nodata) {
          sawNodata = true;
          break;
        }
        if (result.rcode === 'NXDOMAIN') break;
        if (result.rcode === 'SERVFAIL') sawServfail = true;
        // SERVFAIL / REFUSED / NOTIMP / FORMERR: res_send tries the next nameserver.
      } catch (e) {
        attempts.push({
          name: cand,
          type,
          nameserver: ns,
          sentTo: ns,
          outcome: e instanceof QueryTimeout ? 'TIMEOUT' : `ERROR ${(e as Error).message}`,
          ms: Date.now() - start,
        });
        sawServfail = true;
      }
    }
  }
  if (sawNodata) failure = 'NODATA';
  else if (sawServfail) failure = attempts.some((a) => a.outcome === 'SERVFAIL') ? 'SERVFAIL' : 'TIMEOUT';
  return { attempts, answer: null, failure };
}
