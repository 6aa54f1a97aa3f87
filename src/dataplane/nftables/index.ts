// `kproxy run --proxy-mode nftables`: one `table ip kproxy` (and `ip6`) whose
// rules depend only on the node's settings; services live in set and map
// elements (layout.ts). A partial sync re-renders only the changed services
// and writes the element differences in one nft transaction; a full sync
// (start, after a failure, or when a setting changes the fixed rules)
// rewrites the table in one transaction. The periodic (hourly) full sync
// compares before it writes: when the fresh render equals what was written,
// it writes nothing and reads the kernel's table back in the background; any
// drift (an element or rule deleted or added by someone else) makes the next
// sync a full rewrite. A canary checks every sync period that the table is
// still there.
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import { serviceObjects } from '../../k8s/state-index.js';
import type { BackendOptions, FamilySyncReport, ProxyBackend } from '../backend.js';
import type { PendingChanges } from '../../proxy/change-tracker.js';
import { renderOptionsFromSettings } from '../iptables/render-options.js';
import type { RenderOptions } from '../iptables/render.js';
import { detectConntrackTCPBeLiberal } from '../iptables/detect.js';
import { hostAddresses } from '../iptables/sync-backend.js';
import { cleanStaleUdp } from '../conntrack.js';
import { sinceInSeconds } from '../../server/metrics.js';
import { deleteTable, listObjects, NftError, nftUsable, runNft, tableExists } from './apply.js';
import { familyWords } from './layout.js';
import { familyContext, fixedRules, renderServices, type ServiceContribution } from './render.js';
import { addTable, fixedKey, TableMirror, type Drift } from './table.js';
import { streamListing } from './readback.js';
import { NftSession, SESSION_MAX_CHARS } from './session.js';

export { renderNftablesText } from './text.js';

/** MiB of the agent's memory, before and after the drift check (its debug line). */
function memory(): { rss: number; heap: number; external: number } {
  const u = process.memoryUsage();
  const mib = (n: number): number => Math.round(n / 1048576);
  return { rss: mib(u.rss), heap: mib(u.heapUsed), external: mib(u.external) };
}

interface Family {
  mirror: TableMirror;
  needsFull: boolean;
  /** The last full sync failed: delete and re-create the table instead of refilling it. */
  recreate: boolean;
  /** A drift check is reading the kernel. */
  checking: boolean;
}

export async function createBackend(opts: BackendOptions): Promise<ProxyBackend> {
  const problem = await nftUsable();
  if (problem) {
    throw new Error(`--proxy-mode nftables: nft does not work here (${problem}); install nftables (Debian: apt-get install nftables) or use --proxy-mode iptables`);
  }
  return new NftablesBackend(opts);
}

class NftablesBackend implements ProxyBackend {
  readonly mode = 'nftables';
  private fams = new Map<IPFamily, Family>();
  private base: Partial<RenderOptions> = {};
  private canary: NodeJS.Timeout | undefined;
  /** Partial syncs go through one running nft; full syncs through `nft -f -`. */
  private session = new NftSession();
  private requestFullSync: () => void = () => {};

  constructor(private readonly opts: BackendOptions) {}

  private family(f: IPFamily): Family {
    let fam = this.fams.get(f);
    if (!fam) this.fams.set(f, (fam = { mirror: new TableMirror(familyWords(f)), needsFull: true, recreate: false, checking: false }));
    return fam;
  }

  async start(requestFullSync: () => void): Promise<void> {
    this.requestFullSync = requestFullSync;
    this.base = {
      conntrackTCPBeLiberal: this.opts.settings.conntrackTCPBeLiberal || (await detectConntrackTCPBeLiberal()),
      localAddresses: await hostAddresses(),
    };
    const check = async (): Promise<void> => {
      for (const f of this.opts.families) {
        const fam = this.family(f);
        if (fam.needsFull) continue;
        const ok = await tableExists(familyWords(f).nft).catch(() => true);
        if (!ok) {
          this.opts.log.info('nftables table is gone; re-programming it', { family: f });
          fam.needsFull = true;
          requestFullSync();
        }
      }
    };
    this.canary = setInterval(() => void check(), this.opts.settings.syncPeriodMs);
    this.canary.unref();
  }

  private renderOptions(): RenderOptions {
    return renderOptionsFromSettings(this.opts.settings, { ...this.base, families: this.opts.families });
  }

  async sync(state: ClusterState, full: boolean, changes: PendingChanges): Promise<FamilySyncReport[]> {
    const m = this.opts.metrics;
    const ropts = this.renderOptions();
    const reports: FamilySyncReport[] = [];
    for (const f of this.opts.families) {
      const fam = this.family(f);
      const t0 = Date.now();
      const ctx = familyContext(state, ropts, f);
      const fixed = fixedRules(ctx);
      const isFull = full || fam.needsFull || fixedKey(fixed) !== fam.mirror.fixedRules;
      const detail: Record<string, unknown> = {};
      try {
        if (isFull) {
          const services = renderServices(state, ctx, fam.mirror.slotHistory());
          const existing = fam.recreate ? null : await listObjects(ctx.w.nft);
          const full = fam.mirror.full(fixed, services, existing);
          const tRender = Date.now() - t0;
          if (existing && !fam.needsFull && fam.mirror.sameAs(full.next)) {
            // Nothing changed since the last write: compare the kernel with it instead of rewriting.
            void this.checkDrift(f);
            Object.assign(detail, { services: services.size, written: false, renderMs: tRender });
          } else {
            const tx = full.tx;
            const staged = !!tx.staged && !fam.recreate;
            if (staged && tx.staged) {
              // No table yet: load it in steps, the element halves by two nft processes at once.
              await runNft(tx.staged.first);
              await Promise.all(tx.staged.parallel.map((t) => runNft(t)));
            } else await runNft(tx.text);
            full.commit();
            // The next change goes through the session: have its nft running by then.
            void this.session.warm(addTable(ctx.w.nft)).catch(() => {});
            Object.assign(detail, { services: services.size, elements: tx.added, rules: tx.newRules, renderMs: tRender, nftMs: Date.now() - t0 - tRender, staged });
          }
        } else {
          const changed = new Map<string, ServiceContribution | null>();
          const history = fam.mirror.slotHistory();
          for (const nsn of changes.since.keys()) {
            const o = serviceObjects(state, nsn);
            const sub: ClusterState = { services: o.service ? [o.service] : [], endpointSlices: o.slices, nodes: state.nodes, pods: [] };
            changed.set(nsn, renderServices(sub, ctx, history).get(nsn) ?? null);
          }
          const tx = fam.mirror.partial(changed);
          if (tx.text.length <= SESSION_MAX_CHARS) await this.session.run(tx.text);
          else await runNft(tx.text);
          Object.assign(detail, { services: changed.size, added: tx.added, deleted: tx.deleted, newRules: tx.newRules });
        }
        fam.needsFull = false;
        fam.recreate = false;
      } catch (e) {
        fam.needsFull = true;
        if (isFull) fam.recreate = true;
        m.nftablesSyncFailuresTotal.inc({ ip_family: f });
        const lines = e instanceof NftError ? e.lines : [];
        this.opts.log.error('nft transaction failed; the next sync will be full', { family: f, full: isFull, error: (e as Error).message, lines });
        reports.push({ family: f, ok: false, full: isFull, detail: {}, error: e as Error });
        continue;
      }
      const secs = sinceInSeconds(t0);
      m.syncProxyRulesLatency.observe({ ip_family: f }, secs);
      (isFull ? m.syncFullProxyRulesLatency : m.syncPartialProxyRulesLatency).observe({ ip_family: f }, secs);
      m.nftablesElementsTotal.set({ ip_family: f }, fam.mirror.elementCount());
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
      reports.push({ family: f, ok: true, full: isFull, detail: { ...detail, conntrackDeleted: conntrack, ms: Date.now() - t0 } });
    }
    return reports;
  }

  /**
   * Reads the table back (seconds at 10k services, in the nft process) while
   * syncs go on; elements they touch meanwhile are left out of the comparison.
   * Drift is logged, counted, and repaired by a full sync.
   */
  private async checkDrift(f: IPFamily): Promise<void> {
    const fam = this.family(f);
    if (fam.checking) return;
    fam.checking = true;
    const wt = fam.mirror.watch();
    const t0 = Date.now();
    try {
      const m0 = memory();
      const cmp = fam.mirror.compare(wt);
      const rules = await streamListing(familyWords(f).nft, cmp);
      if (fam.needsFull || wt.void) return;
      const d: Drift | null = rules !== null ? cmp.finish(rules) : { missing: [], unexpected: [], rules: ['the table is gone'] };
      this.opts.log.debug('nftables drift check', { family: f, ms: Date.now() - t0, drift: !!d, memory: { before: m0, after: memory() } });
      if (!d) return;
      this.opts.metrics.nftablesDriftRepairsTotal.inc({ ip_family: f });
      this.opts.log.warn('the nftables table differs from what kproxy wrote; repairing it with a full sync', {
        family: f,
        missing: d.missing.length,
        unexpected: d.unexpected.length,
        examples: [...d.missing.slice(0, 5).map((e) => `missing ${e}`), ...d.unexpected.slice(0, 5).map((e) => `unexpected ${e}`), ...d.rules.slice(0, 5)],
      });
      fam.needsFull = true;
      this.requestFullSync();
    } catch (e) {
      this.opts.log.warn('nftables drift check failed', { family: f, error: (e as Error).message });
    } finally {
      fam.mirror.unwatch(wt);
      fam.checking = false;
    }
  }

  /** Deletes kproxy's tables (both families); other tables are never touched. */
  async cleanup(): Promise<void> {
    for (const f of ['ip', 'ip6'] as const) await deleteTable(f);
  }

  async stop(): Promise<void> {
    if (this.canary) clearInterval(this.canary);
    this.session.close();
  }
}
