// Userspace-mode metrics, on the same registry as kube-proxy's others (upstream
// had none for this mode; the names follow the kubeproxy_ prefix). The
// connection gauges are read from the live load balancers at scrape time, so
// they are exactly the counts lc/sed/nq decide on.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LoadBalancer } from './loadbalancer.js';

export interface UserspaceMetrics {
  connections: Gauge<'service_port_name' | 'endpoint' | 'state'>;
  connectionsTotal: Counter<'service_port_name' | 'protocol' | 'result'>;
  dialFailuresTotal: Counter<'service_port_name' | 'endpoint'>;
  /** The load balancers the gauge reads; a proxier adds and removes its own. */
  sources: Set<() => Iterable<LoadBalancer>>;
  /**
   * Called before connectionsTotal is read: the proxy counts connections in plain
   * numbers on its hot path (a labelled inc() hashes its labels each time) and adds them here.
   */
  flushers: Set<() => void>;
}

const perRegistry = new WeakMap<Registry, UserspaceMetrics>();

export function userspaceMetrics(registry: Registry): UserspaceMetrics {
  const have = perRegistry.get(registry);
  if (have) return have;
  const sources = new Set<() => Iterable<LoadBalancer>>();
  const flushers = new Set<() => void>();
  const m: UserspaceMetrics = {
    sources,
    flushers,
    connections: new Gauge({
      name: 'kubeproxy_userspace_connections',
      help: 'Connections the userspace proxy holds open, per service port and endpoint; state is active (established) or inactive (half-closed TCP, UDP sessions), as IPVS counts them',
      labelNames: ['service_port_name', 'endpoint', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const src of sources) {
          for (const lb of src()) {
            for (const ep of lb.endpoints.values()) {
              this.set({ service_port_name: lb.key, endpoint: ep.key, state: 'active' }, ep.activeConns);
              this.set({ service_port_name: lb.key, endpoint: ep.key, state: 'inactive' }, ep.inactiveConns);
            }
          }
        }
      },
    }),
    connectionsTotal: new Counter({
      name: 'kubeproxy_userspace_connections_total',
      help: 'Connections (TCP) and sessions (UDP) accepted by the userspace proxy, by result: proxied, or rejected when no endpoint could take them',
      labelNames: ['service_port_name', 'protocol', 'result'],
      registers: [registry],
      collect() {
        for (const f of flushers) f();
      },
    }),
    dialFailuresTotal: new Counter({
      name: 'kubeproxy_userspace_endpoint_dial_failures_total',
      help: 'Failed attempts to reach an endpoint (each is retried on another endpoint)',
      labelNames: ['service_port_name', 'endpoint'],
      registers: [registry],
    }),
  };
  perRegistry.set(registry, m);
  return m;
}
