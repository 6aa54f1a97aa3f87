// kproxy doctor on a real lab node: healthy → ok; each seed problem made on
// purpose → doctor names exactly that problem, and running its printed fix
// makes the check pass again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { labUp, labDown, kproxyMain, type LabState } from '../../src/lab/cluster.js';
import { exec } from '../../src/util/exec.js';
import { waitFor } from '../../src/lab/netns.js';
import type { Report } from '../../src/doctor/report.js';
import type { CheckResult } from '../../src/doctor/check.js';

const manifests = `
apiVersion: v1
kind: Node
metadata: { name: n1, labels: { topology.kubernetes.io/zone: a } }
spec: { podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24] }
status: { addresses: [{ type: InternalIP, address: 192.168.56.11 }] }
---
apiVersion: v1
kind: Node
metadata: { name: n2, labels: { topology.kubernetes.io/zone: a } }
spec: { podCIDR: 10.244.2.0/24, podCIDRs: [10.244.2.0/24] }
status: { addresses: [{ type: InternalIP, address: 192.168.56.12 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: default, labels: { app: web } }
spec: { nodeName: n1, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
status: { phase: Running, podIP: 10.244.1.5, conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: default, labels: { app: web } }
spec: { nodeName: n2, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
status: { phase: Running, podIP: 10.244.2.5, conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }]
---
# A hostNetwork endpoint on the other node (seed 001 §4): its address is n2's own.
apiVersion: v1
kind: Service
metadata: { name: hostnet, namespace: default }
spec:
  type: NodePort
  clusterIP: 10.96.0.60
  ports: [{ port: 90, targetPort: 9090, nodePort: 30090 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: hostnet-1, namespace: default, labels: { kubernetes.io/service-name: hostnet } }
addressType: IPv4
ports: [{ port: 9090, protocol: TCP }]
endpoints:
- addresses: [192.168.56.12]
  nodeName: n2
  conditions: { ready: true }
---
apiVersion: v1
kind: Service
metadata: { name: kubernetes, namespace: default }
spec:
  clusterIP: 10.96.0.1
  ports: [{ name: https, port: 443, targetPort: 6443 }]
---
apiVersion: v1
kind: Service
metadata: { name: kube-dns, namespace: kube-system }
spec:
  clusterIP: 10.96.0.10
  ports: [{ name: dns, port: 53, protocol: UDP }]
`;

function check(r: Report, id: string): CheckResult {
  const c = r.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${r.checks.map((x) => x.id).join(', ')}`);
  return c!;
}

test('kproxy doctor on a lab node', { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-doctor-'));
  writeFileSync(join(dir, 'cluster.yaml'), manifests);
  const name = `dr${randomBytes(3).toString('hex')}`;
  const stateDir = join(dir, 'state');
  let lab: LabState | undefined;
  try {
    lab = await labUp({ name, manifests: dir, stateDir, dataplane: 'run', runArgs: ['--iptables-sync-period', '1h'] });
    const n1 = lab.nodes.find((n) => n.name === 'n1')!;
    const inNode = (cmd: string) => exec('ip', ['netns', 'exec', n1.netns, 'sh', '-c', cmd], { allowFail: true });
    const resolv = join(dir, 'resolv.conf');
    writeFileSync(resolv, `nameserver ${n1.gateway}\n`);
    // The cluster DNS for the DNS check: kproxy dns on n1's bridge address.
    const dns = exec('ip', ['netns', 'exec', n1.netns, process.execPath, kproxyMain, 'dns', '--manifests', lab.generated, '--listen', `${n1.gateway}:53`, '--no-forward'], {
      allowFail: true,
      timeoutMs: 280_000,
    });
    const doctor = async (...extra: string[]): Promise<{ report: Report; code: number }> => {
      const r = await exec(
        'ip',
        ['netns', 'exec', n1.netns, process.execPath, kproxyMain, 'doctor', '--json', '--manifests', lab!.generated, '--hostname-override', 'n1', '--node-ip', n1.ip, '--cluster-cidr', lab!.clusterCIDR, '--resolv-conf', resolv, '--cluster-dns', n1.gateway, ...extra],
        { allowFail: true, timeoutMs: 60_000 },
      );
      assert.ok(r.stdout.trim().startsWith('{'), `doctor printed no JSON (exit ${r.code}): ${r.stderr}`);
      return { report: JSON.parse(r.stdout) as Report, code: r.code };
    };
    /** Runs the printed fix inside the node (`kproxy` means this build). */
    const applyFix = async (c: CheckResult) => {
      assert.ok(c.fix, `${c.id} has no fix`);
      const cmd = c.fix!.replaceAll('kproxy run', `${process.execPath} ${kproxyMain} run`);
      const r = await inNode(cmd);
      assert.equal(r.code, 0, `fix "${cmd}" failed: ${r.stderr}`);
    };
    await waitFor('kproxy dns to answer', async () => (await inNode(`dig +time=1 +tries=1 @${n1.gateway} kube-dns.kube-system.svc.cluster.local +short`)).stdout.includes('10.96.0.10'), 20_000, 200);
    await waitFor('the agent to be healthy', async () => (await inNode('wget -q -O - http://127.0.0.1:10256/healthz 2>/dev/null || curl -s http://127.0.0.1:10256/healthz')).stdout.includes('"healthy":true') || (await fetchHealth(inNode)), 20_000, 200).catch(() => undefined);

    await t.test('a healthy node: every check ok', async () => {
      const { report, code } = await doctor();
      const bad = report.checks.filter((c) => c.status !== 'ok' && c.status !== 'skip');
      assert.deepEqual(bad.map((c) => `${c.id}: ${c.evidence.join(' | ')}`), []);
      assert.equal(code, 0);
      for (const id of ['kernel.ip_forward', 'kernel.br_netfilter', 'rules.jumps.ipv4', 'rules.canary.ipv4', 'drift.ipv4', 'reach.routes', 'reach.nodeport_forward', 'dns.pod_view', 'agent.healthz'])
        assert.equal(check(report, id).status, 'ok', id);
    });

    const broken = async (id: string, breakIt: string, more: (c: CheckResult, r: Report) => void = () => {}) => {
      const b = await inNode(breakIt);
      assert.equal(b.code, 0, b.stderr);
      const { report, code } = await doctor();
      const c = check(report, id);
      assert.equal(c.status, 'fail', `${id}: ${c.evidence.join(' | ')}`);
      assert.equal(code, 1);
      more(c, report);
      await applyFix(c);
      const after = await doctor();
      assert.equal(check(after.report, id).status, 'ok', `${id} after the fix: ${check(after.report, id).evidence.join(' | ')}`);
    };

    await t.test('forwarding off', () => broken('kernel.ip_forward', 'sysctl -qw net.ipv4.ip_forward=0', (c) => assert.match(c.fix!, /ip_forward=1/)));

    await t.test('bridge-nf-call-iptables off', () =>
      broken('kernel.br_netfilter', 'sysctl -qw net.bridge.bridge-nf-call-iptables=0', (c) => assert.match(c.evidence.join('\n'), /cni0/)),
    );

    await t.test('rules in the other iptables backend', () =>
      broken('rules.backends.ipv4', 'iptables-legacy -t nat -N KUBE-SERVICES && iptables-legacy -t nat -A KUBE-SERVICES -d 10.96.0.50 -p tcp -j DNAT --to-destination 10.244.1.99:8080', (c) =>
        assert.match(c.evidence.join('\n'), /legacy backend also holds/),
      ),
    );

    await t.test('an endpoint chain left behind after its Service is gone', () =>
      broken(
        'drift.ipv4',
        'iptables -t nat -N KUBE-SEP-LEFTBEHINDAAAAAA && iptables -t nat -A KUBE-SEP-LEFTBEHINDAAAAAA -m comment --comment default/gone -p tcp -j DNAT --to-destination 10.244.1.5:8080',
        (c) => assert.match(c.evidence.join('\n'), /stale chain KUBE-SEP-LEFTBEHINDAAAAAA \(default\/gone\)/),
      ),
    );

    await t.test('a DNAT destination with no route', async () => {
      await inNode('ip route del default; ip route del 10.244.2.0/24');
      await broken('reach.routes', 'true', (c) => {
        assert.match(c.evidence.join('\n'), /10\.244\.2\.5:8080/);
        assert.equal(c.fix, `ip route add 10.244.2.0/24 via 192.168.56.12`);
      });
      await inNode(`ip route add default via ${lab!.router}`);
    });

    await t.test('FORWARD policy DROP with a hostNetwork endpoint on the other node', async () => {
      await broken(
        'reach.nodeport_forward',
        'iptables -P FORWARD DROP && iptables -D FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        (c, r) => {
          const ev = c.evidence.join('\n');
          assert.match(ev, /default\/hostnet.*NodePort tcp\/30090.*192\.168\.56\.12:9090, a hostNetwork endpoint on another node/);
          assert.match(ev, /FORWARD/);
          assert.equal(check(r, 'rules.forward_policy.ipv4').status, 'fail');
        },
      );
      // Put the jump back too, so later checks see a whole ruleset.
      await inNode('iptables -I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD');
    });

    await t.test('a resolv.conf pointing at a dead server', async () => {
      writeFileSync(resolv, 'nameserver 10.244.1.254\n');
      const { report } = await doctor('--dns-policy', 'Default');
      const c = check(report, 'dns.pod_view');
      assert.equal(c.status, 'fail');
      assert.match(c.evidence.join('\n'), /10\.244\.1\.254/);
      await applyFix(c);
      assert.equal(check((await doctor('--dns-policy', 'Default')).report, 'dns.pod_view').status, 'ok');
    });

    await t.test('a hostNetwork pod with dnsPolicy ClusterFirst (seed 001 §3)', async () => {
      writeFileSync(resolv, 'nameserver 10.244.1.254\n');
      const { report } = await doctor('--host-network');
      const c = check(report, 'dns.pod_view');
      assert.equal(c.status, 'fail');
      assert.match(c.fix!, /ClusterFirstWithHostNet/);
      assert.equal(check((await doctor('--host-network', '--dns-policy', 'ClusterFirstWithHostNet')).report, 'dns.pod_view').status, 'ok');
    });
    void dns;
  } finally {
    if (lab) await labDown(name, stateDir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});

async function fetchHealth(inNode: (cmd: string) => Promise<{ stdout: string }>): Promise<boolean> {
  const r = await inNode(`${process.execPath} -e "fetch('http://127.0.0.1:10256/healthz').then(r=>r.text()).then(t=>console.log(t)).catch(()=>{})"`);
  return r.stdout.includes('"healthy":true');
}
