// `kproxy doctor`: the seeds' troubleshooting checklist, run by the machine.
import { COMMANDS } from './commands.js';
import type { Command } from 'commander';
import { loadManifests } from '../k8s/load.js';
import { formatWarning, type ClusterState } from '../k8s/types.js';
import { loadProxyConfig, mergeProxySettings, parseDuration, type ProxyConfig } from '../proxy/config.js';
import type { DnsPolicy } from '../dns/resolver-sim.js';
import { runDoctor } from '../doctor/doctor.js';
import { exitCode, formatReport } from '../doctor/report.js';
import { addProxyFlags, proxyFlagsFrom, type ProxyCliOptions } from './proxy-flags.js';

interface DoctorCliOptions extends ProxyCliOptions {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  json?: boolean;
  verbose?: boolean;
  namespace: string;
  dnsPolicy: string;
  hostNetwork?: boolean;
  zone: string;
  clusterDns?: string;
  resolvConf: string;
  dnsPort: string;
  healthzUrl: string;
  metricsUrl: string;
  agent: boolean;
  iptablesSyncPeriod?: string;
  iptablesBackend?: string;
}

const POLICIES = ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'];

async function loadState(o: DoctorCliOptions, nodeName: string): Promise<ClusterState | undefined> {
  if (o.manifests) {
    const { state, warnings } = await loadManifests([o.manifests]);
    for (const w of warnings) process.stderr.write(`kproxy: warning: ${formatWarning(w)}\n`);
    return state;
  }
  if (o.kubeconfig || o.master) {
    const { ApiSource } = await import('../k8s/api-source.js');
    const src = new ApiSource({ ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), ...(o.master ? { master: o.master } : {}), nodeName, events: false });
    const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error('the API server did not answer within 15 s')), 15_000).unref());
    try {
      await Promise.race([src.start(), timeout]);
      return src.current();
    } finally {
      await src.stop();
    }
  }
  return undefined;
}

export function register(program: Command): void {
  const cmd = program
    .command('doctor')
    .description(COMMANDS.doctor.description)
    .option('--manifests <dir>', 'the cluster state from a folder of manifests')
    .option('--kubeconfig <file>', 'the cluster state from an API server')
    .option('--master <url>', 'API server URL (overrides the kubeconfig)')
    .option('--json', 'print the report as JSON (docs/doctor.md describes it)')
    .option('--verbose', 'show the evidence of passing checks too')
    .option('--namespace <ns>', "the pod's namespace, for the DNS check", 'default')
    .option('--dns-policy <policy>', `the pod's dnsPolicy: ${POLICIES.join(', ')}`, 'ClusterFirst')
    .option('--host-network', 'the pod uses the host network')
    .option('--zone <zone>', 'the cluster domain', 'cluster.local')
    .option('--cluster-dns <ip[,ip]>', "kubelet's --cluster-dns (default: the kube-dns Service's ClusterIP)")
    .option('--resolv-conf <file>', "the node's resolv.conf (kubelet's --resolv-conf)", '/etc/resolv.conf')
    .option('--dns-port <n>', 'the port nameservers listen on', '53')
    .option('--healthz-url <url>', "the agent's health endpoint", 'http://127.0.0.1:10256/healthz')
    .option('--metrics-url <url>', "the agent's metrics endpoint", 'http://127.0.0.1:10249/metrics')
    .option('--no-agent', 'skip the agent checks (no agent on this node)')
    .option('--iptables-sync-period <d>', "the agent's sync period (default 30s)")
    .option('--iptables-backend <b>', 'the backend the agent uses: nft or legacy (default: what `iptables -V` says)');
  addProxyFlags(cmd).action(async (o: DoctorCliOptions) => {
    if (!POLICIES.includes(o.dnsPolicy)) throw new Error(`--dns-policy: ${JSON.stringify(o.dnsPolicy)} is not one of ${POLICIES.join(', ')}`);
    if (o.iptablesBackend && !['nft', 'legacy'].includes(o.iptablesBackend)) throw new Error(`--iptables-backend takes nft or legacy, not ${JSON.stringify(o.iptablesBackend)}`);
    if (o.manifests && (o.kubeconfig || o.master)) throw new Error('--manifests and --kubeconfig/--master are exclusive: pick one source');
    let config: ProxyConfig | undefined;
    if (o.config) config = (await loadProxyConfig(o.config)).config;
    const flags = proxyFlagsFrom(o);
    const pre = mergeProxySettings(config, flags, []);
    const state = await loadState(o, pre.hostname);
    const settings = mergeProxySettings(config, flags, state?.nodes ?? []);
    if (o.iptablesSyncPeriod) {
      const ms = parseDuration(o.iptablesSyncPeriod);
      if (ms === null) throw new Error(`--iptables-sync-period: ${JSON.stringify(o.iptablesSyncPeriod)} is not a duration`);
      settings.syncPeriodMs = ms;
    }
    const report = await runDoctor({
      settings,
      ...(state ? { state } : {}),
      dns: {
        namespace: o.namespace,
        dnsPolicy: o.dnsPolicy as DnsPolicy,
        hostNetwork: !!o.hostNetwork,
        zone: o.zone,
        ...(o.clusterDns ? { clusterDNS: o.clusterDns.split(',').map((s) => s.trim()) } : {}),
        resolvConfPath: o.resolvConf,
        port: Number(o.dnsPort),
      },
      agent: o.agent ? { healthz: o.healthzUrl, metrics: o.metricsUrl } : null,
      ...(o.iptablesBackend ? { backend: o.iptablesBackend as 'nft' | 'legacy' } : {}),
    });
    process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report, o.verbose));
    process.exitCode = exitCode(report);
  });
}
