// `kproxy run --proxy-mode ipvs` for real, with traffic, inside User-mode Linux
// (this host's kernel has no IPVS and no dummy interfaces; see harness.ts).
// ONE boot runs every case: the guest's root namespace is the node (eth0
// 192.168.77.10 towards a client namespace, bridge cbr0 10.244.1.1/24 with
// three pod namespaces, each running the lab's pod server), kproxy watches a
// manifests folder under $D, and the script writes what each case saw into
// $D; the subtests below assert on those files, in the script's order:
// ClusterIP from a pod and from the node (rr: an exact even split), NodePort
// (masqueraded) and eTP=Local (source kept, local endpoint only), ClientIP
// persistence, a service without endpoints (refused at once), scaling by
// rewriting an EndpointSlice file with graceful termination of the removed
// real server, SIGKILL of the agent (rules stay), and --cleanup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootUml, type UmlRun } from './harness.js';
import { parseAnswer } from '../../src/lab/pod-server.js';

const root = new URL('../../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');
const podServer = join(root, 'dist/src/lab/pod-server.js');
const probe = join(root, 'dist/src/lab/probe.js');
const helper = join(root, 'dist/test/uml/ipvs-e2e-helper.js');

const NODE_IP = '192.168.77.10';
const CLIENT_IP = '192.168.77.2';
const BRIDGE_IP = '10.244.1.1';
const POD_IP: Record<string, string> = { 'pod-1': '10.244.1.11', 'pod-2': '10.244.1.12', 'pod-3': '10.244.1.13' };
/** Connections per traffic count: rr over two servers must split them exactly. */
const N = 20;

// ---- manifests ----------------------------------------------------------------

const tcp80 = { port: 80, targetPort: 8080, protocol: 'TCP' };
function service(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec };
}
function slice(svc: string, eps: { ip: string; node?: string }[]) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc}-x`, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: true }, nodeName: e.node ?? 'node-a' })),
    ports: [{ name: '', port: 8080, protocol: 'TCP' }],
  };
}
const list = (items: object[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 1);
const pods = (...names: string[]) => names.map((n) => ({ ip: POD_IP[n]! }));

function writeManifests(src: string): void {
  writeFileSync(
    join(src, 'all.json'),
    list([
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: 'node-a' },
        spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
        status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] },
      },
      service('web', { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ ...tcp80, nodePort: 30080 }] }),
      service('local', { type: 'NodePort', clusterIP: '10.96.0.11', externalTrafficPolicy: 'Local', ports: [{ ...tcp80, nodePort: 30081 }] }),
      slice('local', [...pods('pod-1'), { ip: '10.244.2.9', node: 'node-b' }]),
      service('aff', { clusterIP: '10.96.0.14', sessionAffinity: 'ClientIP', ports: [tcp80] }),
      slice('aff', pods('pod-1', 'pod-2', 'pod-3')),
      service('empty', { clusterIP: '10.96.0.15', ports: [tcp80] }),
      // Only the held connections ever reach it: graceful termination waits for them alone (every
      // probed service has TIME_WAIT entries, which IPVS counts as InActConn for 2 minutes).
      service('drain', { clusterIP: '10.96.0.20', ports: [tcp80] }),
    ]),
  );
  // The slices scaling rewrites, in a file of their own: pod-1 goes and pod-3 comes.
  writeFileSync(join(src, 'web-slice.json'), list([slice('web', pods('pod-1', 'pod-2')), slice('drain', pods('pod-1', 'pod-2'))]));
  writeFileSync(join(src, 'web-slice-scaled.json'), list([slice('web', pods('pod-2', 'pod-3')), slice('drain', pods('pod-2', 'pod-3'))]));
}

// ---- the guest's script ------------------------------------------------------------

function script(src: string): string {
  const kproxy = `${process.execPath} ${main}`;
  return `
set -u
NODE=${process.execPath}
M=$D/manifests
mkdir -p $M
ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(ms)
# probe NS|- URL COUNT OUT [TIMEOUT_MS]: one JSON line per connection into $D/OUT.jsonl
probe() {
  if [ "$1" = - ]; then $NODE ${probe} $2 --count $3 --timeout \${5:-2000} > $D/$4.jsonl 2>&1
  else ip netns exec $1 $NODE ${probe} $2 --count $3 --timeout \${5:-2000} > $D/$4.jsonl 2>&1; fi
}
# wait_for SECONDS CMD...: polls CMD every 0.2 s; prints the ms it took, or "timeout"
wait_for() {
  local n=$(( $1 * 5 )) t=$(ms); shift
  for i in $(seq 1 $n); do if "$@"; then echo $(( $(ms) - t )); return 0; fi; sleep 0.2; done
  echo timeout; return 1
}

# --- topology: node = this namespace; a client outside; three pods on a bridge
ip netns add client
ip link add eth0 type veth peer name eth0 netns client
ip addr add ${NODE_IP}/24 dev eth0; ip link set eth0 up
ip -n client link set lo up; ip -n client addr add ${CLIENT_IP}/24 dev eth0; ip -n client link set eth0 up
ip -n client route add default via ${NODE_IP}
ip route add default via ${CLIENT_IP}
ip link add cbr0 type bridge; ip addr add ${BRIDGE_IP}/24 dev cbr0; ip link set cbr0 up
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
for i in 1 2 3; do
  ip netns add pod-$i
  ip link add vp$i type veth peer name eth0 netns pod-$i
  ip link set vp$i master cbr0; ip link set vp$i type bridge_slave hairpin on; ip link set vp$i up
  ip -n pod-$i link set lo up; ip -n pod-$i addr add 10.244.1.1$i/24 dev eth0; ip -n pod-$i link set eth0 up
  ip -n pod-$i route add default via ${BRIDGE_IP}
  ip netns exec pod-$i $NODE ${podServer} --name pod-$i --ip 10.244.1.1$i --tcp 8080 > $D/pod-$i.log 2>&1 &
done
for i in 1 2 3; do wait_for 30 grep -q ready $D/pod-$i.log > /dev/null || echo "pod-$i did not start"; done
echo "topology ready after $(( $(ms) - T0 )) ms"

# --- foreign state kproxy must not own: an iptables chain and an IPVS service (kept by --ipvs-exclude-cidrs)
iptables-legacy -t nat -N FOREIGN-CHAIN
iptables-legacy -t nat -A FOREIGN-CHAIN -s 10.123.0.0/16 -j RETURN
ipvsadm -A -t 10.123.0.1:80 -s rr
ipvsadm -Sn > $D/ipvs-0.txt

# --- the agent
cp ${src}/all.json ${src}/web-slice.json $M/
${kproxy} run --proxy-mode ipvs --iptables-backend legacy --manifests $M --hostname-override node-a \\
  --cluster-cidr 10.244.0.0/16 --ipvs-exclude-cidrs 10.123.0.0/16 --iptables-min-sync-period 100ms --iptables-sync-period 5s \\
  --v 1 --healthz-bind-address "" --metrics-bind-address "" > $D/run.log 2>&1 &
P=$!
TA=$(ms)
wait_for 90 grep -q "synced all rules" $D/run.log > $D/first-sync-ms.txt
echo "agent synced after $(( $(ms) - TA )) ms"
ipvsadm -Sn > $D/ipvs-1.txt
iptables-legacy-save > $D/ipt-1.txt
ip -o addr show dev kube-ipvs0 > $D/addr-1.txt

# --- traffic
probe pod-3 http://10.96.0.10/ ${N} clusterip-pod
probe - http://10.96.0.10/ ${N} clusterip-node
probe client http://${NODE_IP}:30080/ 6 nodeport
probe client http://${NODE_IP}:30081/ 6 local
probe pod-3 http://10.96.0.14/ 10 aff
probe pod-3 http://10.96.0.15/ 1 empty 3000
ipvsadm -Ln --stats > $D/stats-1.txt
echo "traffic cases done after $(( $(ms) - T0 )) ms"

# --- scaling with an open connection on each web real server
rm -f $D/release
ip netns exec pod-3 $NODE ${helper} hold 10.96.0.20 80 2 $D/release > $D/hold.log 2>&1 &
H=$!
wait_for 15 grep -q held $D/hold.log > /dev/null
ipvsadm -Ln > $D/before-scale-ln.txt
cp ${src}/web-slice-scaled.json $D/.web.tmp && mv $D/.web.tmp $M/web-slice.json
has_scaled() { ipvsadm -Sn | grep -q -- "-a -t 10.96.0.10:80 -r 10.244.1.13:8080 -m -w 1" && ipvsadm -Sn | grep -q -- "-a -t 10.96.0.20:80 -r 10.244.1.13:8080 -m -w 1"; }
wait_for 30 has_scaled > $D/scale-ms.txt
sleep 0.5
ipvsadm -Sn > $D/ipvs-scaled.txt
ipvsadm -Ln > $D/ipvs-scaled-ln.txt
probe - http://10.96.0.10/ ${N} scaled
touch $D/release
wait_for 10 sh -c "! kill -0 $H 2>/dev/null" > /dev/null
ipvsadm -Lnc > $D/conns-released.txt
drained() { ! ipvsadm -Sn | grep -q -- "-t 10.96.0.20:80 -r 10.244.1.11:8080"; }
wait_for 60 drained > $D/drain-ms.txt
ipvsadm -Sn > $D/ipvs-drained.txt
ipvsadm -Lnc > $D/conns-drained.txt
echo "scaling done after $(( $(ms) - T0 )) ms"

# --- SIGKILL the agent: the kernel keeps the rules
kill -9 $P
wait_for 10 sh -c "! kill -0 $P 2>/dev/null" > /dev/null
probe - http://10.96.0.10/ 4 killed-clusterip
probe client http://${NODE_IP}:30080/ 4 killed-nodeport

# --- --cleanup
TC=$(ms)
${kproxy} run --cleanup --proxy-mode ipvs --iptables-backend legacy > $D/cleanup.log 2>&1
echo $? > $D/cleanup-rc.txt
echo $(( $(ms) - TC )) > $D/cleanup-ms.txt
{ ip link show kube-ipvs0 2>&1; true; } > $D/cleanup-link.txt
ipvsadm -Sn > $D/cleanup-ipvs.txt
ipset list -n > $D/cleanup-ipsets.txt
iptables-legacy-save > $D/cleanup-ipt.txt
echo "all done after $(( $(ms) - T0 )) ms"
`;
}

// ---- reading the results ------------------------------------------------------------

interface Hit {
  ok: boolean;
  pod?: string;
  client?: string;
  error?: string;
  ms: number;
}

function hits(uml: UmlRun, name: string): Hit[] {
  const out: Hit[] = [];
  for (const line of uml.read(`${name}.jsonl`).split('\n').filter(Boolean)) {
    try {
      const r = JSON.parse(line) as { ok: boolean; answer?: string; error?: string; ms: number };
      const a = r.answer ? parseAnswer(r.answer) : undefined;
      out.push({ ok: r.ok, ms: r.ms, ...(a ? { pod: a.pod, client: a.client.slice(0, a.client.lastIndexOf(':')) } : {}), ...(r.error ? { error: r.error } : {}) });
    } catch {
      out.push({ ok: false, ms: 0, error: `not a probe line: ${line}` });
    }
  }
  return out;
}

function perPod(h: Hit[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of h) if (x.ok) c[x.pod!] = (c[x.pod!] ?? 0) + 1;
  return c;
}

test('kproxy run --proxy-mode ipvs with real traffic on a real IPVS kernel (UML 6.1), one boot', { timeout: Number(process.env.KPROXY_UML_TIMEOUT_MS ?? 260_000) + 40_000 }, async (t) => {
  const src = mkdtempSync(join(tmpdir(), 'kproxy-uml-src-'));
  mkdirSync(src, { recursive: true });
  writeManifests(src);
  const started = Date.now();
  let uml: UmlRun;
  try {
    uml = await bootUml({ timeoutMs: Number(process.env.KPROXY_UML_TIMEOUT_MS ?? 260_000), script: script(src) });
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
  const bootMs = Date.now() - started;
  const { read } = uml;
  /** What to show when a case fails: the script's log and the agent's, tails. */
  const ctx = (...files: string[]): string =>
    [
      ...files.map((f) => `--- ${f}:\n${read(f).slice(-2500)}`),
      `--- script.log:\n${read('script.log').slice(-2000)}`,
      `--- run.log:\n${read('run.log').slice(-3000)}`,
    ].join('\n');
  const show = (h: Hit[]): string => JSON.stringify(h.map((x) => (x.ok ? `${x.pod}<-${x.client}` : `ERR ${x.error} (${x.ms} ms)`)));
  try {
    t.diagnostic(`boot to power-off: ${bootMs} ms; ${read('script.log').match(/agent synced after \d+ ms/)?.[0] ?? 'no sync'}; ${read('script.log').match(/all done after \d+ ms/)?.[0] ?? ''}`);

    await t.test('the guest ran the whole script and the agent synced', () => {
      assert.equal(uml.missingModules, '', 'every module loads');
      assert.equal(uml.status, 0, `script status; ${ctx()}\nconsole:\n${uml.console.slice(-1500)}`);
      assert.match(read('script.log'), /all done after/, ctx());
      assert.match(read('run.log'), /synced all rules/, ctx());
      assert.doesNotMatch(read('run.log'), /"level":"error"/, ctx());
      const ipvs = read('ipvs-1.txt');
      assert.ok(ipvs.includes('-A -t 10.96.0.14:80 -s rr -p 10800'), `aff persistence:\n${ipvs}`);
      assert.ok(ipvs.includes('-A -t 10.96.0.15:80 -s rr'), `the empty service has a virtual server:\n${ipvs}`);
      assert.doesNotMatch(ipvs, /-t 10\.96\.0\.15:80 -r/, `and no real servers:\n${ipvs}`);
      assert.ok(ipvs.includes(`-a -t ${NODE_IP}:30081 -r 10.244.1.11:8080 -m -w 1`), ipvs);
      assert.doesNotMatch(ipvs, new RegExp(`-t ${NODE_IP.replace(/\./g, '\\.')}:30081 -r 10\\.244\\.2\\.9`), `eTP=Local: no remote endpoint on the node port:\n${ipvs}`);
      assert.match(read('addr-1.txt'), /inet 10\.96\.0\.10\/32/);
    });

    await t.test('ClusterIP from a pod and from the node: both backends, rr splits evenly', () => {
      for (const name of ['clusterip-pod', 'clusterip-node']) {
        const h = hits(uml, name);
        assert.equal(h.length, N, `${name}: ${N} results; ${ctx(`${name}.jsonl`)}`);
        assert.ok(h.every((x) => x.ok), `${name}: every connection answered: ${show(h)}\n${ctx('stats-1.txt')}`);
        assert.deepEqual(perPod(h), { 'pod-1': N / 2, 'pod-2': N / 2 }, `${name}: rr split over pod-1/pod-2: ${show(h)}`);
      }
      // The pod keeps its address (the cluster CIDR is not masqueraded); the node's own connections are.
      assert.ok(hits(uml, 'clusterip-pod').every((x) => x.client === POD_IP['pod-3']), show(hits(uml, 'clusterip-pod')));
    });

    await t.test('NodePort from outside is masqueraded; eTP=Local keeps the client address and uses the local endpoint only', () => {
      const np = hits(uml, 'nodeport');
      assert.ok(np.length === 6 && np.every((x) => x.ok), `NodePort answered: ${show(np)}\n${ctx('ipt-1.txt')}`);
      assert.ok(np.every((x) => x.client === BRIDGE_IP), `masqueraded to the node's address on the pod network (${BRIDGE_IP}): ${show(np)}`);
      assert.deepEqual(Object.keys(perPod(np)).sort(), ['pod-1', 'pod-2'], show(np));
      const local = hits(uml, 'local');
      assert.ok(local.length === 6 && local.every((x) => x.ok && x.pod === 'pod-1' && x.client === CLIENT_IP), `eTP=Local: pod-1, source ${CLIENT_IP} kept: ${show(local)}\n${ctx()}`);
    });

    await t.test('sessionAffinity ClientIP: every connection lands on the same backend', () => {
      const h = hits(uml, 'aff');
      assert.ok(h.length === 10 && h.every((x) => x.ok), show(h));
      assert.equal(new Set(h.map((x) => x.pod)).size, 1, `persistent: ${show(h)}`);
    });

    await t.test('a service without endpoints refuses at once (IPVS answers ICMP port unreachable), no hang', () => {
      const [e] = hits(uml, 'empty');
      assert.ok(e, ctx('empty.jsonl'));
      assert.equal(e.ok, false, `no endpoints, yet answered: ${show([e])}`);
      assert.match(e.error ?? '', /ECONNREFUSED/, show([e]));
      assert.ok(e.ms < 1000, `refused fast: ${e.ms} ms`);
    });

    await t.test('scaling: the rewritten EndpointSlice reaches IPVS within seconds; the removed server drains at weight 0, then goes', () => {
      const before = read('before-scale-ln.txt');
      assert.match(read('hold.log'), /held 2/, ctx('hold.log'));
      const scaleMs = read('scale-ms.txt').trim();
      assert.match(scaleMs, /^\d+$/, `pod-3 never showed up in IPVS: ${ctx('ipvs-scaled.txt')}`);
      const scaled = read('ipvs-scaled.txt');
      assert.ok(scaled.includes('-a -t 10.96.0.10:80 -r 10.244.1.13:8080 -m -w 1'), `pod-3 added:\n${scaled}`);
      assert.ok(scaled.includes('-a -t 10.96.0.20:80 -r 10.244.1.11:8080 -m -w 0'), `drain: pod-1 quiesced (weight 0) while its held connection is open:\n${scaled}\nbefore:\n${before}\nafter:\n${read('ipvs-scaled-ln.txt')}\n${ctx()}`);
      const h = hits(uml, 'scaled');
      assert.ok(h.length === N && h.every((x) => x.ok), show(h));
      assert.deepEqual(perPod(h), { 'pod-2': N / 2, 'pod-3': N / 2 }, `traffic on the new set only: ${show(h)}`);
      const drainMs = read('drain-ms.txt').trim();
      assert.match(drainMs, /^\d+$/, `pod-1 was never deleted after its connection closed:\n${read('ipvs-drained.txt')}\nconnections:\n${read('conns-drained.txt')}\n${ctx()}`);
      assert.doesNotMatch(read('ipvs-drained.txt'), /-t 10\.96\.0\.20:80 -r 10\.244\.1\.11:8080/, read('ipvs-drained.txt'));
      assert.ok(read('ipvs-drained.txt').includes('-a -t 10.96.0.20:80 -r 10.244.1.12:8080 -m -w 1'), `pod-2 kept its weight:\n${read('ipvs-drained.txt')}`);
      // A sync here costs seconds (each ipset/iptables/ipvsadm call is a process on a slow 1-CPU kernel,
      // slower still when the host is busy): the bound is loose, the figure is reported.
      assert.ok(Number(scaleMs) < 45_000, `IPVS followed the file in ${scaleMs} ms; ${ctx()}`);
      t.diagnostic(`scale seen in IPVS after ${scaleMs} ms; pod-1 deleted ${drainMs} ms after its connection was reset`);
    });

    await t.test('after SIGKILL of the agent, traffic still flows', () => {
      const c = hits(uml, 'killed-clusterip');
      const np = hits(uml, 'killed-nodeport');
      assert.ok(c.length === 4 && c.every((x) => x.ok && ['pod-2', 'pod-3'].includes(x.pod!)), `ClusterIP: ${show(c)}`);
      assert.ok(np.length === 4 && np.every((x) => x.ok && ['pod-2', 'pod-3'].includes(x.pod!)), `NodePort: ${show(np)}`);
    });

    await t.test("--cleanup removes kube-ipvs0, IPVS services, ipsets and KUBE-* chains; a foreign chain stays", () => {
      assert.equal(read('cleanup-rc.txt').trim(), '0', ctx('cleanup.log'));
      assert.match(read('cleanup-link.txt'), /does not exist/, `kube-ipvs0 gone: ${read('cleanup-link.txt')}`);
      const ipvs = read('cleanup-ipvs.txt');
      // Upstream cleanupLeftovers flushes the whole IPVS table (ipvs.Flush()), the foreign service included.
      assert.doesNotMatch(ipvs, /^-[Aa] /m, `IPVS table empty after --cleanup (upstream flushes it):\n${ipvs}`);
      assert.doesNotMatch(read('cleanup-ipsets.txt'), /KUBE-/, read('cleanup-ipsets.txt'));
      const ipt = read('cleanup-ipt.txt');
      assert.doesNotMatch(ipt, /KUBE-/, `no KUBE-* chains or jumps:\n${ipt}`);
      assert.match(ipt, /^:FOREIGN-CHAIN /m, `foreign chain kept:\n${ipt}`);
      assert.match(ipt, /-A FOREIGN-CHAIN -s 10\.123\.0\.0\/16 -j RETURN/, ipt);
      t.diagnostic(`--cleanup took ${read('cleanup-ms.txt').trim()} ms`);
    });

    await t.test('the foreign IPVS service in --ipvs-exclude-cidrs survived every sync', () => {
      for (const f of ['ipvs-0.txt', 'ipvs-1.txt', 'ipvs-scaled.txt', 'ipvs-drained.txt']) assert.match(read(f), /-A -t 10\.123\.0\.1:80 -s rr/, `${f}:\n${read(f)}`);
    });
  } finally {
    uml.cleanup();
  }
});
