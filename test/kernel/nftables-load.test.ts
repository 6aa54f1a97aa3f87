// Every rule form and set kproxy's nftables layout writes, for both
// families, loaded for real with `nft -f` into a namespace of our own: a
// fresh table, then the full-sync transaction on top of the existing table
// (which is what nft 1.0.6 is pickiest about: it re-reads the table's sets
// and rules from the kernel), then a partial sync that adds new shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix } from '../../src/lab/netns.js';
import type { ClusterState, IPFamily } from '../../src/k8s/types.js';
import type { RenderOptions } from '../../src/dataplane/iptables/render.js';
import { familyContext, fixedRules, renderServices } from '../../src/dataplane/nftables/render.js';
import { familyWords } from '../../src/dataplane/nftables/layout.js';
import { TableMirror } from '../../src/dataplane/nftables/table.js';
import { renderNftablesText } from '../../src/dataplane/nftables/text.js';
import { parseNft, traceNft } from '../../src/netfilter/nft-trace.js';
import { ep, makeService, makeSlice, state } from '../unit/iptables-helpers.js';

const NODE = 'node-a';

/** One service of each kind, in both families, with every option the layout has a rule for. */
function everything(v6: boolean, extraEps = 0): ClusterState {
  const a = (i: number) => (v6 ? `fd00:10::${i.toString(16)}` : `10.0.1.${i}`);
  const vip = (i: number) => (v6 ? `fd00:96::${i}` : `172.30.0.${i}`);
  const ext = (i: number) => (v6 ? `2001:db8:99::${i}` : `192.168.99.${i}`);
  const fam = v6 ? ['IPv6' as const] : ['IPv4' as const];
  const svc = (name: string, i: number, f: (s: ReturnType<typeof makeService>) => void) =>
    makeService('ns', name, (s) => {
      s.clusterIPs = [vip(i)];
      s.ipFamilies = fam;
      s.ports = [{ name: 'p', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }];
      f(s);
    });
  const services = [
    svc('cluster', 1, () => {}),
    svc('udp', 2, (s) => (s.ports = [{ name: 'p', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }])),
    svc('sctp', 3, (s) => (s.ports = [{ name: 'p', protocol: 'SCTP', port: 99, targetPort: 99, nodePort: 0 }])),
    svc('np', 4, (s) => {
      s.type = 'NodePort';
      s.ports[0]!.nodePort = 30004;
      s.externalIPs = [ext(4)];
    }),
    svc('local', 5, (s) => {
      s.type = 'LoadBalancer';
      s.externalTrafficPolicy = 'Local';
      s.healthCheckNodePort = 31005;
      s.ports[0]!.nodePort = 30005;
      s.loadBalancerIngress = [{ ip: ext(5) }];
      s.loadBalancerSourceRanges = [v6 ? '2001:db8::/32' : '192.168.0.0/16'];
    }),
    svc('aff', 6, (s) => {
      s.type = 'NodePort';
      s.ports[0]!.nodePort = 30006;
      s.sessionAffinity = 'ClientIP';
      s.sessionAffinityTimeoutSeconds = 60;
    }),
    svc('itp', 7, (s) => (s.internalTrafficPolicy = 'Local')),
    svc('empty', 8, (s) => (s.type = 'NodePort', (s.ports[0]!.nodePort = 30008))),
  ];
  const at = v6 ? 'IPv6' : 'IPv4';
  const e = (n: number, node = NODE) => Array.from({ length: n + extraEps }, (_, i) => ep(a(10 * n + i + 1), { nodeName: i % 2 ? 'other' : node }));
  const slices = [
    makeSlice('ns', 'cluster', 1, e(3), [{ name: 'p', port: 8080 }], at),
    makeSlice('ns', 'udp', 1, e(2), [{ name: 'p', port: 53, protocol: 'UDP' }], at),
    makeSlice('ns', 'sctp', 1, e(1), [{ name: 'p', port: 99, protocol: 'SCTP' }], at),
    makeSlice('ns', 'np', 1, e(2), [{ name: 'p', port: 8080 }], at),
    makeSlice('ns', 'local', 1, e(3), [{ name: 'p', port: 8080 }], at),
    makeSlice('ns', 'aff', 1, e(3), [{ name: 'p', port: 8080 }], at),
    makeSlice('ns', 'itp', 1, e(1, 'other'), [{ name: 'p', port: 8080 }], at),
  ];
  return state(services, slices);
}

function options(family: IPFamily, over: Partial<RenderOptions> = {}): RenderOptions {
  return {
    nodeName: NODE,
    nodeIPs: family === 'IPv4' ? ['192.168.0.2'] : ['2001:db8::2'],
    clusterCIDRs: [family === 'IPv4' ? '10.0.0.0/8' : 'fd00:10::/64'],
    families: [family],
    ...over,
  };
}

test('nft accepts every rule and set of the layout, fresh and on top of an existing table, in both families', { timeout: 60_000 }, async () => {
  const topo = new Topology(runPrefix('nl'));
  try {
    const ns = await topo.netns('node');
    // The tool runs inside the namespace: wrap it.
    const nft = async (text: string) => {
      const r = await ns.exec('nft', ['-f', '-'], { input: text, allowFail: true });
      assert.equal(r.code, 0, `${r.stderr}\n${text.slice(0, 2000)}`);
    };
    for (const family of ['IPv4', 'IPv6'] as const) {
      for (const over of [{}, { masqueradeAll: true, conntrackTCPBeLiberal: true }, { detectLocalMode: 'BridgeInterface' as const, bridgeInterface: 'cbr0', nodePortAddresses: [family === 'IPv4' ? '192.168.0.0/24' : '2001:db8::/64'] }, { detectLocalMode: 'InterfaceNamePrefix' as const, interfaceNamePrefix: 'veth' }]) {
        const w = familyWords(family);
        const st = everything(family === 'IPv6');
        const o = options(family, over);
        const ctx = familyContext(st, o, family);
        const m = new TableMirror(w);
        const f1 = m.full(fixedRules(ctx), renderServices(st, ctx), null);
        await nft(f1.tx.text);
        f1.commit();
        // The full sync of a running node: flush and refill the table that is there.
        const listed = await ns.exec('nft', ['-t', 'list', 'table', w.nft, 'kproxy']);
        const objects = { chains: [...listed.stdout.matchAll(/^\s*chain (\S+)/gm)].map((x) => x[1]!), sets: [...listed.stdout.matchAll(/^\s*(?:set|map) (\S+)/gm)].map((x) => x[1]!) };
        assert.ok(objects.sets.includes('int-aff') && objects.chains.includes('services'));
        const f2 = m.full(fixedRules(ctx), renderServices(st, ctx, m.slotHistory()), objects);
        await nft(f2.tx.text);
        f2.commit();
        // A partial sync that brings new shapes (more endpoints everywhere, affinity slots included).
        const st2 = everything(family === 'IPv6', 2);
        const all = renderServices(st2, ctx, m.slotHistory());
        const tx = m.partial(new Map([...all].map(([k, v]) => [k, v] as const)));
        assert.ok(tx.newRules > 0, 'new shapes came with rules');
        await nft(tx.text);
        const listing = (await ns.exec('nft', ['list', 'table', w.nft, 'kproxy'])).stdout;
        assert.match(listing, family === 'IPv4' ? /dnat ip to ip daddr/ : /dnat ip6 to ip6 daddr/);
        // The tracer reads the kernel's listing as it reads the transaction: the same answers.
        const fromKernel = parseNft((await ns.exec('nft', ['list', 'ruleset'])).stdout);
        const fromText = parseNft(renderNftablesText(st2, o));
        const node = family === 'IPv4' ? '192.168.0.2' : '2001:db8::2';
        const v = (i: number) => (family === 'IPv4' ? `172.30.0.${i}` : `fd00:96::${i}`);
        const lb = family === 'IPv4' ? '192.168.99.5' : '2001:db8:99::5';
        const pkts = [
          { proto: 'tcp' as const, src: family === 'IPv4' ? '203.0.113.9' : '2001:db8:5::9', dst: v(1), dport: 80 },
          { proto: 'udp' as const, src: family === 'IPv4' ? '10.0.1.99' : 'fd00:10::99', dst: v(2), dport: 53 },
          { proto: 'tcp' as const, src: family === 'IPv4' ? '203.0.113.9' : '2001:db8:5::9', dst: node, dport: 30004 },
          { proto: 'tcp' as const, src: family === 'IPv4' ? '192.168.7.7' : '2001:db8:7::7', dst: lb, dport: 80 },
          { proto: 'tcp' as const, src: family === 'IPv4' ? '203.0.113.9' : '2003::9', dst: lb, dport: 80 },
          { proto: 'tcp' as const, src: family === 'IPv4' ? '203.0.113.9' : '2001:db8:5::9', dst: v(8), dport: 80 },
        ];
        const key = (r: ReturnType<typeof traceNft>) => r.outcomes.map((x) => `${x.verdict} ${x.destination} ${x.masquerade}`).sort().join('; ');
        for (const pkt of pkts) {
          const a = traceNft(fromKernel, { ...pkt, localIps: [node] });
          const b = traceNft(fromText, { ...pkt, localIps: [node] });
          assert.equal(key(a), key(b), `${family} ${JSON.stringify(pkt)}`);
          assert.ok(a.outcomes.length >= 1);
        }
        // And nft can still take the table it lists back as input (nft 1.0.6 cannot for some typeofs).
        const back = await ns.exec('nft', ['-c', '-f', '-'], { input: listing, allowFail: true });
        assert.equal(back.code, 0, back.stderr);
        await ns.exec('nft', ['delete', 'table', w.nft, 'kproxy']);
      }
    }
  } finally {
    await topo.destroy();
  }
});
