// The node agent's loop: a ClusterSource feeds snapshots to the change
// tracker, the bounded-frequency runner decides when to sync, the proxy
// backend programs the kernel, and health and metrics follow each sync.
import type { ClusterSource } from '../k8s/source.js';
import type { ClusterState, IPFamily } from '../k8s/types.js';
import type { ProxyBackend } from '../dataplane/backend.js';
import { ChangeTracker, type PendingChanges } from './change-tracker.js';
import { BoundedFrequencyRunner, type Clock, realClock } from './runner.js';
import type { ProxyMetrics } from '../server/metrics.js';
import { sinceInSeconds } from '../server/metrics.js';
import type { ProxyHealthServer } from '../server/health.js';
import type { ServiceHealthServer } from '../server/service-health.js';
import { HealthCheckPorts } from './health-check-ports.js';
import type { Logger } from '../util/log.js';

/** Upstream proxyutil.FullSyncPeriod: a periodic full resync at least this often. */
export const FULL_SYNC_PERIOD_MS = 3_600_000;

export interface AgentOptions {
  source: ClusterSource;
  backend: ProxyBackend;
  nodeName: string;
  families: IPFamily[];
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  fullSyncPeriodMs?: number;
  metrics: ProxyMetrics;
  health?: ProxyHealthServer;
  serviceHealth?: ServiceHealthServer;
  log: Logger;
  clock?: Clock;
  /** Called after each successful sync, once it is logged (run.ts tunes the process after the first). */
  onSynced?: () => void;
}

export class ProxyAgent {
  readonly tracker: ChangeTracker;
  readonly runner: BoundedFrequencyRunner;
  private needFull = true;
  private lastFull = Number.NEGATIVE_INFINITY;
  private state: ClusterState | null = null;
  /** Resolves after each completed sync (tests, `npm start`). */
  syncs = 0;
  private readonly clock: Clock;
  private readonly healthPorts: HealthCheckPorts;

  constructor(private readonly o: AgentOptions) {
    this.clock = o.clock ?? realClock;
    this.healthPorts = new HealthCheckPorts(o.families, o.nodeName);
    this.tracker = new ChangeTracker(o.nodeName, () => this.clock.now());
    this.runner = new BoundedFrequencyRunner(
      'sync-runner',
      () => this.syncProxyRules(),
      // A failed sync is retried within syncPeriod; a run happens at least every syncPeriod
      // (a partial one with nothing to do costs nothing: no restore is run).
      { minIntervalMs: o.minSyncPeriodMs, retryIntervalMs: o.syncPeriodMs, maxIntervalMs: o.syncPeriodMs },
      this.clock,
      (e) => o.log.error('sync failed; retrying with a full sync', { error: e }),
    );
  }

  async start(): Promise<void> {
    const { source, backend, log } = this.o;
    await backend.start(() => this.requestFullSync());
    source.on('change', (s) => this.onChange(s));
    source.on('warning', (w) => log.warn('input object skipped', { ...w }));
    // run.ts may have started the source already, to read this node's IPs.
    if (!source.synced) await source.start();
    if (!this.state) this.onChange(source.current());
    this.runner.start();
    this.runner.run();
  }

  async stop(): Promise<void> {
    await this.runner.stop();
    await this.o.backend.stop();
    await this.o.source.stop();
  }

  requestFullSync(): void {
    this.needFull = true;
    for (const f of this.o.families) this.o.health?.queuedUpdate(f);
    this.runner.run();
  }

  private onChange(s: ClusterState): void {
    this.state = s;
    const n = this.tracker.update(s);
    const m = this.o.metrics;
    const p = this.tracker.pendingCounts;
    m.serviceChangesPending.set(p.services);
    m.endpointChangesPending.set(p.endpoints);
    m.serviceChangesTotal.inc(0);
    if (n === 0 && !this.tracker.hasPending) return;
    for (const f of this.o.families) {
      this.o.health?.queuedUpdate(f);
      m.syncProxyRulesLastQueuedTimestamp.set({ ip_family: f }, this.clock.now() / 1000);
    }
    this.runner.run();
  }

  private async syncProxyRules(): Promise<void> {
    const state = this.state;
    if (!state || !this.o.source.synced) return;
    const now = this.clock.now();
    const changes: PendingChanges = this.tracker.take();
    const m = this.o.metrics;
    m.serviceChangesTotal.inc(changes.serviceChanges);
    m.endpointChangesTotal.inc(changes.endpointChanges);
    m.serviceChangesPending.set(0);
    m.endpointChangesPending.set(0);
    const full = this.needFull || changes.full || now - this.lastFull > (this.o.fullSyncPeriodMs ?? FULL_SYNC_PERIOD_MS);
    const t0 = this.clock.now();
    const reports = await this.o.backend.sync(state, full, changes);
    const failed = reports.filter((r) => !r.ok);
    const done = this.clock.now();
    for (const r of reports) {
      if (!r.ok) continue;
      this.o.health?.updated(r.family);
      m.syncProxyRulesLastTimestamp.set({ ip_family: r.family }, done / 1000);
      for (const t of changes.since.values()) m.networkProgrammingLatency.observe({ ip_family: r.family }, sinceInSeconds(t, done));
    }
    await this.updateServiceHealth(state, full ? null : changes.since.keys());
    this.syncs++;
    if (failed.length) {
      // Upstream: the trackers are drained; the next sync is full.
      this.needFull = true;
      throw new Error(failed.map((r) => `${r.family}: ${r.error?.message ?? 'failed'}`).join('; '));
    }
    this.needFull = false;
    if (full) this.lastFull = now;
    const idle = !full && changes.changed.size === 0;
    (idle ? this.o.log.debug : this.o.log.info)(full ? 'synced all rules' : idle ? 'nothing to sync' : 'synced changed rules', {
      ms: Math.round(done - t0),
      changedServicePorts: changes.changed.size,
      families: Object.fromEntries(reports.map((r) => [r.family, r.detail])),
    });
    this.o.onSynced?.();
  }

  /**
   * Health check node ports for eTP=Local services, with their local ready
   * endpoint counts: all services on a full sync, else only the changed ones.
   */
  private async updateServiceHealth(state: ClusterState, changed: Iterable<string> | null): Promise<void> {
    const sh = this.o.serviceHealth;
    if (!sh) return;
    if (changed) this.healthPorts.update(state, changed);
    else this.healthPorts.full(state);
    try {
      await sh.syncServices(this.healthPorts.ports);
      sh.syncEndpoints(this.healthPorts.counts);
    } catch (e) {
      this.o.log.warn('health check node ports', { error: e });
    }
  }
}
