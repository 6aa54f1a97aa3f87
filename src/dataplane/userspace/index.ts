// `kproxy run --proxy-mode userspace`: the ProxyBackend that run drives. The
// settings it reads beyond ProxySettings are optional fields that `run` fills
// from its flags (--ipvs-scheduler, --ipvs-scheduler-flags, --proxy-port-range,
// --udp-timeout) or, failing that, from the environment (KPROXY_IPVS_SCHEDULER,
// KPROXY_IPVS_SCHEDULER_FLAGS, KPROXY_PROXY_PORT_RANGE, KPROXY_UDP_TIMEOUT_MS,
// KPROXY_USERSPACE_BIND_ADDRESS).
import type { BackendOptions, FamilySyncReport, ProxyBackend } from '../backend.js';
import type { ClusterState } from '../../k8s/types.js';
import { ipFamily } from '../../util/ip.js';
import { servicePortsFromState } from './model.js';
import { UserspaceProxier, validateSchedulerOptions } from './proxier.js';
import { removePortals, systemIptables } from './portals.js';

export { UserspaceProxier, validateSchedulerOptions, type UserspaceOptions, type PortStatus, type SyncReport } from './proxier.js';
export { servicePortsFromState, type UsServicePort, type UsEndpoint } from './model.js';
export { renderPortals } from './portals.js';

/** Optional settings userspace mode understands (all have upstream-like defaults). */
export interface UserspaceSettings {
  ipvsScheduler?: string;
  ipvsSchedulerFlags?: string;
  /** "from-to" or "from+count" (upstream --proxy-port-range syntax). */
  proxyPortRange?: string;
  udpIdleTimeoutMs?: number;
  bindAddress?: string;
  terminationGraceMs?: number;
}

/** Parses upstream's --proxy-port-range: "30000-30100", "30000+100", or "" for ephemeral ports. */
export function parsePortRange(s: string | undefined): { from: number; to: number } | undefined {
  if (!s || s === '0-0') return undefined;
  const m = /^(\d+)([-+])(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--proxy-port-range: ${JSON.stringify(s)} is not "from-to" or "from+count"`);
  const from = Number(m[1]);
  const to = m[2] === '-' ? Number(m[3]) : from + Number(m[3]) - 1;
  if (from < 1 || to > 65535 || to < from) throw new Error(`--proxy-port-range: ${JSON.stringify(s)} is not a valid port range`);
  return { from, to };
}

export function createBackend(opts: BackendOptions): ProxyBackend {
  const s = opts.settings as BackendOptions['settings'] & UserspaceSettings;
  const env = process.env;
  const bind = s.bindAddress ?? env.KPROXY_USERSPACE_BIND_ADDRESS;
  const listenIP = bind && bind !== '::' ? bind : '0.0.0.0';
  // Checked now, so that `run` refuses to start with an unknown scheduler or flag (the message lists the valid ones).
  const sched = validateSchedulerOptions(s.ipvsScheduler ?? env.KPROXY_IPVS_SCHEDULER ?? 'rr', s.ipvsSchedulerFlags ?? env.KPROXY_IPVS_SCHEDULER_FLAGS);
  const portRange = parsePortRange(s.proxyPortRange ?? env.KPROXY_PROXY_PORT_RANGE);
  const iptablesCmd = opts.iptablesBackend === 'legacy' ? 'iptables-legacy' : opts.iptablesBackend === 'nft' ? 'iptables-nft' : 'iptables';
  let proxier: UserspaceProxier | undefined;
  // Built on start, not here: `run --cleanup` creates the backend too and needs no node IP.
  const build = (): UserspaceProxier => {
    const hostIP = opts.settings.nodeIPs.find((ip) => ipFamily(ip) === 4);
    if (!hostIP && listenIP === '0.0.0.0') {
      throw new Error('--proxy-mode userspace: no IPv4 node IP known (needed as the DNAT target of traffic from the node itself); set --node-ip or a Node object with an InternalIP');
    }
    return new UserspaceProxier({
      listenIP,
      hostIP,
      scheduler: sched.name,
      schedulerFlags: s.ipvsSchedulerFlags ?? env.KPROXY_IPVS_SCHEDULER_FLAGS,
      portRange,
      udpIdleTimeoutMs: s.udpIdleTimeoutMs ?? (env.KPROXY_UDP_TIMEOUT_MS ? Number(env.KPROXY_UDP_TIMEOUT_MS) : 250),
      terminationGraceMs: s.terminationGraceMs,
      iptables: systemIptables(iptablesCmd),
      registry: opts.metrics.registry,
      log: opts.log.child({ mode: 'userspace' }),
    });
  };
  return {
    mode: 'userspace',
    async start() {
      proxier ??= build();
      opts.log.info('userspace proxy ready', { scheduler: proxier.schedulerName, listen: listenIP, nodeIPs: opts.settings.nodeIPs });
    },
    async sync(state: ClusterState, full: boolean): Promise<FamilySyncReport[]> {
      proxier ??= build();
      const ports = servicePortsFromState(state, opts.settings.hostname, 'IPv4');
      const r = await proxier.sync(ports);
      for (const e of r.errors) opts.log.error(e);
      return [
        {
          family: 'IPv4',
          ok: true,
          full,
          detail: { servicePorts: ports.length, listenersOpened: r.opened.length, listenersClosed: r.closed.length, listenerErrors: r.errors.length },
        },
      ];
    },
    async cleanup() {
      await removePortals(systemIptables(iptablesCmd));
    },
    async stop() {
      await proxier?.stop({ cleanupIptables: false });
    },
  };
}
