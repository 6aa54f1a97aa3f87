// kproxy's IPVS scheduler models (src/dataplane/schedulers/) against the kernel's:
// one UML boot (Linux 6.1) runs a director (the guest root, ipvsadm virtual services
// with NAT forwarding, one per scheduler/flag case), real servers (addresses in a
// backend namespace, answering with the address they were reached on) and a client
// namespace with 60 source addresses. The guest records which real server the
// kernel chose for every connection (sched-guest.ts); here the same destination
// lists (in the kernel's list order, from `ipvsadm -Ln --nosort`), the same
// connections and the same opens/closes go through the models, connection by
// connection. The counting schedulers also compare the kernel's final
// ActiveConn/InActConn with the counters the replay kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootUml } from './harness.js';
import { cases, dhDst, FWMARK, type KCase, RS_COUNT, rs, SRC_COUNT, src } from './sched-guest.js';
import { replay } from './sched-replay.js';

const root = new URL('../../../', import.meta.url).pathname;
const guest = join(root, 'dist/test/uml/sched-guest.js');

function script(): string {
  const cliAddrs = Array.from({ length: SRC_COUNT }, (_, i) => `addr add ${src(i + 1)}/24 dev c0`).join('\n');
  const srvAddrs = Array.from({ length: RS_COUNT }, (_, i) => `addr add ${rs(i + 1)}/24 dev s0`).join('\n');
  return `set -e
ip netns add cli
ip netns add srv
ip link add c1 type veth peer name c0 netns cli
ip link add s1 type veth peer name s0 netns srv
ip addr add 10.0.0.254/24 dev c1
ip addr add 10.1.0.254/24 dev s1
ip link set c1 up
ip link set s1 up
cat > $D/cli.batch <<'EOF'
${cliAddrs}
link set c0 up
link set lo up
route add default via 10.0.0.254
EOF
cat > $D/srv.batch <<'EOF'
${srvAddrs}
link set s0 up
link set lo up
route add default via 10.1.0.254
EOF
ip -n cli -b $D/cli.batch
ip -n srv -b $D/srv.batch
echo 1 > /proc/sys/net/ipv4/ip_forward
# The virtual addresses are local to the director (AnyIP routes); dh's destinations carry a fwmark.
ip route add local 10.96.0.0/24 dev lo
ip route add local 10.97.0.0/24 dev lo
iptables-legacy -t mangle -A PREROUTING -d 10.97.0.0/24 -p tcp --dport 80 -j MARK --set-mark ${FWMARK}
ip netns exec srv ${process.execPath} ${guest} server > $D/server.log 2>&1 &
for i in $(seq 1 100); do grep -q listening $D/server.log && break; sleep 0.1; done
ip netns exec cli ${process.execPath} ${guest} client $D > $D/client.log 2>&1
`;
}

test('IPVS schedulers: kproxy models vs the kernel (UML 6.1), connection by connection', { timeout: 240_000 }, async () => {
  const t0 = Date.now();
  const uml = await bootUml({ timeoutMs: 200_000, script: script() });
  try {
    const log = `script log:\n${uml.read('script.log')}\nclient log:\n${uml.read('client.log')}\nserver log:\n${uml.read('server.log')}`;
    assert.equal(uml.missingModules, '', 'every module loads');
    assert.equal(uml.status, 0, `the guest script succeeded;\n${log}\nconsole:\n${uml.console.slice(-2000)}`);
    const kernel = JSON.parse(uml.read('kernel.json')) as KCase[];
    // KPROXY_SCHED_DIFF_SAVE=FILE keeps the kernel's record for a look at it offline.
    if (process.env.KPROXY_SCHED_DIFF_SAVE) writeFileSync(process.env.KPROXY_SCHED_DIFF_SAVE, uml.read('kernel.json'));
    console.log(uml.read('client.log').trim());
    assert.equal(kernel.length, cases.length, `every case ran;\n${log}`);

    // The kernel's list is newest first (list_add in __ip_vs_update_dest): what the tracer assumes of a --nosort dump.
    for (const c of cases) {
      const k = kernel.find((x) => x.name === c.name)!;
      const first = k.events[0]!;
      assert.equal(first.t, 'dests');
      if (first.t === 'dests') assert.deepEqual(first.list.map((d) => d.ip), c.dests.map(([i]) => rs(i)).reverse(), `${c.name}: kernel list order is the reverse of the order added`);
    }

    const all: string[] = [];
    const summary: string[] = [];
    for (const k of kernel) {
      const conns = k.events.filter((e) => e.t === 'conn');
      const answered = conns.filter((e) => e.t === 'conn' && e.got).length;
      const r = replay(k.name, k);
      summary.push(`${k.name}: ${r.compared} connections (${answered} answered), ${r.diffs.length} differ${r.counters ? '; counters differ' : ''}`);
      all.push(...r.diffs.slice(0, 3));
      if (r.diffs.length > 3) all.push(`${k.name}: … ${r.diffs.length - 3} more`);
      if (r.counters) all.push(r.counters);
      // Sanity: the hash sweeps must reach more than one server, or the test proves little.
      if (k.name !== 'dh' && conns.length >= SRC_COUNT) assert.ok(new Set(conns.map((e) => e.t === 'conn' && e.got)).size > 1, `${k.name}: more than one server`);
    }
    console.log(summary.join('\n'));
    console.log(`boot + run ${Date.now() - t0} ms; dh destinations ${dhDst(1)}…`);
    assert.deepEqual(all, [], `model/kernel differences (first per case):\n${all.join('\n')}`);
  } finally {
    uml.cleanup();
  }
});
