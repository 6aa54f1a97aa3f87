// `kproxy resolve NAME --namespace NS`: the resolv.conf kubelet would give a
// pod with that dnsPolicy, then each query its resolver sends, in order, with
// each answer, ending with what nslookup in the pod would print.
import { COMMANDS } from './commands.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from './commander.js';
import { defaultSender, formatResolvConf, parseResolvConf, podResolvConf, searchCandidates, walk, type DnsPolicy } from '../dns/resolver-sim.js';
import { parseUpstream } from '../dns/forward.js';
import { normalizeIP } from '../util/ip.js';
import type dnsPacket from 'dns-packet';

interface ResolveOptions {
  namespace: string;
  dnsPolicy: DnsPolicy;
  hostNetwork?: boolean;
  server?: string;
  hostResolvConf: string;
  clusterDns: string;
  zone: string;
  type: string;
  timeout: number;
}

function parsePolicy(v: string): DnsPolicy {
  if (v === 'ClusterFirst' || v === 'ClusterFirstWithHostNet' || v === 'Default' || v === 'None') return v;
  throw new InvalidArgumentError('expected ClusterFirst, ClusterFirstWithHostNet, Default or None');
}

function parseType(v: string): string {
  const t = v.toUpperCase();
  if (!['A', 'AAAA', 'SRV', 'PTR', 'TXT', 'CNAME', 'SOA', 'NS', 'MX'].includes(t)) throw new InvalidArgumentError(`unsupported type ${v}`);
  return t;
}

function parseMs(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected milliseconds > 0');
  return n;
}

export function formatRecord(a: dnsPacket.Answer): string {
  const d = (a as { data?: unknown }).data;
  if (a.type === 'SRV' && d && typeof d === 'object') {
    const s = d as dnsPacket.SrvData;
    return `${a.name} SRV ${s.priority ?? 0} ${s.weight ?? 0} ${s.port} ${s.target}`;
  }
  if (a.type === 'TXT') {
    const parts = (Array.isArray(d) ? d : [d]).map((x) => JSON.stringify(Buffer.isBuffer(x) ? x.toString() : String(x)));
    return `${a.name} TXT ${parts.join(' ')}`;
  }
  if (a.type === 'SOA' && d && typeof d === 'object') {
    const s = d as dnsPacket.SoaData;
    return `${a.name} SOA ${s.mname} ${s.rname} ${s.serial}`;
  }
  return `${a.name} ${a.type} ${typeof d === 'string' ? d : JSON.stringify(d)}`;
}

export function register(program: Command): void {
  program
    .command('resolve')
    .description(COMMANDS.resolve.description)
    .argument('<name>', 'the name as the pod would look it up (e.g. kubernetes, tiller-deploy.kube-system)')
    .option('-n, --namespace <ns>', "the pod's namespace", 'default')
    .option('--dns-policy <policy>', 'ClusterFirst | ClusterFirstWithHostNet | Default | None', parsePolicy, 'ClusterFirst')
    .option('--host-network', 'the pod uses the host network')
    .option('--server <ip:port>', 'send queries meant for the cluster DNS IP here instead (e.g. a `kproxy dns` on 127.0.0.1:5353)')
    .option('--host-resolv-conf <file>', "the node's resolv.conf (kubelet --resolv-conf)", '/etc/resolv.conf')
    .option('--cluster-dns <ip>', 'kubelet --cluster-dns (the kube-dns ClusterIP)', '10.96.0.10')
    .option('--zone <domain>', 'kubelet --cluster-domain', 'cluster.local')
    .option('--type <type>', 'query type', parseType, 'A')
    .option('--timeout <ms>', 'per-query timeout', parseMs, 2000)
    .action(async (name: string, o: ResolveOptions) => {
      if (!/^[A-Za-z0-9_.-]+\.?$/.test(name)) throw new Error(`"${name}" is not a DNS name`);
      let hostText: string;
      try {
        hostText = readFileSync(o.hostResolvConf, 'utf8');
      } catch (e) {
        throw new Error(`cannot read --host-resolv-conf ${o.hostResolvConf}: ${(e as Error).message}`);
      }
      const clusterDNS = o.clusterDns.split(',').map((s) => {
        const ip = normalizeIP(s);
        if (!ip) throw new Error(`--cluster-dns: "${s}" is not an IP`);
        return ip;
      });
      const pod = podResolvConf({
        namespace: o.namespace,
        dnsPolicy: o.dnsPolicy,
        hostNetwork: !!o.hostNetwork,
        clusterDNS,
        clusterDomain: o.zone.replace(/\.$/, ''),
        host: parseResolvConf(hostText),
      });
      const out = (s: string) => process.stdout.write(s + '\n');
      out(`# ${pod.explanation}`);
      out(`# /etc/resolv.conf in the pod (namespace ${o.namespace}${o.hostNetwork ? ', hostNetwork' : ''}):`);
      out(formatResolvConf(pod.conf).trimEnd());
      out('');
      const { rule } = searchCandidates(name, pod.conf);
      out(`# ${rule}`);
      const map = new Map<string, { host: string; port: number }>();
      if (o.server) {
        const up = parseUpstream(o.server);
        for (const ip of clusterDNS) map.set(ip, up);
      }
      const res = await walk(name, o.type, pod.conf, defaultSender(map, o.timeout));
      for (const a of res.attempts) {
        const via = a.sentTo !== `${a.nameserver}:53` && a.sentTo !== a.nameserver ? ` (sent to ${a.sentTo})` : '';
        let detail = a.outcome;
        if (a.result) {
          const flags = [a.result.aa ? 'aa' : '', a.result.transport === 'tcp' ? 'tcp' : ''].filter(Boolean).join(' ');
          if (a.outcome === 'answer') detail = `NOERROR${flags ? ` [${flags}]` : ''}: ${a.result.answers.map(formatRecord).join('; ')}`;
          else detail = `${a.outcome}${flags ? ` [${flags}]` : ''}`;
        }
        const next = ['SERVFAIL', 'REFUSED', 'NOTIMP', 'FORMERR', 'TIMEOUT'].includes(a.outcome) || a.outcome.startsWith('ERROR') ? ', trying next server' : '';
        out(`query ${a.name} ${a.type} @${a.nameserver}${via} -> ${detail} (${a.ms} ms)${next}`);
      }
      out('');
      if (res.answer) {
        const ns = res.attempts[res.attempts.length - 1]!.nameserver;
        out(`Server:  ${ns}`);
        out(`Address: ${ns}#53`);
        out('');
        out(`Name:    ${res.answer.name.replace(/\.$/, '')}`);
        for (const a of res.answer.result.answers) {
          if (a.type === 'A' || a.type === 'AAAA') out(`Address: ${a.data as string}`);
          else out(formatRecord(a));
        }
        return;
      }
      out(`** server can't find ${name}: ${res.failure}`);
      process.exitCode = 1;
    });
}
