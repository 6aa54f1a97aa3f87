// `kproxy dns`: the cluster DNS server (CoreDNS's kubernetes plugin schema)
// fed by a manifests folder or the API server.
import { COMMANDS } from './commands.js';
import type { Command } from 'commander';
import { InvalidArgumentError } from './commander.js';
import { ManifestSource } from '../k8s/manifest-source.js';
import type { ClusterSource } from '../k8s/source.js';
import { formatWarning } from '../k8s/types.js';
import { startDnsServer, type DnsServerOptions } from '../dns/server.js';
import { parseUpstream } from '../dns/forward.js';
import type { PodMode } from '../dns/records.js';
import { hostname } from 'node:os';
import { joinHostPort } from '../util/ip.js';

export interface DnsCliOptions {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  zone: string;
  listen: string[];
  ttl: number;
  upstream?: string;
  forward: boolean;
  pods: PodMode;
}

function parseTtl(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 3600) throw new InvalidArgumentError('expected whole seconds between 0 and 3600');
  return n;
}

function parsePods(v: string): PodMode {
  if (v !== 'disabled' && v !== 'insecure' && v !== 'verified') throw new InvalidArgumentError('expected disabled, insecure or verified');
  return v;
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...v.split(',').map((s) => s.trim()).filter(Boolean)];
}

function parseZone(v: string): string {
  const z = v.replace(/\.$/, '').toLowerCase();
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(z)) {
    throw new InvalidArgumentError(`"${v}" is not a DNS domain`);
  }
  return z;
}

/** Server options from the flags (shared with `kproxy run --dns`). */
export function dnsServerOptions(o: Pick<DnsCliOptions, 'zone' | 'listen' | 'ttl' | 'upstream' | 'forward' | 'pods'>): DnsServerOptions {
  const opts: DnsServerOptions = { zone: o.zone, listen: o.listen, ttl: o.ttl, pods: o.pods };
  if (!o.forward) opts.noForward = true;
  else if (o.upstream) opts.upstreams = o.upstream.split(',').filter(Boolean).map(parseUpstream);
  return opts;
}

export function register(program: Command): void {
  program
    .command('dns')
    .description(COMMANDS.dns.description)
    .option('--manifests <dir>', 'watch a folder of manifests (YAML/JSON)')
    .option('--kubeconfig <file>', 'read the cluster from the API server with this kubeconfig (neither flag: in-cluster config)')
    .option('--master <url>', 'API server URL, overriding the kubeconfig')
    .option('--zone <domain>', 'cluster domain', parseZone, 'cluster.local')
    .option('--listen <addr>', 'IP:PORT or [IPv6]:PORT for UDP and TCP; repeat or comma-separate', collect)
    .option('--ttl <seconds>', 'TTL of cluster records', parseTtl, 5)
    .option('--upstream <list>', 'resolvers for names outside the zone: IP[:PORT],… (default: nameservers of /etc/resolv.conf)')
    .option('--no-forward', 'answer REFUSED for names outside the zone')
    .option('--pods <mode>', 'pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure or verified', parsePods, 'disabled')
    .action(async (o: DnsCliOptions) => {
      if (o.manifests && (o.kubeconfig || o.master)) throw new Error('--manifests cannot be combined with --kubeconfig/--master');
      const opts = dnsServerOptions({ ...o, listen: o.listen ?? ['0.0.0.0:53'] });
      let source: ClusterSource;
      if (o.manifests) source = new ManifestSource({ dir: o.manifests });
      else {
        // The API client is loaded only when an API server is used (it takes most of a second).
        const { ApiSource } = await import('../k8s/api-source.js');
        source = new ApiSource({
          nodeName: process.env.NODE_NAME ?? hostname(),
          pods: o.pods === 'verified',
          // CoreDNS watches every Service and EndpointSlice: headless ones included, unlike kube-proxy.
          labelSelector: '',
          ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
          ...(o.master ? { master: o.master } : {}),
        });
      }
      source.on('warning', (w) => process.stderr.write(`warning: ${formatWarning(w)}\n`));
      // Listen first: until the first sync the zone answers SERVFAIL (never a wrong NXDOMAIN).
      const server = await startDnsServer(source, opts);
      const where = server.addresses().udp.map((a) => joinHostPort(a.address, a.port)).join(', ');
      process.stderr.write(
        `kproxy dns: serving ${server.zoneName} on ${where} (udp+tcp), ttl ${server.ttl}s, pods ${server.pods}, ` +
          (server.upstreams.length ? `forwarding to ${server.upstreams.map((u) => joinHostPort(u.host, u.port)).join(', ')}` : 'no forwarding') +
          '\n',
      );
      await source.start();
      process.stderr.write(`kproxy dns: synced (${source.current().services.length} services)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
      await source.stop();
    });
}
