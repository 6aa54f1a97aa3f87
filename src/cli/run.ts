// `kproxy run`: the node agent. Watches a manifests folder or an API server,
// keeps the node's rules in step (iptables mode by default), serves
// /healthz, /livez, /metrics and the health check node ports, and leaves the
// rules in place when it stops (SIGTERM/SIGINT), as kube-proxy does.
import { COMMANDS } from './commands.js';
import type { Command } from 'commander';
import type { ClusterSource } from '../k8s/source.js';
import type { IPFamily } from '../k8s/types.js';
import { ManifestSource } from '../k8s/manifest-source.js';
import { loadProxyConfig, mergeProxySettings, parseDuration, type ProxyConfig } from '../proxy/config.js';
import { addProxyFlags, proxyFlagsFrom, type ProxyCliOptions } from './proxy-flags.js';
import { loadBackend, type BackendOptions } from '../dataplane/backend.js';
import { ProxyAgent } from '../proxy/change-loop.js';
import { metrics, MetricsServer } from '../server/metrics.js';
import { ProxyHealthServer } from '../server/health.js';
import { ServiceHealthServer } from '../server/service-health.js';
import { ipFamily } from '../util/ip.js';
import { log, setLogLevel } from '../util/log.js';
import { AGENT_HEAP_GROWING_PERCENT, tightenHeapGrowth } from '../util/heap.js';

export interface RunCliOptions extends ProxyCliOptions {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  iptablesMinSyncPeriod?: string;
  iptablesSyncPeriod?: string;
  fullSyncPeriod?: string;
  iptablesBackend: string;
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  cleanup?: boolean;
  dns?: string | boolean;
  v?: string;
  verbose?: number;
  ipvsScheduler?: string;
  ipvsSchedulerFlags?: string;
  ipvsExcludeCidrs?: string;
  proxyPortRange?: string;
  udpTimeout?: string;
}

function durationFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === null || ms < 0) throw new Error(`${flag}: ${JSON.stringify(v)} is not a duration (e.g. 1s, 500ms, 1m)`);
  return ms;
}

async function makeSource(o: RunCliOptions, nodeName: string, config: ProxyConfig | undefined): Promise<ClusterSource> {
  if (o.manifests) return new ManifestSource({ dir: o.manifests });
  const kubeconfig = o.kubeconfig ?? config?.clientConnection?.kubeconfig;
  // The API source pulls in the Kubernetes client: load it only when used.
  const { ApiSource } = await import('../k8s/api-source.js');
  return new ApiSource({ ...(kubeconfig ? { kubeconfig } : {}), ...(o.master ? { master: o.master } : {}), nodeName });
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
  const flags = proxyFlagsFrom(o);
  // Node IPs may come from the Node object: settle them after the first sync of the source.
  const pre = mergeProxySettings(config, flags, []);
  const minSync = durationFlag('--iptables-min-sync-period', o.iptablesMinSyncPeriod) ?? pre.minSyncPeriodMs;
  const syncPeriod = durationFlag('--iptables-sync-period', o.iptablesSyncPeriod) ?? pre.syncPeriodMs;
  if (syncPeriod <= 0) throw new Error('--iptables-sync-period must be greater than 0');
  const fullSyncPeriod = durationFlag('--full-sync-period', o.fullSyncPeriod);
  if (fullSyncPeriod !== undefined && fullSyncPeriod <= 0) throw new Error('--full-sync-period must be greater than 0');

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
    if (pre.mode !== 'nftables') {
      // As upstream's CleanupLeftovers, --cleanup also removes another mode's leftovers: kproxy's nftables tables.
      const { deleteTable, nftUsable } = await import('../dataplane/nftables/apply.js');
      if ((await nftUsable()) === undefined) for (const f of ['ip', 'ip6'] as const) await deleteTable(f);
    }
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
  // --ipvs-exclude-cidrs (or the config's ipvs.excludeCIDRs): virtual servers there are someone else's, never deleted.
  const excludeCIDRs =
    o.ipvsExcludeCidrs !== undefined
      ? o.ipvsExcludeCidrs.split(',').map((c) => c.trim()).filter(Boolean)
      : Array.isArray(config?.ipvs?.excludeCIDRs)
        ? (config.ipvs.excludeCIDRs as unknown[]).filter((c): c is string => typeof c === 'string')
        : undefined;
  if (excludeCIDRs !== undefined) (settings as typeof settings & { ipvsExcludeCIDRs?: string[] }).ipvsExcludeCIDRs = excludeCIDRs;
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

  let heapTuned = false;
  const agent = new ProxyAgent({
    source,
    backend,
    nodeName: settings.hostname,
    families,
    minSyncPeriodMs: minSync,
    syncPeriodMs: syncPeriod,
    ...(fullSyncPeriod !== undefined ? { fullSyncPeriodMs: fullSyncPeriod } : {}),
    metrics,
    health,
    serviceHealth,
    log,
    onSynced: () => {
      if (heapTuned) return;
      heapTuned = true;
      const t0 = Date.now();
      if (tightenHeapGrowth()) log.debug('heap growing factor set for the steady state', { percent: AGENT_HEAP_GROWING_PERCENT, gcMs: Date.now() - t0 });
    },
  });

  let dns: { close(): Promise<void> } | undefined;
  let dnsSource: ClusterSource | undefined;
  if (o.dns) {
    const { startDnsServer } = await import('../dns/server.js');
    if (!o.manifests) {
      // kube-proxy's label filter hides headless Services and their slices, which DNS must serve
      // (as CoreDNS watches everything): DNS gets its own unfiltered watch, with Pods.
      const { ApiSource } = await import('../k8s/api-source.js');
      const kubeconfig = o.kubeconfig ?? config?.clientConnection?.kubeconfig;
      dnsSource = new ApiSource({ ...(kubeconfig ? { kubeconfig } : {}), ...(o.master ? { master: o.master } : {}), nodeName: settings.hostname, pods: true, labelSelector: '', events: false });
      await dnsSource.start();
    }
    dns = await startDnsServer(dnsSource ?? source, typeof o.dns === 'string' ? { listen: [o.dns] } : {});
  }
  await agent.start();
  log.info('kproxy running', { mode: settings.mode, node: settings.hostname, nodeIPs: settings.nodeIPs, families });

  // Signal handlers do not hold the event loop open, and the sources' and
  // runner's timers are unref'd: with no HTTP server listening, the process
  // would otherwise exit right after start. The agent runs until signalled.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info('stopping; the rules stay in place', { signal: sig });
      clearInterval(keepAlive);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop();
  await dns?.close();
  await dnsSource?.stop();
  await serviceHealth.close();
  await metricsServer.close();
  await health.close();
}

export function register(program: Command): void {
  const cmd = program
    .command('run')
    .description(COMMANDS.run.description)
    .option('--manifests <dir>', 'watch a folder of YAML/JSON manifests instead of an API server')
    .option('--kubeconfig <file>', 'kubeconfig of the API server (default: in-cluster)')
    .option('--master <url>', 'API server URL (overrides the kubeconfig)')
    .option('--ipvs-scheduler <name>', 'scheduler for ipvs and userspace modes: rr (default), wrr, lc, wlc, sed, nq, dh, sh, mh')
    .option('--ipvs-scheduler-flags <list>', 'scheduler flags: sh-fallback, sh-port, mh-fallback, mh-port')
    .option('--ipvs-exclude-cidrs <list>', 'ipvs mode: comma-separated CIDRs whose IPVS virtual servers are left alone by syncs')
    .option('--proxy-port-range <range>', 'userspace mode: ports for its listeners, FROM-TO or FROM+N (default: ephemeral)')
    .option('--udp-timeout <d>', 'userspace mode: idle timeout of a proxied UDP session (default 250ms)')
    .option('--iptables-backend <b>', 'auto (what `iptables -V` says), nft or legacy', 'auto')
    .option('--iptables-min-sync-period <d>', 'minimum time between syncs (default 1s)')
    .option('--iptables-sync-period <d>', 'maximum time between syncs; retry period after a failure (default 30s)')
    .option('--full-sync-period <d>', 'kproxy only: how often a full sync re-checks everything (default 1h, upstream\'s fixed period)')
    .option('--healthz-bind-address <host:port>', '/healthz and /livez (default 0.0.0.0:10256; "" disables)')
    .option('--metrics-bind-address <host:port>', '/metrics (default 127.0.0.1:10249; "" disables)')
    .option('--cleanup', 'remove every chain and jump rule kube-proxy/kproxy created, then exit')
    .option('--dns [host:port]', 'also serve cluster DNS from the same source (default 0.0.0.0:53)')
    .option('--v <n>', 'log verbosity: 0 warnings only, 1+ one line per sync, 4+ debug')
    .option('-v, --verbose', 'raise verbosity (repeatable)', (_: string, prev: number) => prev + 1, 0);
  addProxyFlags(cmd).action(async (o: RunCliOptions) => {
      await runAgent(o);
    });
}
