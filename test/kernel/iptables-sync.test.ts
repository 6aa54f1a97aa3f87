// The sync engine against a real kernel: a first full sync split into many
// small stages, several restores running at once (so iptables-nft's
// transactions collide and retry), then partial syncs of scaled, removed and
// added services. After each step the node must hold exactly what one
// iptables-restore of the full render gives a second, fresh namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix } from '../../src/lab/netns.js';
import { IncrementalRenderer } from '../../src/dataplane/iptables/sync-render.js';
import { IptablesSyncer } from '../../src/dataplane/iptables/sync.js';
import { iptablesTools, save, type BackendName, type IptablesTools } from '../../src/dataplane/iptables/apply.js';
import { restorePayload } from '../../src/dataplane/iptables/payload.js';
import { canonical } from '../../src/dataplane/iptables/sync-save.js';
import { ChangeTracker } from '../../src/proxy/change-tracker.js';
import type { RenderOptions } from '../../src/dataplane/iptables/render.js';
import type { ClusterState } from '../../src/k8s/types.js';
import { exec } from '../../src/util/exec.js';
import { syntheticCluster } from '../../bench/render.js';

const opts: RenderOptions = { nodeName: 'node-0', nodeIPs: ['192.168.0.10'], clusterCIDRs: ['10.0.0.0/8'], randomFully: true, families: ['IPv4'] };
const BUILTIN = /^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /;

/** The kernel's filter and nat tables, canonical, base-chain rules apart. */
async function tables(tools: IptablesTools): Promise<{ ours: string; jumps: string[] }> {
  const lines = canonical(await save(tools), ['filter', 'nat']).split('\n');
  return { ours: lines.filter((l) => !BUILTIN.test(l)).join('\n'), jumps: lines.filter((l) => BUILTIN.test(l)) };
}

for (const backend of ['nft', 'legacy'] as BackendName[]) {
  test(`iptables sync (${backend}): staged, concurrent and partial syncs leave the kernel equal to one restore of the full render`, { timeout: 180_000 }, async () => {
    const topo = new Topology(runPrefix('ks'));
    try {
      const node = await topo.netns('node');
      const ref = await topo.netns('ref');
      const tools = await iptablesTools('IPv4', backend, ['ip', 'netns', 'exec', node.name]);
      const refTools = await iptablesTools('IPv4', backend, ['ip', 'netns', 'exec', ref.name]);
      const expected = async (rs: ReturnType<IncrementalRenderer['full']>): Promise<string> => {
        // Without --noflush: the reference namespace is rebuilt from scratch each time.
        await exec('ip', ['netns', 'exec', ref.name, refTools.restore, '-w', '5'], { input: restorePayload(rs) });
        return (await tables(refTools)).ours;
      };

      let state: ClusterState = syntheticCluster(160);
      const renderer = new IncrementalRenderer('IPv4');
      const tracker = new ChangeTracker('node-0');
      tracker.update(state);
      tracker.take();
      const rs = renderer.full(state, opts);
      // nft: tiny stages, dozens of restores, three at a time. Legacy: its defaults.
      const syncer = new IptablesSyncer(backend === 'nft' ? { tools, stageLines: 60, endpointStageLines: 150, concurrency: 3 } : { tools });
      const first = await syncer.sync(rs, { full: true });
      if (backend === 'nft') assert.ok(first.restores > 20, `expected many staged restores, got ${first.restores}`);
      else assert.equal(first.restores, 2, 'legacy: one restore of everything, then the jump rules');
      const got = await tables(tools);
      assert.equal(got.ours, await expected(rs));
      assert.equal(got.jumps.length, rs.jumps.length, 'each base jump rule once');

      // Partial syncs: an endpoint added, one removed, a service deleted, one created, a NodePort changed.
      const steps: ((s: ClusterState) => void)[] = [
        (s) => {
          const sl = s.endpointSlices[3]!;
          s.endpointSlices[3] = { ...sl, endpoints: [...sl.endpoints, { ...sl.endpoints[0]!, addresses: ['10.200.0.1'] }] };
        },
        (s) => {
          const sl = s.endpointSlices[17]!;
          s.endpointSlices[17] = { ...sl, endpoints: sl.endpoints.slice(1) };
        },
        (s) => {
          s.services.splice(40, 1);
          s.endpointSlices.splice(40, 1);
        },
        (s) => {
          const extra = syntheticCluster(161);
          s.services.push(extra.services[160]!);
          s.endpointSlices.push(extra.endpointSlices[160]!);
        },
        (s) => {
          const svc = s.services[13]!;
          s.services[13] = { ...svc, ports: svc.ports.map((p) => ({ ...p, nodePort: p.nodePort ? p.nodePort + 1 : 0 })) };
        },
      ];
      for (const [i, step] of steps.entries()) {
        state = { ...state, services: [...state.services], endpointSlices: [...state.endpointSlices] };
        step(state);
        tracker.update(state);
        const p = tracker.take();
        assert.ok(p.changed.size > 0, `step ${i} changed something`);
        const next = renderer.partial(state, opts, p.since.keys());
        const r = await syncer.sync(next, { full: false, changed: p.changed });
        assert.equal(r.full, false);
        assert.equal(r.restores, 1, `step ${i}: a small change is one restore`);
        assert.equal((await tables(tools)).ours, await expected(next), `step ${i}`);
      }

      // A periodic full sync afterwards finds nothing to do.
      const again = await syncer.sync(renderer.full(state, opts), { full: true });
      assert.equal(again.restores, 0);
    } finally {
      await topo.destroy();
    }
  });
}
