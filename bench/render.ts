// `npm run bench -- render`: renders synthetic clusters of 1k / 10k / 30k
// services × 10 endpoints (a mix of ClusterIP, NodePort and LoadBalancer) and
// reports wall time and peak RSS. Each size runs in its own child process so
// its peak RSS is its own (process.resourceUsage().maxRSS).
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ClusterState, EndpointSlice, Service } from '../src/k8s/types.js';
import { renderIptables } from '../src/dataplane/iptables/render.js';
import { canonicalRuleset, restorePayload } from '../src/dataplane/iptables/payload.js';
import type { IptablesRuleset } from '../src/dataplane/iptables/model.js';
import { machineLine } from './machine.js';

const ENDPOINTS_PER_SERVICE = 10;
const NODES = 100;

function meta(namespace: string, name: string, labels: Record<string, string> = {}) {
  return { namespace, name, labels, annotations: {}, deleting: false };
}

/** A deterministic synthetic cluster: 60% ClusterIP, 25% NodePort, 15% LoadBalancer (a third of those eTP Local). */
export function syntheticCluster(nServices: number): ClusterState {
  const services: Service[] = [];
  const endpointSlices: EndpointSlice[] = [];
  let ep = 0;
  for (let i = 0; i < nServices; i++) {
    const ns = `ns-${i % 200}`;
    const name = `svc-${i}`;
    const kind = i % 20 < 12 ? 'ClusterIP' : i % 20 < 17 ? 'NodePort' : 'LoadBalancer';
    const lbLocal = kind === 'LoadBalancer' && i % 3 === 0;
    services.push({
      meta: meta(ns, name),
      type: kind,
      clusterIPs: [`172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}`],
      headless: false,
      ipFamilies: ['IPv4'],
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: kind === 'ClusterIP' ? 0 : 30000 + (i % 2768) }],
      selector: { app: name },
      externalIPs: [],
      loadBalancerSourceRanges: kind === 'LoadBalancer' && i % 2 === 0 ? ['203.0.113.0/24'] : [],
      loadBalancerIngress: kind === 'LoadBalancer' ? [{ ip: `198.18.${(i >> 8) & 255}.${i & 255}` }] : [],
      externalTrafficPolicy: lbLocal ? 'Local' : 'Cluster',
      internalTrafficPolicy: 'Cluster',
      healthCheckNodePort: lbLocal ? 32000 + (i % 700) : 0,
      sessionAffinity: 'None',
      sessionAffinityTimeoutSeconds: 10800,
      publishNotReadyAddresses: false,
    });
    const endpoints = [];
    for (let k = 0; k < ENDPOINTS_PER_SERVICE; k++, ep++) {
      endpoints.push({
        addresses: [`10.${(ep >> 16) & 255}.${(ep >> 8) & 255}.${ep & 255}`],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: `node-${ep % NODES}`,
      });
    }
    endpointSlices.push({
      meta: meta(ns, `${name}-abcde`, { 'kubernetes.io/service-name': name }),
      serviceName: name,
      addressType: 'IPv4',
      endpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  return { services, endpointSlices, nodes: [], pods: [] };
}

interface ChildResult {
  services: number;
  endpoints: number;
  rules: number;
  payloadBytes: number;
  renderMs: number;
  restoreMs: number;
  /** CPU time (user+system) of render + restore payload: less sensitive than wall time to a busy machine. */
  cpuMs: number;
  canonicalMs: number;
  warmRenderMs: number;
  /** Peak RSS up to the end of render + payload (the agent's path), input included. */
  payloadRssMiB: number;
  maxRssMiB: number;
}

function child(n: number): ChildResult {
  const st = syntheticCluster(n);
  const opts = { nodeName: 'node-0', nodeIPs: ['192.168.0.10'], clusterCIDRs: ['10.0.0.0/8'], randomFully: true };
  const cpu0 = process.cpuUsage();
  let t = performance.now();
  let rs: IptablesRuleset | undefined = renderIptables(st, opts)[0];
  const renderMs = performance.now() - t;
  t = performance.now();
  let payload: string | null = restorePayload(rs!);
  const restoreMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const payloadRssMiB = process.resourceUsage().maxRSS / 1024;
  let rules = 0;
  for (let i = payload.indexOf('\n-A '); i >= 0; i = payload.indexOf('\n-A ', i + 1)) rules++;
  payload = null;
  t = performance.now();
  const payloadBytes = canonicalRuleset(rs!).length;
  const canonicalMs = performance.now() - t;
  const endpoints = rs!.endpointCount;
  rs = undefined;
  // The agent renders on every sync; later renders find chain-name hashes memoized.
  t = performance.now();
  renderIptables(st, opts);
  const warmRenderMs = performance.now() - t;
  return {
    services: n,
    endpoints,
    rules,
    payloadBytes,
    renderMs,
    restoreMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    canonicalMs,
    warmRenderMs,
    payloadRssMiB,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

export async function run(args: string[]): Promise<void> {
  const sizes = args.includes('--quick') ? [1000] : [1000, 10000, 30000];
  const self = fileURLToPath(import.meta.url);
  // --nice: run the children at nice -19 (root only), to measure kproxy rather than a shared, oversubscribed machine.
  const nice = args.includes('--nice') && process.getuid?.() === 0;
  process.stdout.write(machineLine(`${cpus().length} CPUs${nice ? ', children at nice -19' : ''}`));
  process.stdout.write('services  endpoints  rules     canonical  render    +payload  =total     (cpu)     canonical  warm render  peak RSS (render+payload / all)\n');
  for (const n of sizes) {
    const cmd = nice ? 'nice' : process.execPath;
    const argv = nice ? ['-n', '-19', process.execPath, self, '--child', String(n)] : [self, '--child', String(n)];
    const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`bench child (${n} services) failed: ${r.stderr}`);
    const x = JSON.parse(r.stdout) as ChildResult;
    const f = (ms: number) => `${ms.toFixed(0)} ms`.padEnd(9);
    process.stdout.write(
      `${String(x.services).padEnd(9)} ${String(x.endpoints).padEnd(10)} ${String(x.rules).padEnd(9)} ${`${(x.payloadBytes / 2 ** 20).toFixed(1)} MiB`.padEnd(10)} ${f(x.renderMs)} ${f(x.restoreMs)} ${f(x.renderMs + x.restoreMs)}  ${f(x.cpuMs)} ${f(x.canonicalMs)}  ${f(x.warmRenderMs)}    ${x.payloadRssMiB.toFixed(0)} / ${x.maxRssMiB.toFixed(0)} MiB\n`,
    );
  }
}

if (process.argv[2] === '--child') {
  process.stdout.write(JSON.stringify(child(Number(process.argv[3]))));
}
