// `kproxy run`: the node agent. Watches a manifests folder or an API server,
// keeps the node's rules in step (iptables mode by default), serves
// /healthz, /livez, /metrics and the health check node ports, and leaves the
// rules in place when it stops (SIGTERM/SIGINT), as kube-proxy does.
import type { Command } from 'commander';
import type { ClusterSource } from '../k8s/source.js';
import type { IPFamily } from '../k8s/types.js';
import { ManifestSource } from '../k8s/manifest-source.js';
import { loadProxyConfig, mergeProxySettings, parseDuration, type ProxyConfig, type ProxyFlags } from '../proxy/config.js';
import { loadBackend, type BackendOptions } from '../dataplane/backend.js';
import { ProxyAgent } from '../proxy/change-loop.js';
import { metrics, MetricsServer } from '../server/metrics.js';
import { ProxyHealthServer } from '../server/health.js';
import { ServiceHealthServer } from '../server/service-health.js';
import { ipFamily } from '../util/ip.js';
import { log, setLogLevel } from '../util/log.js';

export interface RunCliOptions {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  config?: string;
  hostnameOverride?: string;
  nodeIp?: string;
  proxyMode?: string;
  clusterCidr?: string;
  detectLocalMode?: string;
  podBridgeInterface?: string;
  podInterfaceNamePrefix?: string;
  masqueradeAll?: boolean;
  iptablesMasqueradeBit?: number;
  nodeportAddresses?: string;
  iptablesLocalhostNodeports?: boolean;
  iptablesMinSyncPeriod?: string;
  iptablesSyncPeriod?: string;
  iptablesBackend: string;
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  cleanup?: boolean;
  dns?: string | boolean;
  v?: string;
  verbose?: number;
  ipvsScheduler?: string;
  ipvsSchedulerFlags?: string;
  proxyPortRange?: string;
  udpTimeout?: string;
}

function durationFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === null || ms < 0) throw new Error(`${flag}: ${JSON.stringify(v)} is not a duration (e.g. 1s, 500ms, 1m)`);
  return ms;
}

function parseBool(flag: string) {
  return (v: string | undefined): boolean => {
    if (v === undefined || v === 'true') return true;
    if (v === 'false') return false;
    throw new Error(`${flag} takes true or false, not ${JSON.stringify(v)}`);
  };
}

async function makeSource(o: RunCliOptions, nodeName: string, config: ProxyConfig | undefined): Promise<ClusterSource> {
  if (o.manifests) return new ManifestSource({ dir: o.manifests });
  const kubeconfig = o.kubeconfig ?? config?.clientConnection?.kubeconfig;
  // The API source pulls in the Kubernetes client: load it only when used.
  const { ApiSource } = await import('../k8s/api-source.js');
  return new ApiSource({ ...(kubeconfig ? { kubeconfig } : {}), ...(o.master ? { master: o.master } : {}), nodeName, pods: !!o.dns });
}

export async function runAgent(o: RunCliOptions): Promise<void> {
  const level = o.v !== undefined ? Number(o.v) : (o.verbose ?? 0);
  if (!Number.isFinite(level)) throw new Error(`--v: ${JSON.stringify(o.v)} is not a number`);
  if (level >= 4) setLogLevel('debug');
  else if (level >= 1) setLogLevel('info');
  if (!['auto', 'nft', 'legacy'].includes(o.iptablesBackend)) {
    throw new Error(`--iptables-backend takes auto, nft or legacy, not ${JSON.stringify(o.iptablesBackend)}`);
  }
  if (o.manifests && (o.kubeconfig || o.master)) throw new Error('--manifests and --kubeconfig/--master are exclusive: pick one source');

  let config: ProxyConfig | undefined;
  if (o.config) {
    const loaded = await loadProxyConfig(o.config);
    config = loaded.config;
    for (const w of loaded.warnings) log.warn(w);
  }
  const flags: ProxyFlags = {};
  if (o.hostnameOverride !== undefined) flags.hostnameOverride = o.hostnameOverride;
  if (o.clusterCidr !== undefined) flags.clusterCIDR = o.clusterCidr;
  if (o.masqueradeAll !== undefined) flags.masqueradeAll = o.masqueradeAll;
  if (o.iptablesMasqueradeBit !== undefined) flags.masqueradeBit = o.iptablesMasqueradeBit;
  if (o.nodeportAddresses !== undefined) flags.nodePortAddresses = o.nodeportAddresses;
  if (o.iptablesLocalhostNodeports !== undefined) flags.localhostNodePorts = o.iptablesLocalhostNodeports;
  if (o.detectLocalMode !== undefined) flags.detectLocalMode = o.detectLocalMode;
  if (o.podBridgeInterface !== undefined) flags.podBridgeInterface = o.podBridgeInterface;
  if (o.podInterfaceNamePrefix !== undefined) flags.podInterfaceNamePrefix = o.podInterfaceNamePrefix;
  if (o.proxyMode !== undefined) flags.proxyMode = o.proxyMode;
  if (o.nodeIp !== undefined) flags.nodeIP = o.nodeIp;
  // Node IPs may come from the Node object: settle them after the first sync of the source.
  const pre = mergeProxySettings(config, flags, []);
  const minSync = durationFlag('--iptables-min-sync-period', o.iptablesMinSyncPeriod) ?? pre.minSyncPeriodMs;
  const syncPeriod = durationFlag('--iptables-sync-period', o.iptablesSyncPeriod) ?? pre.syncPeriodMs;
  if (syncPeriod <= 0) throw new Error('--iptables-sync-period must be greater than 0');

  const familiesOf = (ips: string[]): IPFamily[] => {
    const f = new Set<IPFamily>();
    for (const ip of ips) f.add(ipFamily(ip) === 6 ? 'IPv6' : 'IPv4');
    return f.size ? [...f] : ['IPv4'];
  };

  if (o.cleanup) {
    // Upstream --cleanup: remove what kube-proxy created, both families, and exit.
    const backend = await loadBackend(pre.mode, {
      settings: pre,
      iptablesBackend: o.iptablesBackend as BackendOptions['iptablesBackend'],
      families: ['IPv4', 'IPv6'],
      metrics,
      log,
    });
    await backend.cleanup();
    return;
  }

  const source = await makeSource(o, pre.hostname, config);
  // Start the source first to learn this node's IPs from its Node object.
  let settings = pre;
  if (flags.nodeIP === undefined) {
    await source.start();
    settings = mergeProxySettings(config, flags, source.current().nodes);
  }
  settings.minSyncPeriodMs = minSync;
  settings.syncPeriodMs = syncPeriod;
  // --ipvs-scheduler (or the config's ipvs.scheduler) for ipvs and userspace modes, which read settings.ipvsScheduler.
  const ipvsScheduler = o.ipvsScheduler ?? (typeof config?.ipvs?.scheduler === 'string' ? config.ipvs.scheduler : undefined);
  if (ipvsScheduler !== undefined) (settings as typeof settings & { ipvsScheduler?: string }).ipvsScheduler = ipvsScheduler;
  // userspace mode's own flags (src/dataplane/userspace/index.ts reads them from settings).
  Object.assign(settings, {
    ...(o.ipvsSchedulerFlags !== undefined ? { ipvsSchedulerFlags: o.ipvsSchedulerFlags } : {}),
    ...(o.proxyPortRange !== undefined ? { proxyPortRange: o.proxyPortRange } : {}),
    ...(o.udpTimeout !== undefined ? { udpIdleTimeoutMs: durationFlag('--udp-timeout', o.udpTimeout) } : {}),
  });
  const families = familiesOf(settings.nodeIPs);
  if (!settings.nodeIPs.length) {
    log.warn('no node IPs (no Node object named like this host, no --node-ip): NodePorts match every local address', {
      hostname: settings.hostname,
    });
  }
  const backend = await loadBackend(settings.mode, {
    settings,
    iptablesBackend: o.iptablesBackend as BackendOptions['iptablesBackend'],
    families,
    metrics,
    log: log.child({ component: settings.mode }),
  });

  const health = new ProxyHealthServer({ healthTimeoutMs: 2 * syncPeriod, metrics });
  const healthzAddr = o.healthzBindAddress ?? config?.healthzBindAddress ?? '0.0.0.0:10256';
  if (healthzAddr) await health.listen(healthzAddr);
  const metricsServer = new MetricsServer({
    bindAddress: o.metricsBindAddress ?? config?.metricsBindAddress ?? '127.0.0.1:10249',
    proxyMode: settings.mode,
    registry: metrics.registry,
    configz: () => ({ ...settings }),
  });
  await metricsServer.listen();
  const serviceHealth = new ServiceHealthServer({ isHealthy: () => health.isHealthy(), hostname: settings.hostname });
  source.on('change', (s) => health.setNode(s.nodes.find((n) => n.meta.name === settings.hostname)));

  const agent = new ProxyAgent({
    source,
    backend,
    nodeName: settings.hostname,
    families,
    minSyncPeriodMs: minSync,
    syncPeriodMs: syncPeriod,
    metrics,
    health,
    serviceHealth,
    log,
  });

  let dns: { close(): Promise<void> } | undefined;
  if (o.dns) {
    const { startDnsServer } = await import('../dns/server.js');
    dns = await startDnsServer(source, typeof o.dns === 'string' ? { listen: [o.dns] } : {});
  }
  await agent.start();
  log.info('kproxy running', { mode: settings.mode, node: settings.hostname, nodeIPs: settings.nodeIPs, families });

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info('stopping; the rules stay in place', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop();
  await dns?.close();
  await serviceHealth.close();
  await metricsServer.close();
  await health.close();
}

export function register(program: Command): void {
  program
    .command('run')
    .description('the node agent: keep this node\'s rules in step with Services and EndpointSlices (kube-proxy flags)')
    .option('--manifests <dir>', 'watch a folder of YAML/JSON manifests instead of an API server')
    .option('--kubeconfig <file>', 'kubeconfig of the API server (default: in-cluster)')
    .option('--master <url>', 'API server URL (overrides the kubeconfig)')
    .option('--config <file>', 'a KubeProxyConfiguration file; flags override it')
    .option('--hostname-override <name>', "this node's name (default: the host name)")
    .option('--node-ip <ip[,ip]>', "this node's IP(s) (default: from its Node object)")
    .option('--proxy-mode <mode>', 'iptables (default), ipvs, userspace')
    .option('--ipvs-scheduler <name>', 'scheduler for ipvs and userspace modes: rr (default), wrr, lc, wlc, sed, nq, dh, sh, mh')
    .option('--ipvs-scheduler-flags <list>', 'scheduler flags: sh-fallback, sh-port, mh-fallback, mh-port')
    .option('--proxy-port-range <range>', 'userspace mode: ports for its listeners, FROM-TO or FROM+N (default: ephemeral)')
    .option('--udp-timeout <d>', 'userspace mode: idle timeout of a proxied UDP session (default 250ms)')
    .option('--iptables-backend <b>', 'auto (what `iptables -V` says), nft or legacy', 'auto')
    .option('--cluster-cidr <cidr[,cidr]>', 'pod CIDR(s), to tell pod traffic from external traffic')
    .option('--detect-local-mode <mode>', 'ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix')
    .option('--pod-bridge-interface <name>', 'bridge of the pods (BridgeInterface mode)')
    .option('--pod-interface-name-prefix <prefix>', 'prefix of pod interfaces (InterfaceNamePrefix mode)')
    .option('--masquerade-all [bool]', 'SNAT all traffic to service IPs', parseBool('--masquerade-all'))
    .option('--iptables-masquerade-bit <n>', 'fwmark bit for packets to SNAT (default 14)', (v: string) => Number(v))
    .option('--nodeport-addresses <cidr[,cidr]>', 'addresses NodePorts answer on: CIDRs or "primary" (default: all)')
    .option('--iptables-localhost-nodeports [bool]', 'NodePorts reachable on 127.0.0.1 (default true)', parseBool('--iptables-localhost-nodeports'))
    .option('--iptables-min-sync-period <d>', 'minimum time between syncs (default 1s)')
    .option('--iptables-sync-period <d>', 'maximum time between syncs; retry period after a failure (default 30s)')
    .option('--healthz-bind-address <host:port>', '/healthz and /livez (default 0.0.0.0:10256; "" disables)')
    .option('--metrics-bind-address <host:port>', '/metrics (default 127.0.0.1:10249; "" disables)')
    .option('--cleanup', 'remove every chain and jump rule kube-proxy/kproxy created, then exit')
    .option('--dns [host:port]', 'also serve cluster DNS from the same source (default 0.0.0.0:53)')
    .option('--v <n>', 'log verbosity: 0 warnings only, 1+ one line per sync, 4+ debug')
    .option('-v, --verbose', 'raise verbosity (repeatable)', (_: string, prev: number) => prev + 1, 0)
    .action(async (o: RunCliOptions) => {
      await runAgent(o);
    });
}
