// kube-proxy's Prometheus metrics, with upstream's names, help texts, types,
// buckets and labels (pkg/proxy/metrics/metrics.go, the ip_family-labelled
// generation), and the metrics HTTP server (cmd/kube-proxy/app/server.go
// serveMetrics: /metrics, /proxyMode, /healthz, /configz).
//
// Upstream registers through k8s.io/component-base, which prefixes every ALPHA
// metric's help with "[ALPHA] "; we do the same so scrapes diff cleanly.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  exponentialBuckets,
  linearBuckets,
} from 'prom-client';
import { listenOn, type BoundAddress } from './listen.js';

const ALPHA = '[ALPHA] ';

/** component-base MergeBuckets: note the leading 0 bucket it starts from. */
export function mergeBuckets(...lists: number[][]): number[] {
  return [0, ...lists.flat()];
}

/** Buckets of kubeproxy_network_programming_duration_seconds. */
export const networkProgrammingBuckets = mergeBuckets(
  linearBuckets(0.25, 0.25, 2),
  linearBuckets(1, 1, 59),
  linearBuckets(60, 5, 12),
  linearBuckets(120, 30, 7),
);

/** Buckets of the sync and conntrack duration histograms. */
export const syncBuckets = exponentialBuckets(0.001, 2, 15);

export interface ProxyMetrics {
  registry: Registry;
  syncProxyRulesLatency: Histogram<'ip_family'>;
  syncFullProxyRulesLatency: Histogram<'ip_family'>;
  syncPartialProxyRulesLatency: Histogram<'ip_family'>;
  syncProxyRulesLastTimestamp: Gauge<'ip_family'>;
  syncProxyRulesLastQueuedTimestamp: Gauge<'ip_family'>;
  networkProgrammingLatency: Histogram<'ip_family'>;
  endpointChangesPending: Gauge;
  endpointChangesTotal: Counter;
  serviceChangesPending: Gauge;
  serviceChangesTotal: Counter;
  iptablesRestoreFailuresTotal: Counter<'ip_family'>;
  iptablesPartialRestoreFailuresTotal: Counter<'ip_family'>;
  nftablesSyncFailuresTotal: Counter<'ip_family'>;
  nftablesElementsTotal: Gauge<'ip_family'>;
  nftablesDriftRepairsTotal: Counter<'ip_family'>;
  iptablesRulesTotal: Gauge<'table' | 'ip_family'>;
  iptablesRulesLastSync: Gauge<'table' | 'ip_family'>;
  syncProxyRulesNoLocalEndpointsTotal: Gauge<'traffic_policy' | 'ip_family'>;
  proxyHealthzTotal: Counter<'code'>;
  proxyLivezTotal: Counter<'code'>;
  reconcileConntrackFlowsLatency: Histogram<'ip_family'>;
  reconcileConntrackFlowsDeletedEntriesTotal: Counter<'ip_family'>;
}

/**
 * Creates the full set of kube-proxy metrics on a registry. Most callers use
 * the shared `metrics` below; tests create their own to start from zero.
 */
export function createProxyMetrics(registry: Registry = new Registry(), opts: { processMetrics?: boolean } = {}): ProxyMetrics {
  const registers = [registry];
  if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  const family = ['ip_family'] as const;
  return {
    registry,
    syncProxyRulesLatency: new Histogram({
      name: 'kubeproxy_sync_proxy_rules_duration_seconds',
      help: ALPHA + 'SyncProxyRules latency in seconds',
      buckets: syncBuckets,
      labelNames: family,
      registers,
    }),
    syncFullProxyRulesLatency: new Histogram({
      name: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
      help: ALPHA + 'SyncProxyRules latency in seconds for full resyncs',
      buckets: syncBuckets,
      labelNames: family,
      registers,
    }),
    syncPartialProxyRulesLatency: new Histogram({
      name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
      help: ALPHA + 'SyncProxyRules latency in seconds for partial resyncs',
      buckets: syncBuckets,
      labelNames: family,
      registers,
    }),
    syncProxyRulesLastTimestamp: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      help: ALPHA + 'The last time proxy rules were successfully synced',
      labelNames: family,
      registers,
    }),
    syncProxyRulesLastQueuedTimestamp: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
      help: ALPHA + 'The last time a sync of proxy rules was queued',
      labelNames: family,
      registers,
    }),
    networkProgrammingLatency: new Histogram({
      name: 'kubeproxy_network_programming_duration_seconds',
      help: ALPHA + 'In Cluster Network Programming Latency in seconds',
      buckets: networkProgrammingBuckets,
      labelNames: family,
      registers,
    }),
    endpointChangesPending: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
      help: ALPHA + 'Pending proxy rules Endpoint changes',
      registers,
    }),
    endpointChangesTotal: new Counter({
      name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      help: ALPHA + 'Cumulative proxy rules Endpoint changes',
      registers,
    }),
    serviceChangesPending: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_service_changes_pending',
      help: ALPHA + 'Pending proxy rules Service changes',
      registers,
    }),
    serviceChangesTotal: new Counter({
      name: 'kubeproxy_sync_proxy_rules_service_changes_total',
      help: ALPHA + 'Cumulative proxy rules Service changes',
      registers,
    }),
    iptablesRestoreFailuresTotal: new Counter({
      name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
      help: ALPHA + 'Cumulative proxy iptables restore failures',
      labelNames: family,
      registers,
    }),
    iptablesPartialRestoreFailuresTotal: new Counter({
      name: 'kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total',
      help: ALPHA + 'Cumulative proxy iptables partial restore failures',
      labelNames: family,
      registers,
    }),
    nftablesSyncFailuresTotal: new Counter({
      name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
      help: ALPHA + 'Cumulative proxy nftables sync failures',
      labelNames: family,
      registers,
    }),
    nftablesDriftRepairsTotal: new Counter({
      name: 'kproxy_sync_proxy_rules_nftables_drift_repairs_total',
      help: "Periodic checks that found kproxy's nftables table changed by someone else, each repaired by a full sync (kproxy only)",
      labelNames: family,
      registers,
    }),
    nftablesElementsTotal: new Gauge({
      name: 'kproxy_sync_proxy_rules_nftables_elements_total',
      help: 'Set and map elements in kproxy\'s nftables table (kproxy only)',
      labelNames: family,
      registers,
    }),
    iptablesRulesTotal: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_iptables_total',
      help: ALPHA + 'Total number of iptables rules owned by kube-proxy',
      labelNames: ['table', 'ip_family'] as const,
      registers,
    }),
    iptablesRulesLastSync: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_iptables_last',
      help: ALPHA + 'Number of iptables rules written by kube-proxy in last sync',
      labelNames: ['table', 'ip_family'] as const,
      registers,
    }),
    syncProxyRulesNoLocalEndpointsTotal: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total',
      help: ALPHA + 'Number of services with a Local traffic policy and no endpoints',
      labelNames: ['traffic_policy', 'ip_family'] as const,
      registers,
    }),
    proxyHealthzTotal: new Counter({
      name: 'kubeproxy_proxy_healthz_total',
      help: ALPHA + 'Cumulative proxy healthz HTTP status',
      labelNames: ['code'] as const,
      registers,
    }),
    proxyLivezTotal: new Counter({
      name: 'kubeproxy_proxy_livez_total',
      help: ALPHA + 'Cumulative proxy livez HTTP status',
      labelNames: ['code'] as const,
      registers,
    }),
    reconcileConntrackFlowsLatency: new Histogram({
      name: 'kubeproxy_conntrack_reconciler_sync_duration_seconds',
      help: ALPHA + 'ReconcileConntrackFlowsLatency latency in seconds',
      buckets: syncBuckets,
      labelNames: family,
      registers,
    }),
    reconcileConntrackFlowsDeletedEntriesTotal: new Counter({
      name: 'kubeproxy_conntrack_reconciler_deleted_entries_total',
      help: ALPHA + 'Cumulative conntrack flows deleted by conntrack reconciler',
      labelNames: family,
      registers,
    }),
  };
}

/** The process-wide metrics that `kproxy run` exposes (with Node process metrics, as upstream exposes Go's). */
export const metrics: ProxyMetrics = createProxyMetrics(new Registry(), { processMetrics: true });

/** Seconds since `startMs` (epoch ms), for observe() calls. */
export function sinceInSeconds(startMs: number, nowMs: number = Date.now()): number {
  return (nowMs - startMs) / 1000;
}

export interface MetricsServerOptions {
  /** host:port, e.g. 127.0.0.1:10249 or [::1]:10249; empty disables the server (as upstream). */
  bindAddress: string;
  /** Reported on /proxyMode, e.g. "iptables". */
  proxyMode: string;
  registry?: Registry;
  /** The effective configuration, served on /configz as KubeProxyConfiguration. */
  configz?: () => unknown;
}

export interface MetricsResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const textPlain = { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' };

/** Answers one request to the metrics server (pure apart from reading the registry). */
export async function handleMetricsRequest(opts: MetricsServerOptions, path: string, query: string): Promise<MetricsResponse> {
  const registry = opts.registry ?? metrics.registry;
  switch (path) {
    case '/metrics':
      return { status: 200, headers: { 'Content-Type': registry.contentType }, body: await registry.metrics() };
    case '/proxyMode':
      return { status: 200, headers: textPlain, body: opts.proxyMode };
    case '/healthz':
    case '/healthz/ping':
      // k8s.io/apiserver healthz.InstallHandler with its default ping check.
      if (path === '/healthz' && /(^|&)verbose(=|&|$)/.test(query)) {
        return { status: 200, headers: textPlain, body: '[+]ping ok\nhealthz check passed\n' };
      }
      return { status: 200, headers: textPlain, body: 'ok' };
    case '/configz': {
      if (!opts.configz) break;
      return {
        status: 200,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ 'kubeproxy.config.k8s.io': opts.configz() }),
      };
    }
  }
  return { status: 404, headers: textPlain, body: '404 page not found\n' };
}

export class MetricsServer {
  private server?: Server;

  constructor(readonly opts: MetricsServerOptions) {}

  async listen(): Promise<BoundAddress | undefined> {
    if (!this.opts.bindAddress) return undefined;
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q >= 0 ? url.slice(0, q) : url;
      const query = q >= 0 ? url.slice(q + 1) : '';
      handleMetricsRequest(this.opts, path, query).then(
        (r) => {
          res.writeHead(r.status, r.headers);
          res.end(r.body);
        },
        (e: unknown) => {
          res.writeHead(500, textPlain);
          res.end(`${e instanceof Error ? e.message : String(e)}\n`);
        },
      );
    });
    return listenOn(this.server, this.opts.bindAddress);
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
