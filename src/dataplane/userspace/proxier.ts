// kproxy's userspace mode: kproxy itself accepts and forwards service traffic,
// like kube-proxy's original userspace proxier. sync() takes the full desired
// list of service ports each time and converges: listeners for new ports are
// opened, those of removed ports closed (their connections drain), endpoint
// lists swapped in place (connections to removed endpoints drain for the
// termination grace, then are cut), and the iptables portals rewritten.
import type { Registry } from 'prom-client';
import { logger, type Logger } from '../../util/log.js';
import { parseSchedulerFlags, isSchedulerName, schedulerNames, type SchedulerFlags } from '../schedulers/index.js';
import { LoadBalancer } from './loadbalancer.js';
import { userspaceMetrics, type UserspaceMetrics } from './metrics.js';
import { portId, type UsServicePort } from './model.js';
import { applyPortals, removePortals, renderPortals, systemIptables, type IptablesRunner, type PortalTarget } from './portals.js';
import { chooseDataPath, createTcpProxy, ENDPOINT_DIAL_TIMEOUTS_MS, type ProxyCounters, type TcpDataPath, type TcpPortProxy } from './tcp.js';
import { UdpPortProxy } from './udp.js';

export interface UserspaceOptions {
  /** Address the listeners bind (upstream --bind-address); default 0.0.0.0. */
  listenIP?: string;
  /** A non-loopback address of this node: the DNAT target of traffic from the node itself. Required with iptables. */
  hostIP?: string;
  /** --ipvs-scheduler; default rr. */
  scheduler?: string;
  /** --ipvs-scheduler-flags, e.g. "sh-fallback,sh-port". */
  schedulerFlags?: string | string[];
  /** --proxy-port-range; default: ephemeral ports. */
  portRange?: { from: number; to: number };
  /** --udp-timeout; upstream default 250 ms. */
  udpIdleTimeoutMs?: number;
  /** How long connections to a removed endpoint (or service) may drain before they are cut; default 30 s. */
  terminationGraceMs?: number;
  /** Dial timeouts of the successive tries; default upstream's 250 ms, 500 ms, 1 s, 2 s. */
  dialTimeoutsMs?: number[];
  /** Program the iptables portals (false: listeners only, for tests and for `--no-portals`). */
  iptables?: boolean | IptablesRunner;
  /**
   * TCP data path: 'handles' (Node's TCP handles, the default when this Node has them) or 'net'
   * (net.Socket, portable, about three times the CPU per connection). Default: KPROXY_USERSPACE_DATAPATH, else handles.
   */
  dataPath?: TcpDataPath;
  registry?: Registry;
  log?: Logger;
}

export interface PortStatus {
  key: string;
  protocol: 'TCP' | 'UDP';
  clusterIP: string;
  port: number;
  nodePort: number;
  /** 0 when the listener could not be opened. */
  proxyPort: number;
  endpoints: number;
  error?: string;
}

export interface SyncReport {
  opened: string[];
  closed: string[];
  errors: string[];
}

/** Connections counted per listener between scrapes. */
interface Tally {
  service: string;
  protocol: 'TCP' | 'UDP';
  proxied: number;
  rejected: number;
  /** Its listener is gone and its connections cut: dropped after the next flush. */
  retired?: boolean;
}

interface PortState {
  sp: UsServicePort;
  lb: LoadBalancer;
  proxy?: TcpPortProxy | UdpPortProxy;
  proxyPort: number;
  error?: string;
  /** Endpoints that left, with the timer that will cut what is still open to them. */
  draining: Map<string, NodeJS.Timeout>;
  tally?: Tally;
}

/** Checks scheduler name and flags as `run` must at start: an error that lists the valid ones. */
export function validateSchedulerOptions(name: string, flags?: string | string[]): { name: string; flags: SchedulerFlags } {
  if (!isSchedulerName(name)) {
    throw new Error(`--ipvs-scheduler: unknown scheduler ${JSON.stringify(name)}; valid schedulers: ${schedulerNames.join(', ')}`);
  }
  try {
    return { name, flags: parseSchedulerFlags(flags) };
  } catch (e) {
    throw new Error(`--ipvs-scheduler-flags: ${(e as Error).message}`);
  }
}

export class UserspaceProxier {
  private readonly ports = new Map<string, PortState>();
  /** Listeners of removed services whose connections are still draining. */
  private readonly retired = new Set<{ proxy: TcpPortProxy | UdpPortProxy; timer: NodeJS.Timeout }>();
  private readonly usedPorts = new Set<number>();
  private readonly log: Logger;
  private readonly metrics?: UserspaceMetrics;
  private readonly source = (): Iterable<LoadBalancer> => [...this.ports.values()].map((p) => p.lb);
  /** One per listener ever opened; a handful per service, kept so no count is lost when a service goes. */
  private readonly tallies = new Set<Tally>();
  private readonly flush = (): void => this.flushCounts();
  private readonly iptables?: IptablesRunner;
  private jumpsEnsured = false;
  private readonly scheduler: string;
  private readonly flags: SchedulerFlags;
  readonly listenIP: string;
  readonly dataPath: TcpDataPath;
  private stopped = false;

  constructor(private readonly opts: UserspaceOptions = {}) {
    const v = validateSchedulerOptions(opts.scheduler ?? 'rr', opts.schedulerFlags);
    this.scheduler = v.name;
    this.flags = v.flags;
    this.listenIP = opts.listenIP ?? '0.0.0.0';
    this.dataPath = chooseDataPath(opts.dataPath);
    this.log = opts.log ?? logger({ component: 'userspace' });
    if (opts.registry) {
      this.metrics = userspaceMetrics(opts.registry);
      this.metrics.sources.add(this.source);
      this.metrics.flushers.add(this.flush);
    }
    if (opts.iptables) {
      this.iptables = opts.iptables === true ? systemIptables() : opts.iptables;
      if ((this.listenIP === '0.0.0.0' || this.listenIP === '::') && !opts.hostIP) {
        throw new Error('userspace mode: the node IP (a non-loopback address of this node) is needed for the KUBE-PORTALS-HOST DNAT rules; pass --node-ip or --bind-address');
      }
    }
  }

  get schedulerName(): string {
    return this.scheduler;
  }

  status(): PortStatus[] {
    return [...this.ports.values()].map((p) => ({
      key: p.sp.key,
      protocol: p.sp.protocol,
      clusterIP: p.sp.clusterIP,
      port: p.sp.port,
      nodePort: p.sp.nodePort,
      proxyPort: p.proxyPort,
      endpoints: p.lb.endpointCount,
      ...(p.error ? { error: p.error } : {}),
    }));
  }

  /** The load balancer of a service port (tests and `doctor` read its counters). */
  loadBalancer(key: string, protocol: 'TCP' | 'UDP' = 'TCP'): LoadBalancer | undefined {
    return this.ports.get(portId({ key, protocol }))?.lb;
  }

  async sync(servicePorts: readonly UsServicePort[]): Promise<SyncReport> {
    if (this.stopped) throw new Error('userspace proxier is stopped');
    const report: SyncReport = { opened: [], closed: [], errors: [] };
    const want = new Map(servicePorts.map((sp) => [portId(sp), sp]));
    for (const [id, st] of this.ports) {
      if (want.has(id)) continue;
      this.retire(st);
      this.ports.delete(id);
      report.closed.push(id);
    }
    for (const [id, sp] of want) {
      let st = this.ports.get(id);
      if (!st) {
        st = { sp, lb: new LoadBalancer(sp.key, this.scheduler, this.flags), proxyPort: 0, draining: new Map() };
        this.ports.set(id, st);
      }
      st.sp = sp;
      this.updateEndpoints(st);
      st.lb.cleanupStaleAffinity();
      if (!st.proxy) {
        await this.openListener(st);
        if (st.proxy) report.opened.push(`${id} → ${this.listenIP}:${st.proxyPort}`);
      }
      if (st.error) report.errors.push(st.error);
    }
    if (this.iptables) {
      const targets: PortalTarget[] = [...this.ports.values()].filter((p) => p.proxy).map((p) => ({ sp: p.sp, proxyPort: p.proxyPort }));
      const input = renderPortals(targets, { listenIP: this.listenIP, hostIP: this.opts.hostIP ?? this.listenIP });
      await applyPortals(this.iptables, input, !this.jumpsEnsured);
      this.jumpsEnsured = true;
    }
    return report;
  }

  /** The portal rules the current state needs (for `render`-style output and tests). */
  renderPortals(): string {
    const targets = [...this.ports.values()].filter((p) => p.proxy).map((p) => ({ sp: p.sp, proxyPort: p.proxyPort }));
    return renderPortals(targets, { listenIP: this.listenIP, hostIP: this.opts.hostIP ?? this.listenIP });
  }

  private grace(): number {
    return this.opts.terminationGraceMs ?? 30_000;
  }

  private updateEndpoints(st: PortState): void {
    const removed = st.lb.setEndpoints(st.sp.endpoints, st.sp.sessionAffinity, st.sp.stickyMaxAgeSeconds);
    // Endpoints that came back stop draining.
    for (const [key, timer] of st.draining) {
      if (st.lb.endpoints.get(key)?.current) {
        clearTimeout(timer);
        st.draining.delete(key);
      }
    }
    for (const ep of removed) {
      if (ep.activeConns + ep.inactiveConns === 0 || st.draining.has(ep.key)) continue;
      this.log.info('endpoint removed; its connections drain', { service: st.sp.key, endpoint: ep.key, graceMs: this.grace() });
      const timer = setTimeout(() => {
        st.draining.delete(ep.key);
        const n = st.proxy?.cut(ep.key) ?? 0;
        if (n) this.log.info('termination grace over; connections cut', { service: st.sp.key, endpoint: ep.key, connections: n });
      }, this.grace());
      timer.unref();
      st.draining.set(ep.key, timer);
    }
  }

  private counters(st: PortState): ProxyCounters {
    const m = this.metrics;
    if (!m) return { accepted: () => {}, rejected: () => {}, dialFailed: () => {} };
    const tally: Tally = { service: st.sp.key, protocol: st.sp.protocol, proxied: 0, rejected: 0 };
    this.tallies.add(tally);
    st.tally = tally;
    return {
      accepted: () => void tally.proxied++,
      rejected: () => void tally.rejected++,
      dialFailed: (endpoint) => m.dialFailuresTotal.inc({ service_port_name: st.sp.key, endpoint }),
    };
  }

  /** Adds the connections counted since the last scrape to the counter (its collect() calls this). */
  private flushCounts(): void {
    const m = this.metrics;
    if (!m) return;
    for (const t of this.tallies) {
      if (t.proxied) m.connectionsTotal.inc({ service_port_name: t.service, protocol: t.protocol, result: 'proxied' }, t.proxied);
      if (t.rejected) m.connectionsTotal.inc({ service_port_name: t.service, protocol: t.protocol, result: 'rejected' }, t.rejected);
      t.proxied = 0;
      t.rejected = 0;
      if (t.retired) this.tallies.delete(t);
    }
  }

  private candidatePorts(): number[] {
    const r = this.opts.portRange;
    if (!r) return [0];
    const out: number[] = [];
    for (let p = r.from; p <= r.to && out.length < 65536; p++) if (!this.usedPorts.has(p)) out.push(p);
    return out;
  }

  private async openListener(st: PortState): Promise<void> {
    const what = `${st.sp.key} (${st.sp.protocol})`;
    const candidates = this.candidatePorts();
    const counters = this.counters(st);
    let lastErr = '';
    for (const port of candidates) {
      const proxy =
        st.sp.protocol === 'TCP'
          ? createTcpProxy(this.dataPath, st.lb, { dialTimeoutsMs: this.opts.dialTimeoutsMs ?? ENDPOINT_DIAL_TIMEOUTS_MS, dstIP: st.sp.clusterIP, counters, log: this.log })
          : new UdpPortProxy(st.lb, { idleTimeoutMs: this.opts.udpIdleTimeoutMs ?? 250, dstIP: st.sp.clusterIP, counters, log: this.log });
      try {
        st.proxyPort = await proxy.listen(this.listenIP, port);
        st.proxy = proxy;
        st.error = undefined;
        this.usedPorts.add(st.proxyPort);
        this.log.info('opened proxy listener', { service: what, listen: `${this.listenIP}:${st.proxyPort}` });
        return;
      } catch (e) {
        try {
          proxy.close();
        } catch {
          /* it never listened */
        }
        lastErr = `${this.listenIP}:${port}: ${(e as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'address already in use' : (e as Error).message}`;
      }
    }
    const r = this.opts.portRange;
    st.proxyPort = 0;
    st.error = candidates.length
      ? `service ${what}: cannot open a proxy listener: ${lastErr}${r ? ` (no free port in --proxy-port-range ${r.from}-${r.to})` : ''}`
      : `service ${what}: cannot open a proxy listener: every port of --proxy-port-range ${r?.from}-${r?.to} is in use`;
    this.log.error('cannot open proxy listener; this service is not proxied, the others are', { service: what, err: st.error });
  }

  private retire(st: PortState): void {
    for (const t of st.draining.values()) clearTimeout(t);
    if (!st.proxy) return;
    const proxy = st.proxy;
    proxy.close();
    this.usedPorts.delete(st.proxyPort);
    this.log.info('closed proxy listener', { service: st.sp.key, protocol: st.sp.protocol, port: st.proxyPort });
    const entry = {
      proxy,
      timer: setTimeout(() => {
        proxy.cutAll();
        if (st.tally) st.tally.retired = true;
        this.retired.delete(entry);
      }, this.grace()),
    };
    entry.timer.unref();
    this.retired.add(entry);
  }

  /** Closes every listener and connection and, when it manages them, removes the portal chains. */
  async stop(opts: { cleanupIptables?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const st of this.ports.values()) {
      for (const t of st.draining.values()) clearTimeout(t);
      st.proxy?.close();
      st.proxy?.cutAll();
    }
    this.ports.clear();
    for (const r of this.retired) {
      clearTimeout(r.timer);
      r.proxy.cutAll();
    }
    this.retired.clear();
    this.metrics?.sources.delete(this.source);
    this.flushCounts();
    this.metrics?.flushers.delete(this.flush);
    if (this.iptables && (opts.cleanupIptables ?? true)) await removePortals(this.iptables);
  }
}
