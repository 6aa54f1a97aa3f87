// Per-service health-check node ports for externalTrafficPolicy=Local services
// (pkg/proxy/healthcheck/service_health.go). A cloud load balancer probes
// http://<node>:<healthCheckNodePort>/ and sends traffic only to nodes that
// answer 200, i.e. nodes with a local ready endpoint while kproxy is healthy.
import { createServer, type Server } from 'node:http';
import { log } from '../util/log.js';
import { listenOn } from './listen.js';

export interface ServiceHealthResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Upstream's dedented, tab-indented body with no trailing newline. */
export function serviceHealthBody(namespace: string, name: string, localEndpoints: number, proxyHealthy: boolean): string {
  return (
    `{\n\t"service": {\n\t\t"namespace": ${goQuote(namespace)},\n\t\t"name": ${goQuote(name)}\n\t},\n` +
    `\t"localEndpoints": ${localEndpoints},\n\t"serviceProxyHealthy": ${proxyHealthy}\n}`
  );
}

/** Go's %q for the strings Kubernetes names can hold (DNS labels): plain double quotes. */
function goQuote(s: string): string {
  return JSON.stringify(s);
}

export function serviceHealthResponse(nsn: string, localEndpoints: number, proxyHealthy: boolean): ServiceHealthResponse {
  const [namespace, name] = splitNsn(nsn);
  return {
    status: localEndpoints !== 0 && proxyHealthy ? 200 : 503,
    headers: {
      'Content-Type': 'application/json',
      'X-Content-Type-Options': 'nosniff',
      'X-Load-Balancing-Endpoint-Weight': String(localEndpoints),
    },
    body: serviceHealthBody(namespace, name, localEndpoints, proxyHealthy),
  };
}

function splitNsn(nsn: string): [string, string] {
  const i = nsn.indexOf('/');
  return i < 0 ? ['', nsn] : [nsn.slice(0, i), nsn.slice(i + 1)];
}

export interface ServiceHealthServerOptions {
  /** Addresses to listen on: ["0.0.0.0"] (default) or the node IPs matching --nodeport-addresses. */
  nodeIPs?: string[];
  /** The proxy's own health (ProxyHealthServer.isHealthy). */
  isHealthy: () => boolean;
  /** For the warning text, as upstream's "node %s failed to start healthcheck". */
  hostname?: string;
  /** Called when a port cannot be opened; `kproxy run` turns this into a FailedToStartServiceHealthcheck Event. */
  onListenError?: (e: { service: string; port: number; error: Error; message: string }) => void;
}

interface Instance {
  port: number;
  servers: Server[];
  endpoints: number;
}

export class ServiceHealthServer {
  private readonly services = new Map<string, Instance>();
  private readonly nodeIPs: string[];

  constructor(private readonly opts: ServiceHealthServerOptions) {
    this.nodeIPs = opts.nodeIPs && opts.nodeIPs.length > 0 ? opts.nodeIPs : ['0.0.0.0'];
  }

  /**
   * Makes the given services the open set: servers for services gone (or whose
   * port changed) are closed, new ones opened, unchanged ones left alone.
   * Keys are "namespace/name"; values the healthCheckNodePort.
   */
  async syncServices(newServices: Map<string, { port: number } | number>): Promise<void> {
    const want = new Map<string, number>();
    for (const [k, v] of newServices) want.set(k, typeof v === 'number' ? v : v.port);
    for (const [nsn, inst] of this.services) {
      const port = want.get(nsn);
      if (port === undefined || port !== inst.port) {
        log.info('closing healthcheck', { service: nsn, port: inst.port });
        this.services.delete(nsn);
        await closeAll(inst.servers);
      }
    }
    for (const [nsn, port] of want) {
      if (this.services.has(nsn)) continue;
      log.info('opening healthcheck', { service: nsn, port });
      const inst: Instance = { port, servers: [], endpoints: 0 };
      try {
        for (const ip of this.nodeIPs) {
          const server = createServer((req, res) => {
            const cur = this.services.get(nsn);
            if (cur !== inst) {
              // Upstream logs and writes nothing (an empty 200) for a closed instance.
              res.end();
              return;
            }
            const r = serviceHealthResponse(nsn, inst.endpoints, this.opts.isHealthy());
            res.writeHead(r.status, r.headers);
            res.end(r.body);
          });
          await listenOn(server, ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
          inst.servers.push(server);
        }
      } catch (e) {
        // Close what was opened so a later sync can retry or another owner can take the port.
        await closeAll(inst.servers);
        const error = e instanceof Error ? e : new Error(String(e));
        const message = `node ${this.opts.hostname ?? ''} failed to start healthcheck "${nsn}" on port ${port}: ${error.message}`;
        log.error('failed to start healthcheck', { node: this.opts.hostname, service: nsn, port, err: error.message });
        this.opts.onListenError?.({ service: nsn, port, error, message });
        continue;
      }
      this.services.set(nsn, inst);
    }
  }

  /** Local ready endpoint counts per "namespace/name"; services not listed get 0. */
  syncEndpoints(newEndpoints: Map<string, number>): void {
    for (const [nsn, inst] of this.services) inst.endpoints = newEndpoints.get(nsn) ?? 0;
  }

  /** The open services and their ports (for status output and tests). */
  open(): Map<string, number> {
    return new Map([...this.services].map(([k, v]) => [k, v.port]));
  }

  async close(): Promise<void> {
    const all = [...this.services.values()];
    this.services.clear();
    for (const inst of all) await closeAll(inst.servers);
  }
}

async function closeAll(servers: Server[]): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        }),
    ),
  );
  servers.length = 0;
}
