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
import { iptablesTools, restore, save, type BackendName, type IptablesTools } from '../../src/dataplane/iptables/apply.js';
import { readKernel } from '../../src/dataplane/iptables/sync-read.js';
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

test('iptables sync (nft): a restore failing among concurrent stages leaves no service half-built or reachable, and the next sync completes', { timeout: 120_000 }, async () => {
  const topo = new Topology(runPrefix('kf'));
  try {
    const node = await topo.netns('node');
    const tools = await iptablesTools('IPv4', 'nft', ['ip', 'netns', 'exec', node.name]);
    // Someone else's rule, which must survive everything.
    await restore(tools, '*nat\n:SOMEONE-ELSE - [0:0]\n-A SOMEONE-ELSE -j RETURN\nCOMMIT\n');
    const rs = new IncrementalRenderer('IPv4').full(syntheticCluster(120), opts);
    const victim = [...rs.services[70]!.chains.keys()].find((c) => c.startsWith('KUBE-SVC-'))!;
    let failed = 0;
    const kernel = {
      restore: async (p: string): Promise<void> => {
        // One stage of service chains gets a line iptables-nft rejects: that restore applies nothing.
        if (p.includes(`:${victim} `)) {
          failed++;
          return restore(tools, p.replace(/\nCOMMIT\n/, '\n-A KUBE-NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n'));
        }
        return restore(tools, p);
      },
      read: (precise: (t: string) => string[]) => readKernel(tools, ['filter', 'nat'], precise),
    };
    const syncer = new IptablesSyncer({ tools, stageLines: 60, endpointStageLines: 150, concurrency: 3, kernel });
    await assert.rejects(syncer.sync(rs, { full: true }), /KUBE-NO-SUCH-CHAIN|No chain|does not exist/i);
    assert.equal(failed, 1);
    assert.equal(syncer.needsFull, true);
    const after = canonical(await save(tools), ['nat']);
    assert.doesNotMatch(after, new RegExp(`^:${victim} `, 'm'), 'the failed stage applied nothing');
    assert.doesNotMatch(after, /^-A KUBE-SERVICES /m, 'no service reachable: the KUBE-SERVICES rules come after every service chain');
    assert.match(after, /^-A SOMEONE-ELSE -j RETURN$/m);

    // The next (full) sync, with a working kernel, completes and matches one restore of everything.
    const good = new IptablesSyncer({ tools, stageLines: 60, endpointStageLines: 150, concurrency: 3 });
    await good.sync(rs, { full: true });
    const ref = await topo.netns('ref');
    const refTools = await iptablesTools('IPv4', 'nft', ['ip', 'netns', 'exec', ref.name]);
    await exec('ip', ['netns', 'exec', ref.name, refTools.restore, '-w', '5'], { input: restorePayload(rs) });
    const mine = (await tables(tools)).ours.split('\n').filter((l) => !l.includes('SOMEONE-ELSE')).join('\n');
    assert.equal(mine, (await tables(refTools)).ours);
    assert.match(canonical(await save(tools), ['nat']), /^-A SOMEONE-ELSE -j RETURN$/m);
  } finally {
    await topo.destroy();
  }
});
