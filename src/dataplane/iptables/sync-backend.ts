// The iptables proxy mode for `kproxy run`: render the full ruleset per
// family, program the difference with IptablesSyncer, watch the canary,
// clean stale UDP conntrack entries, and feed the iptables metrics.
import { writeFile } from 'node:fs/promises';
import { renderOptionsFromSettings } from './render-options.js';
import { cidrContains } from '../../util/ip.js';
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import type { BackendOptions, FamilySyncReport, ProxyBackend } from '../backend.js';
import type { PendingChanges } from '../../proxy/change-tracker.js';
import type { RenderOptions } from './render.js';
import { detectConntrackTCPBeLiberal, detectRandomFully } from './detect.js';
import { iptablesTools, type IptablesTools } from './apply.js';
import { IptablesSyncer, type SyncResult } from './sync.js';
import { IncrementalRenderer } from './sync-render.js';
import { Canary } from './canary.js';
import { cleanupIptables } from './cleanup.js';
import { cleanStaleUdp } from '../conntrack.js';
import { exec } from '../../util/exec.js';
import { sinceInSeconds } from '../../server/metrics.js';

/** Addresses on this host's interfaces (for --nodeport-addresses matching). */
export async function hostAddresses(): Promise<string[]> {
  try {
    const r = await exec('ip', ['-j', 'addr', 'show']);
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter(Boolean);
  } catch {
    return [];
  }
}

interface Family {
  tools: IptablesTools;
  syncer: IptablesSyncer;
  canary: Canary;
  renderer: IncrementalRenderer;
}

export class IptablesBackend implements ProxyBackend {
  readonly mode = 'iptables';
  private fams = new Map<IPFamily, Family>();
  private renderBase: Partial<RenderOptions> = {};

  constructor(private readonly opts: BackendOptions) {}

  private async family(f: IPFamily): Promise<Family> {
    let fam = this.fams.get(f);
    if (!fam) {
      const tools = await iptablesTools(f, this.opts.iptablesBackend);
      fam = { tools, syncer: new IptablesSyncer({ tools, log: this.opts.log.child({ family: f }) }), canary: new Canary(tools), renderer: new IncrementalRenderer(f) };
      this.fams.set(f, fam);
    }
    return fam;
  }

  /**
   * Upstream's NewProxier: NodePorts on 127.0.0.1 only work after DNAT to a pod
   * when the kernel routes 127/8 packets off the host, so kube-proxy turns on
   * route_localnet itself whenever its rules accept them (IPv4, localhost
   * NodePorts on, nodePortAddresses covering loopback), and fails without it.
   */
  private async enableLocalhostNodePorts(): Promise<void> {
    const s = this.opts.settings;
    const npa = s.nodePortAddresses;
    const coversLoopback = npa.length === 0 || npa.some((c) => c !== 'primary' && cidrContains(c, '127.0.0.1'));
    if (!this.opts.families.includes('IPv4') || !s.localhostNodePorts || !coversLoopback) return;
    this.opts.log.info('setting route_localnet=1 to allow NodePorts on localhost; to change this disable --iptables-localhost-nodeports or set --nodeport-addresses to filter loopback addresses');
    try {
      await writeFile('/proc/sys/net/ipv4/conf/all/route_localnet', '1');
    } catch (e) {
      throw new Error(`can't set sysctl net/ipv4/conf/all/route_localnet: ${(e as Error).message}`);
    }
  }

  async start(requestFullSync: () => void): Promise<void> {
    this.renderBase = {
      randomFully: await detectRandomFully(),
      conntrackTCPBeLiberal: this.opts.settings.conntrackTCPBeLiberal || (await detectConntrackTCPBeLiberal()),
      localAddresses: await hostAddresses(),
    };
    await this.enableLocalhostNodePorts();
    const period = this.opts.settings.syncPeriodMs;
    for (const f of this.opts.families) {
      const fam = await this.family(f);
      await fam.canary.ensure();
      fam.canary.start(period, () => {
        fam.syncer.invalidate();
        requestFullSync();
      });
    }
  }

  renderOptions(): RenderOptions {
    // renderBase (random-fully, be-liberal and local addresses as found on this host) wins over the settings' defaults.
    return renderOptionsFromSettings(this.opts.settings, { ...this.renderBase, families: this.opts.families });
  }

  async sync(state: ClusterState, full: boolean, changes: PendingChanges): Promise<FamilySyncReport[]> {
    const m = this.opts.metrics;
    const ropts = this.renderOptions();
    const reports: FamilySyncReport[] = [];
    for (const f of this.opts.families) {
      const fam = await this.family(f);
      const t0 = Date.now();
      const isFull = full || fam.syncer.needsFull;
      const rs = isFull ? fam.renderer.full(state, ropts) : fam.renderer.partial(state, ropts, changes.since.keys());
      if (isFull) await fam.canary.ensure().catch(() => {});
      let res: SyncResult;
      try {
        res = await fam.syncer.sync(rs, { full: isFull, changed: changes.changed });
      } catch (e) {
        m.iptablesRestoreFailuresTotal.inc({ ip_family: f });
        if (!isFull) m.iptablesPartialRestoreFailuresTotal.inc({ ip_family: f });
        reports.push({ family: f, ok: false, full: isFull, detail: {}, error: e as Error });
        continue;
      }
      const secs = sinceInSeconds(t0);
      m.syncProxyRulesLatency.observe({ ip_family: f }, secs);
      (isFull ? m.syncFullProxyRulesLatency : m.syncPartialProxyRulesLatency).observe({ ip_family: f }, secs);
      for (const t of ['filter', 'nat'] as const) {
        m.iptablesRulesTotal.set({ table: t, ip_family: f }, res.rulesTotal[t]);
        m.iptablesRulesLastSync.set({ table: t, ip_family: f }, res.lines);
      }
      let conntrack = 0;
      if (changes.udp || isFull) {
        const c0 = Date.now();
        try {
          conntrack = await cleanStaleUdp(state, f, this.opts.settings.hostname);
          m.reconcileConntrackFlowsLatency.observe({ ip_family: f }, sinceInSeconds(c0));
          if (conntrack) m.reconcileConntrackFlowsDeletedEntriesTotal.inc({ ip_family: f }, conntrack);
        } catch (e) {
          this.opts.log.warn('conntrack cleanup failed', { family: f, error: e });
        }
      }
      reports.push({
        family: f,
        ok: true,
        full: isFull,
        detail: {
          services: rs.services.length,
          restores: res.restores,
          lines: res.lines,
          ...res.stats,
          jumpsInserted: res.jumpsInserted,
          conntrackDeleted: conntrack,
          ms: Math.round(res.ms),
        },
      });
    }
    return reports;
  }

  async cleanup(): Promise<void> {
    for (const f of this.opts.families) {
      const fam = await this.family(f);
      await cleanupIptables(fam.tools);
    }
  }

  async stop(): Promise<void> {
    for (const fam of this.fams.values()) fam.canary.stop();
  }
}

export function createBackend(opts: BackendOptions): ProxyBackend {
  return new IptablesBackend(opts);
}
