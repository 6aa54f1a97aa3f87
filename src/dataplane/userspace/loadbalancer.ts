// Endpoint choice for one service port: the configured IPVS scheduler over the
// current endpoints (with live connection counts, so lc/sed/nq see them), the
// ClientIP session-affinity table of upstream's LoadBalancerRR, and the
// bookkeeping of connections per endpoint, including endpoints that were
// removed but still have connections draining.
import { createScheduler, type SchedServer, type Scheduler, type SchedulerFlags } from '../schedulers/index.js';
import { joinHostPort } from '../../util/ip.js';
import type { UsEndpoint } from './model.js';

export interface EndpointState extends SchedServer {
  /** Still in the service's endpoint list; false while draining. */
  current: boolean;
}

interface Affinity {
  endpoint: string;
  lastUsed: number;
}

export interface PickOptions {
  srcIP: string;
  srcPort?: number;
  dstIP?: string;
  /** Skip the affinity record (upstream's sessionAffinityReset after a failed dial). */
  resetAffinity?: boolean;
  /** Endpoints that already failed for this connection. */
  exclude?: ReadonlySet<string>;
}

export class LoadBalancer {
  private readonly scheduler: Scheduler;
  /** Every endpoint with connections or in the list, by "ip:port". */
  readonly endpoints = new Map<string, EndpointState>();
  private order: EndpointState[] = [];
  private readonly affinity = new Map<string, Affinity>();
  affinityEnabled = false;
  affinityTtlMs = 10800_000;

  constructor(
    readonly key: string,
    schedulerName: string,
    flags: SchedulerFlags,
    private readonly now: () => number = Date.now,
  ) {
    this.scheduler = createScheduler(schedulerName, flags);
  }

  get schedulerName(): string {
    return this.scheduler.name;
  }

  /** Replaces the endpoint list. Returns the endpoints that left (they drain). */
  setEndpoints(eps: readonly UsEndpoint[], affinity: 'None' | 'ClientIP', ttlSeconds: number): EndpointState[] {
    this.affinityEnabled = affinity === 'ClientIP';
    this.affinityTtlMs = ttlSeconds * 1000;
    const next: EndpointState[] = [];
    const seen = new Set<string>();
    for (const e of eps) {
      const key = joinHostPort(e.ip, e.port);
      if (seen.has(key)) continue;
      seen.add(key);
      let st = this.endpoints.get(key);
      if (!st) {
        st = { key, ip: e.ip, port: e.port, weight: e.weight, activeConns: 0, inactiveConns: 0, current: true };
        this.endpoints.set(key, st);
      }
      st.weight = e.weight;
      st.current = true;
      next.push(st);
    }
    const removed: EndpointState[] = [];
    for (const st of this.endpoints.values()) {
      if (seen.has(st.key)) continue;
      if (st.current) removed.push(st);
      st.current = false;
      if (st.activeConns + st.inactiveConns === 0) this.endpoints.delete(st.key);
    }
    // Affinity records pointing at endpoints that left are dropped (upstream removeSessionAffinityByEndpoint).
    for (const [ip, a] of this.affinity) if (!seen.has(a.endpoint) || !this.affinityEnabled) this.affinity.delete(ip);
    this.order = next;
    this.scheduler.update(next);
    return removed;
  }

  /** Whether a choice depends on the client's address (affinity, sh, mh): reading it costs a getpeername() per connection. */
  get needsClientAddress(): boolean {
    return this.affinityEnabled || this.scheduler.name === 'sh' || this.scheduler.name === 'mh';
  }

  get endpointCount(): number {
    return this.order.length;
  }

  /** The endpoint for a new connection, or undefined when none can take it. */
  pick(opts: PickOptions): EndpointState | undefined {
    const now = this.now();
    if (this.affinityEnabled && !opts.resetAffinity) {
      const a = this.affinity.get(opts.srcIP);
      if (a && now - a.lastUsed < this.affinityTtlMs) {
        const st = this.endpoints.get(a.endpoint);
        if (st && st.current && !opts.exclude?.has(st.key)) {
          a.lastUsed = now;
          return st;
        }
      }
    }
    let servers: EndpointState[] = this.order;
    if (opts.exclude?.size) {
      // A failed endpoint is offered to the scheduler as unavailable, so hashing
      // schedulers behave as with their fallback flag and the rest skip it.
      servers = this.order.map((s) => (opts.exclude!.has(s.key) ? { ...s, available: false } : s));
    }
    const chosen = this.scheduler.schedule(servers, { srcIP: opts.srcIP, srcPort: opts.srcPort, dstIP: opts.dstIP });
    if (!chosen) return undefined;
    const st = this.endpoints.get(chosen.key);
    if (!st) return undefined;
    if (this.affinityEnabled) this.affinity.set(opts.srcIP, { endpoint: st.key, lastUsed: now });
    return st;
  }

  /** Upstream CleanupStaleStickySessions: forget affinity records idle longer than the timeout. */
  cleanupStaleAffinity(): void {
    const now = this.now();
    for (const [ip, a] of this.affinity) if (now - a.lastUsed >= this.affinityTtlMs) this.affinity.delete(ip);
  }

  affinityOf(srcIP: string): string | undefined {
    return this.affinity.get(srcIP)?.endpoint;
  }

  /** Drops an endpoint's state once it has left the list and its last connection closed. */
  release(st: EndpointState): void {
    if (!st.current && st.activeConns + st.inactiveConns === 0) this.endpoints.delete(st.key);
  }
}
