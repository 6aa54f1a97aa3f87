// `npm run bench -- sync`: programming a real kernel (in a fresh network
// namespace) with N ClusterIP services × M endpoints.
//   - first full sync: kproxy's staged diff vs upstream's single restore
//   - one endpoint added/removed: change → kernel latency, kproxy's diff vs
//     upstream's partial sync (KUBE-SERVICES and the filter table rewritten)
// on the nft backend and on legacy. Options: --services=N --endpoints=M
// --changes=K --upstream-full=1000,2000 --skip-legacy --stage=LINES
// --concurrency=N.
import type { ClusterState, EndpointSlice, Service } from '../src/k8s/types.js';
import type { IptablesRuleset } from '../src/dataplane/iptables/model.js';
import { renderFamily, type RenderOptions } from '../src/dataplane/iptables/render.js';
import { restorePayload } from '../src/dataplane/iptables/payload.js';
import { iptablesTools, restore, save, type BackendName, type IptablesTools } from '../src/dataplane/iptables/apply.js';
import { IptablesSyncer } from '../src/dataplane/iptables/sync.js';
import { ChangeTracker, type PendingChanges } from '../src/proxy/change-tracker.js';
import { IncrementalRenderer } from '../src/dataplane/iptables/sync-render.js';
import { canonical } from '../src/dataplane/iptables/sync-save.js';
import { Topology, isRoot, runPrefix } from '../src/lab/netns.js';
import { makeService, objectMeta } from '../src/k8s/build.js';
import { StateStore } from '../src/k8s/state-store.js';

function ip4(base: number, n: number): string {
  const v = base + n;
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function syntheticService(i: number): Service {
  return makeService(`ns${i % 50}`, `svc${i}`, {
    clusterIPs: [ip4(0x0a600000, i + 1)],
    ipFamilies: ['IPv4'],
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }],
    selector: undefined,
  });
}

export function syntheticSlice(i: number, endpoints: number, shift = 0): EndpointSlice {
  const eps = [];
  for (let e = 0; e < endpoints; e++) {
    eps.push({
      addresses: [ip4(0x0a800000, i * 16 + e + shift)],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: 'node-b',
    });
  }
  return {
    meta: objectMeta(`ns${i % 50}`, `svc${i}-abcde`, { 'kubernetes.io/service-name': `svc${i}` }),
    serviceName: `svc${i}`,
    addressType: 'IPv4',
    endpoints: eps,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

export function syntheticState(services: number, endpoints: number): ClusterState {
  const s: ClusterState = { services: [], endpointSlices: [], nodes: [], pods: [] };
  for (let i = 0; i < services; i++) {
    s.services.push(syntheticService(i));
    s.endpointSlices.push(syntheticSlice(i, endpoints));
  }
  return s;
}

export const benchRenderOptions: RenderOptions = {
  nodeName: 'node-a',
  nodeIPs: ['192.168.0.10'],
  clusterCIDRs: ['10.128.0.0/9'],
  randomFully: true,
  families: ['IPv4'],
};

/** Upstream's partial sync payload: the filter table and the fixed nat chains rewritten, every KUBE-SERVICES/NODEPORTS rule, and the changed services' chains. */
export function upstreamPartialPayload(rs: IptablesRuleset, changed: Set<string>): string {
  const out: string[] = ['*filter'];
  for (const name of rs.fixed.filter.keys()) out.push(`:${name} - [0:0]`);
  for (const rules of rs.fixed.filter.values()) out.push(...rules);
  for (const s of rs.services) for (const rules of s.shared.filter.values()) out.push(...rules);
  for (const rules of rs.trailing.filter.values()) out.push(...rules);
  out.push('COMMIT', '*nat');
  for (const name of rs.fixed.nat.keys()) out.push(`:${name} - [0:0]`);
  for (const s of rs.services) if (changed.has(s.key)) for (const name of s.chains.keys()) out.push(`:${name} - [0:0]`);
  for (const rules of rs.fixed.nat.values()) out.push(...rules);
  for (const s of rs.services) {
    for (const rules of s.shared.nat.values()) out.push(...rules);
    if (changed.has(s.key)) for (const rules of s.chains.values()) out.push(...rules);
  }
  for (const rules of rs.trailing.nat.values()) out.push(...rules);
  out.push('COMMIT', '');
  return out.join('\n');
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

function arg(args: string[], name: string, def: string): string {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

async function withNetns<T>(fn: (wrap: string[]) => Promise<T>): Promise<T> {
  const topo = new Topology(runPrefix('kb'));
  try {
    const ns = await topo.netns('node');
    return await fn(['ip', 'netns', 'exec', ns.name]);
  } finally {
    await topo.destroy();
  }
}

interface LatencyResult {
  p50: number;
  p99: number;
  max: number;
  renderP50: number;
  n: number;
}

/**
 * One endpoint added to / removed from a random service, `changes` times:
 * change → kernel. `render` and `apply` are the strategy under test (kproxy's
 * partial render + diff, or upstream's full render + partial restore).
 */
async function changeLatency(
  state: ClusterState,
  endpoints: number,
  changes: number,
  seed: number,
  render: (changed: PendingChanges, state: ClusterState) => IptablesRuleset,
  apply: (rs: IptablesRuleset, changed: PendingChanges) => Promise<void>,
): Promise<LatencyResult> {
  // The objects in a StateStore, as the sources keep them: each change is one
  // slice replaced, and the snapshot carries the index and the delta.
  const store = new StateStore();
  for (const s of state.services) store.set('Service', s.meta.namespace, s.meta.name, s);
  for (const s of state.endpointSlices) store.set('EndpointSlice', s.meta.namespace, s.meta.name, s);
  const slices = state.endpointSlices.slice();
  state = store.snapshot();
  const tracker = new ChangeTracker('node-a');
  tracker.update(state);
  tracker.take();
  const lat: number[] = [];
  const rend: number[] = [];
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let c = 0; c < changes; c++) {
    const i = Math.floor(rnd() * slices.length);
    const cur = slices[i]!;
    const n = cur.endpoints.length === endpoints ? endpoints + 1 : endpoints;
    const t0 = performance.now();
    const next = (slices[i] = syntheticSlice(i, n));
    store.set('EndpointSlice', next.meta.namespace, next.meta.name, next);
    state = store.snapshot();
    tracker.update(state);
    const p = tracker.take();
    const r0 = performance.now();
    const rs = render(p, state);
    rend.push(performance.now() - r0);
    await apply(rs, p);
    lat.push(performance.now() - t0);
  }
  return { p50: pct(lat, 50), p99: pct(lat, 99), max: Math.max(...lat), renderP50: pct(rend, 50), n: lat.length };
}

function kproxyChanges(renderer: IncrementalRenderer, syncer: IptablesSyncer, state: ClusterState, endpoints: number, changes: number): Promise<LatencyResult> {
  return changeLatency(
    state,
    endpoints,
    changes,
    12345,
    (p, s) => renderer.partial(s, benchRenderOptions, p.since.keys()),
    async (rs, p) => {
      await syncer.sync(rs, { full: false, changed: p.changed });
    },
  );
}

function upstreamChanges(tools: IptablesTools, state: ClusterState, endpoints: number, changes: number): Promise<LatencyResult> {
  return changeLatency(
    state,
    endpoints,
    changes,
    777,
    (_, s) => renderFamily(s, benchRenderOptions, 'IPv4'),
    // Upstream also deletes the removed endpoint's chain (-X) in the same restore; a
    // stale-chain flush is a few lines and does not change the cost materially.
    (rs, p) => restore(tools, upstreamPartialPayload(rs, p.changed)),
  );
}

async function backendRun(backend: BackendName, services: number, endpoints: number, changes: number, stage: number | undefined, concurrency: number | undefined, out: string[]): Promise<void> {
  await withNetns(async (wrap) => {
    const tools = await iptablesTools('IPv4', backend, wrap);
    const state = syntheticState(services, endpoints);
    const r0 = performance.now();
    const renderer = new IncrementalRenderer('IPv4');
    const rs = renderer.full(state, benchRenderOptions);
    const renderMs = performance.now() - r0;
    const syncer = new IptablesSyncer({ tools, ...(stage && backend === 'nft' ? { stageLines: stage } : {}), ...(concurrency ? { concurrency } : {}) });
    const s0 = performance.now();
    const res = await syncer.sync(rs, { full: true });
    const firstMs = performance.now() - s0;
    out.push(
      `| ${backend} | kproxy first full sync (${services} × ${endpoints}) | ${fmt(firstMs + renderMs)} | render ${fmt(renderMs)}, ${res.restores} restores, ${res.lines} lines |`,
    );
    process.stdout.write(out[out.length - 1] + '\n');
    // A second full sync against iptables-save: nothing to do, but it proves the diff is empty.
    const f0 = performance.now();
    const again = await syncer.sync(rs, { full: true });
    out.push(`| ${backend} | kproxy periodic full sync, no drift | ${fmt(performance.now() - f0)} | read the kernel (${backend === 'nft' ? 'nft list chains + iptables -S of the shared chains' : 'iptables-legacy-save'}) and compare, ${again.restores} restores |`);
    process.stdout.write(out[out.length - 1] + '\n');
    const k = await kproxyChanges(renderer, syncer, state, endpoints, changes);
    out.push(`| ${backend} | kproxy: 1 endpoint added/removed, change → kernel (${k.n}) | p50 ${fmt(k.p50)}, p99 ${fmt(k.p99)} | max ${fmt(k.max)}; of which render p50 ${fmt(k.renderP50)} |`);
    process.stdout.write(out[out.length - 1] + '\n');
    // Where the time goes: restores of fixed payloads on the loaded table (10 runs each).
    const svc = rs.services[Math.floor(rs.services.length / 2)]!;
    const svcChain = [...svc.chains].find(([n]) => n.startsWith('KUBE-SVC-'));
    const probes: Record<string, string> = {
      'empty restore': '*nat\nCOMMIT\n',
      // Adding any rule makes the kernel re-validate every chain reachable from the base chains.
      'add one rule to a chain nothing jumps to (+ delete it)':
        '*nat\n:KUBE-SEP-PROBEPROBEPROBE1 - [0:0]\n-A KUBE-SEP-PROBEPROBEPROBE1 -m tcp -p tcp -j DNAT --to-destination 192.0.2.1:80\nCOMMIT\n*nat\n:KUBE-SEP-PROBEPROBEPROBE1 - [0:0]\n-X KUBE-SEP-PROBEPROBEPROBE1\nCOMMIT\n',
      'create + delete an empty chain': '*nat\n:KUBE-SEP-PROBEPROBEPROBE2 - [0:0]\nCOMMIT\n*nat\n-X KUBE-SEP-PROBEPROBEPROBE2\nCOMMIT\n',
      'rewrite one KUBE-SVC chain': svcChain ? `*nat\n:${svcChain[0]} - [0:0]\n${svcChain[1].join('\n')}\nCOMMIT\n` : '*nat\nCOMMIT\n',
      'add + delete one KUBE-SERVICES rule': '*nat\n-A KUBE-SERVICES -d 192.0.2.1/32 -j RETURN\nCOMMIT\n*nat\n-D KUBE-SERVICES -d 192.0.2.1/32 -j RETURN\nCOMMIT\n',
    };
    for (const [what, payload] of Object.entries(probes)) {
      const ts: number[] = [];
      for (let i = 0; i < 10; i++) {
        const p0 = performance.now();
        await restore(tools, payload);
        ts.push(performance.now() - p0);
      }
      out.push(`| ${backend} | probe: ${what} (10) | p50 ${fmt(pct(ts, 50))} | max ${fmt(Math.max(...ts))} |`);
      process.stdout.write(out[out.length - 1] + '\n');
    }
    const u = await upstreamChanges(tools, state, endpoints, Math.min(changes, backend === 'legacy' ? 10 : 20));
    out.push(`| ${backend} | upstream-style partial sync (KUBE-SERVICES + filter rewritten) (${u.n}) | p50 ${fmt(u.p50)}, p99 ${fmt(u.p99)} | max ${fmt(u.max)}; render p50 ${fmt(u.renderP50)} |`);
    process.stdout.write(out[out.length - 1] + '\n');
  });
}

async function upstreamFull(backend: BackendName, services: number, endpoints: number, out: string[]): Promise<void> {
  await withNetns(async (wrap) => {
    const tools = await iptablesTools('IPv4', backend, wrap);
    const rs = renderFamily(syntheticState(services, endpoints), benchRenderOptions, 'IPv4');
    const payload = restorePayload(rs);
    const t0 = performance.now();
    await restore(tools, payload);
    const up = performance.now() - t0;
    // The same ruleset through kproxy's staged sync, in a second namespace.
    const lines = payload.split('\n').length;
    await withNetns(async (wrap2) => {
      const tools2 = await iptablesTools('IPv4', backend, wrap2);
      const syncer = new IptablesSyncer({ tools: tools2 });
      const s0 = performance.now();
      const res = await syncer.sync(rs, { full: true });
      const ks = performance.now() - s0;
      // Same kernel end state? (jump rules aside: upstream-style load has none)
      const a = canonical(await save(tools), ['nat']).split('\n').filter((l) => !/^-A (PREROUTING|OUTPUT|POSTROUTING|INPUT|FORWARD) /.test(l));
      const b = canonical(await save(tools2), ['nat']).split('\n').filter((l) => !/^-A (PREROUTING|OUTPUT|POSTROUTING|INPUT|FORWARD) /.test(l));
      const same = a.join('\n') === b.join('\n');
      out.push(
        `| ${backend} | full sync ${services} × ${endpoints}: upstream one restore vs kproxy staged | ${fmt(up)} vs ${fmt(ks)} | ${lines} lines; kproxy ${res.restores} restores; nat tables identical: ${same} |`,
      );
      process.stdout.write(out[out.length - 1] + '\n');
    });
  });
}

export async function run(args: string[]): Promise<void> {
  if (!isRoot()) {
    process.stdout.write('sync benchmark needs root (network namespaces); skipped\n');
    return;
  }
  const services = Number(arg(args, 'services', '10000'));
  const endpoints = Number(arg(args, 'endpoints', '10'));
  const changes = Number(arg(args, 'changes', '50'));
  const stage = args.some((a) => a.startsWith('--stage=')) ? Number(arg(args, 'stage', '2500')) : undefined;
  const concurrency = args.some((a) => a.startsWith('--concurrency=')) ? Number(arg(args, 'concurrency', '2')) : undefined;
  const upFull = arg(args, 'upstream-full', '1000,2000').split(',').filter(Boolean).map(Number);
  const out: string[] = ['| backend | what | time | notes |', '|---|---|---|---|'];
  process.stdout.write(out.join('\n') + '\n');
  await backendRun('nft', services, endpoints, changes, stage, concurrency, out);
  for (const n of upFull) await upstreamFull('nft', n, endpoints, out);
  if (!args.includes('--skip-legacy')) {
    await backendRun('legacy', services, endpoints, Math.min(changes, 20), undefined, undefined, out);
  }
}
