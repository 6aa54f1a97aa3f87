// The pod's view of DNS (seed 001 §3): the resolv.conf kubelet would write for
// its dnsPolicy, and whether the first nameserver in it answers for
// kubernetes.default.svc.<zone>.
import { readFile } from 'node:fs/promises';
import { parseResolvConf, podResolvConf, formatResolvConf, type DnsPolicy } from '../dns/resolver-sim.js';
import { query, type QueryResult } from '../dns/client.js';
import type { ClusterState } from '../k8s/types.js';
import type { CheckResult } from './check.js';

export interface DnsFacts {
  namespace: string;
  dnsPolicy: DnsPolicy;
  hostNetwork: boolean;
  zone: string;
  /** kubelet --cluster-dns; default: the kube-dns Service's ClusterIP in the state. */
  clusterDNS?: string[];
  /** The node's resolv.conf (kubelet --resolv-conf). */
  resolvConfPath: string;
  state?: ClusterState;
  /** Port nameservers listen on (53; tests may use another). */
  port?: number;
  ask?: (server: string, name: string) => Promise<QueryResult>;
}

export function clusterDnsFromState(state: ClusterState | undefined): string[] {
  const svc = state?.services.find((s) => s.meta.namespace === 'kube-system' && s.meta.name === 'kube-dns');
  return svc?.clusterIPs.slice(0, 1) ?? [];
}

export async function dnsChecks(f: DnsFacts): Promise<CheckResult[]> {
  const id = 'dns.pod_view';
  const title = `DNS from a ${f.hostNetwork ? 'hostNetwork ' : ''}pod in ${f.namespace} (dnsPolicy ${f.dnsPolicy})`;
  const hostText = await readFile(f.resolvConfPath, 'utf8').catch(() => undefined);
  if (hostText === undefined) return [{ id, title, status: 'error', evidence: [`cannot read ${f.resolvConfPath}`] }];
  const clusterDNS = f.clusterDNS ?? clusterDnsFromState(f.state);
  const pod = podResolvConf({
    namespace: f.namespace,
    dnsPolicy: f.dnsPolicy,
    hostNetwork: f.hostNetwork,
    clusterDNS,
    clusterDomain: f.zone,
    host: parseResolvConf(hostText),
  });
  const conf = formatResolvConf(pod.conf).trimEnd();
  const evidence = [pod.explanation, 'resolv.conf:', ...conf.split('\n').map((l) => `  ${l}`)];
  const server = pod.conf.nameservers[0];
  const name = `kubernetes.default.svc.${f.zone}`;
  if (!server) return [{ id, title, status: 'fail', evidence: [...evidence, 'no nameserver'], fix: 'give the pod a nameserver: dnsPolicy ClusterFirst with kubelet --cluster-dns=<kube-dns ClusterIP>' }];
  const ask = f.ask ?? ((s: string, n: string) => query({ host: s, port: f.port ?? 53 }, n, 'A', { timeoutMs: 1500 }));
  let answer: QueryResult | undefined;
  let error: string | undefined;
  try {
    answer = await ask(server, name);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  const ips = (answer?.answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data?: unknown }).data));
  if (answer && answer.rcode === 'NOERROR' && ips.length) {
    return [{ id, title, status: 'ok', evidence: [...evidence, `${server} answers ${name} → ${ips.join(', ')}`] }];
  }
  evidence.push(error ? `${server}: ${error}` : `${server} answers ${name} with ${answer?.rcode}${ips.length ? '' : ', no address'}`);
  let fix: string;
  if (f.hostNetwork && f.dnsPolicy === 'ClusterFirst') {
    fix = 'set dnsPolicy: ClusterFirstWithHostNet in the pod spec (a hostNetwork pod with ClusterFirst gets the node\'s resolv.conf)';
  } else if (pod.conf.nameservers.some((n) => clusterDNS.includes(n))) {
    fix = `the cluster DNS Service (${clusterDNS.join(', ')}) does not answer: check its endpoints (kubectl -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns) and this node's rules for it (kproxy trace --dst ${clusterDNS[0]}:53 --proto udp)`;
  } else if (clusterDNS.length && (f.dnsPolicy === 'Default' || !pod.conf.nameservers.some((n) => clusterDNS.includes(n)))) {
    fix = `sed -i 's/^nameserver .*/nameserver ${clusterDNS[0]}/' ${f.resolvConfPath}`;
  } else {
    fix = `the nameserver ${server} does not resolve cluster names: point ${f.resolvConfPath} (kubelet --resolv-conf) at a working resolver, or kubelet --cluster-dns at the kube-dns Service`;
  }
  return [{ id, title, status: 'fail', evidence, fix }];
}
