// kube-proxy's /healthz and /livez (pkg/proxy/healthcheck/proxy_health.go,
// ProxyHealthServer). The sync loop calls queuedUpdate(family) when a change
// arrives and updated(family) when the kernel has it; a family with an update
// queued for longer than healthTimeout (2 × syncPeriod in kube-proxy) makes the
// proxy unhealthy. /healthz additionally requires the node to be eligible: no
// deletionTimestamp and no ToBeDeletedByClusterAutoscaler taint.
import { createServer, type Server } from 'node:http';
import type { IPFamily, Node } from '../k8s/types.js';
import { metrics as sharedMetrics, type ProxyMetrics } from './metrics.js';
import { listenOn, type BoundAddress } from './listen.js';

export const ToBeDeletedTaint = 'ToBeDeletedByClusterAutoscaler';

/** Milliseconds since the epoch; injectable so tests control time. */
export interface Clock {
  now(): number;
}
export const realClock: Clock = { now: () => Date.now() };

export interface ProxierHealth {
  lastUpdated: number | undefined;
  healthy: boolean;
}

export interface ProxyHealth {
  /** The most recent per-family lastUpdated (undefined = Go's zero time). */
  lastUpdated: number | undefined;
  currentTime: number;
  /** Only on /healthz. */
  nodeEligible?: boolean;
  healthy: boolean;
  status: Map<IPFamily, ProxierHealth>;
}

export interface HealthResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Formats epoch ms the way Go's json.Marshal formats a time.Time in UTC
 * (RFC 3339 with trailing fractional zeros trimmed); undefined is Go's zero time.
 */
export function goTime(ms: number | undefined): string {
  if (ms === undefined) return '0001-01-01T00:00:00Z';
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const [base, frac = ''] = iso.slice(0, -1).split('.');
  const trimmed = frac.replace(/0+$/, '');
  return `${base}${trimmed ? '.' + trimmed : ''}Z`;
}

/** The JSON body, fields in upstream's struct order; status keys sorted as Go sorts map keys; empty status omitted. */
export function healthBody(h: ProxyHealth): string {
  let out = `{"lastUpdated":${JSON.stringify(goTime(h.lastUpdated))},"currentTime":${JSON.stringify(goTime(h.currentTime))}`;
  if (h.nodeEligible !== undefined) out += `,"nodeEligible":${h.nodeEligible}`;
  out += `,"healthy":${h.healthy}`;
  const fams = [...h.status.keys()].sort();
  if (fams.length > 0) {
    const parts = fams.map((f) => {
      const s = h.status.get(f)!;
      return `${JSON.stringify(f)}:{"lastUpdated":${JSON.stringify(goTime(s.lastUpdated))},"healthy":${s.healthy}}`;
    });
    out += `,"status":{${parts.join(',')}}`;
  }
  return out + '}';
}

const jsonHeaders = { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' };

export interface ProxyHealthServerOptions {
  /** 2 × syncPeriod in kube-proxy. */
  healthTimeoutMs: number;
  clock?: Clock;
  metrics?: ProxyMetrics;
}

export class ProxyHealthServer {
  readonly healthTimeoutMs: number;
  private readonly clock: Clock;
  private readonly metrics: ProxyMetrics;
  private readonly lastUpdated = new Map<IPFamily, number>();
  private readonly oldestPendingQueued = new Map<IPFamily, number>();
  /**
   * Upstream's current code reads the Node from its node manager (kube-proxy
   * waits for it at start-up). kproxy can run from a manifests folder with no
   * Node object, so "no Node seen" counts as eligible, as older upstream did
   * ("eligible while starting up, until a node event says otherwise").
   */
  private eligible = true;
  private server?: Server;

  constructor(opts: ProxyHealthServerOptions) {
    this.healthTimeoutMs = opts.healthTimeoutMs;
    this.clock = opts.clock ?? realClock;
    this.metrics = opts.metrics ?? sharedMetrics;
  }

  /** A change for this family has arrived and is not in the kernel yet. Only the oldest pending one counts. */
  queuedUpdate(family: IPFamily): void {
    if (!this.oldestPendingQueued.has(family)) this.oldestPendingQueued.set(family, this.clock.now());
  }

  /** This family's rules now reflect everything queued. */
  updated(family: IPFamily): void {
    this.oldestPendingQueued.delete(family);
    this.lastUpdated.set(family, this.clock.now());
  }

  /** This node's Node object (undefined when none is known). */
  setNode(node: Node | undefined): void {
    this.eligible = node === undefined ? true : isNodeEligible(node);
  }

  nodeEligible(): boolean {
    return this.eligible;
  }

  health(): ProxyHealth {
    const currentTime = this.clock.now();
    const status = new Map<IPFamily, ProxierHealth>();
    let lastUpdated: number | undefined;
    let healthy = true;
    // Families that never completed a sync are not listed and cannot be unhealthy: upstream treats them as starting up.
    for (const [family, at] of this.lastUpdated) {
      if (lastUpdated === undefined || at > lastUpdated) lastUpdated = at;
      const queued = this.oldestPendingQueued.get(family);
      const late = queued !== undefined && currentTime - queued >= this.healthTimeoutMs;
      if (late) healthy = false;
      status.set(family, { lastUpdated: at, healthy: !late });
    }
    return { lastUpdated, currentTime, healthy, status };
  }

  isHealthy(): boolean {
    return this.health().healthy;
  }

  /** The response for GET /healthz. */
  healthz(): HealthResponse {
    const h = this.health();
    const eligible = this.nodeEligible();
    h.nodeEligible = eligible;
    const ok = h.healthy && eligible;
    this.metrics.proxyHealthzTotal.inc({ code: ok ? '200' : '503' });
    // Kept from older releases: a healthy server reports lastUpdated = now.
    if (ok) h.lastUpdated = this.clock.now();
    return { status: ok ? 200 : 503, headers: { ...jsonHeaders }, body: healthBody(h) };
  }

  /** The response for GET /livez: node eligibility is ignored and not reported. */
  livez(): HealthResponse {
    const h = this.health();
    this.metrics.proxyLivezTotal.inc({ code: h.healthy ? '200' : '503' });
    if (h.healthy) h.lastUpdated = this.clock.now();
    return { status: h.healthy ? 200 : 503, headers: { ...jsonHeaders }, body: healthBody(h) };
  }

  /** Routes a request path like Go's ServeMux with exactly /healthz and /livez registered. */
  handle(path: string): HealthResponse {
    if (path === '/healthz') return this.healthz();
    if (path === '/livez') return this.livez();
    return {
      status: 404,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' },
      body: '404 page not found\n',
    };
  }

  /** Serves /healthz and /livez on addr (kube-proxy's default 0.0.0.0:10256). */
  async listen(addr: string): Promise<BoundAddress> {
    if (this.server) throw new Error('health server already listening');
    const server = createServer((req, res) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const r = this.handle(q >= 0 ? url.slice(0, q) : url);
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
    const bound = await listenOn(server, addr);
    this.server = server;
    return bound;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}

/** Eligible: not being deleted and not tainted for deletion by the cluster autoscaler. */
export function isNodeEligible(node: Node): boolean {
  if (node.meta.deleting) return false;
  return !node.taints.some((t) => t.key === ToBeDeletedTaint);
}
