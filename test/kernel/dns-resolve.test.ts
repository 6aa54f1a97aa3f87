// The seeds' scenario in a network namespace that plays the node: `kproxy dns`
// on the kube-dns ClusterIP 10.96.0.10:53 fed by a manifests folder, the
// node's own resolver (dnsmasq on 127.0.0.53:53, which knows no cluster
// names), and `kproxy resolve` walking the pod's resolver for each dnsPolicy.
// glibc itself (getent, through /etc/netns/<ns>/resolv.conf) checks the walk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Topology, waitFor, type Netns } from '../../src/lab/netns.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec:
  clusterIP: 10.96.0.1
  ports: [{name: https, port: 443, targetPort: 6443}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.10
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}, {name: metrics, port: 9153}]
---
apiVersion: v1
kind: Service
metadata: {name: tiller-deploy, namespace: kube-system}
spec:
  clusterIP: 10.108.160.127
  selector: {app: helm}
  ports: [{name: tiller, port: 44134}]
`;

async function resolve(ns: Netns, args: string[]): Promise<{ code: number; out: string }> {
  const r = await ns.exec(process.execPath, [main, 'resolve', ...args], { allowFail: true, timeoutMs: 30_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function digShort(ns: Netns, server: string, name: string): Promise<string> {
  const r = await ns.exec('dig', [`@${server}`, '+short', '+time=1', '+tries=1', name], { allowFail: true, timeoutMs: 5000 });
  return r.stdout.trim();
}

test('kproxy resolve: the seeds\' hostNetwork cases against a real kproxy dns on the kube-dns ClusterIP', async () => {
  const topo = new Topology();
  const dir = mkdtempSync(join(tmpdir(), 'kp-dns-'));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  writeFileSync(join(manifests, 'services.yaml'), SERVICES);
  const hostRc = join(dir, 'host-resolv.conf');
  writeFileSync(hostRc, 'nameserver 127.0.0.53\nsearch hz.ali.com\n');
  let etcNetns: string | undefined;
  try {
    const node = await topo.netns('node');
    await node.ip('addr', 'add', '10.96.0.10/32', 'dev', 'lo');
    topo.track(
      node.spawn('dnsmasq', ['--no-daemon', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.53', '--port=53', '--user=root', '--pid-file=', '--local=/#/']),
    );
    const dns = topo.track(node.spawn(process.execPath, [main, 'dns', '--manifests', manifests, '--listen', '10.96.0.10:53', '--no-forward']));
    let dnsErr = '';
    dns.stderr?.on('data', (d: Buffer) => (dnsErr += d.toString()));
    await waitFor('kproxy dns on 10.96.0.10:53', async () => (await digShort(node, '10.96.0.10', 'kubernetes.default.svc.cluster.local')) === '10.96.0.1', 20_000, 200).catch((e) => {
      throw new Error(`${(e as Error).message}; kproxy dns stderr: ${dnsErr}`);
    });
    await waitFor('dnsmasq on 127.0.0.53:53', async () => (await node.exec('dig', ['@127.0.0.53', '+time=1', '+tries=1', 'x.test'], { allowFail: true })).stdout.includes('NXDOMAIN'), 10_000, 100);

    // hostNetwork + ClusterFirst: kubelet gives the node's resolv.conf, whose resolver knows no cluster names.
    const hostNet = await resolve(node, ['kubernetes', '--namespace', 'default', '--host-network', '--host-resolv-conf', hostRc]);
    assert.equal(hostNet.code, 1, hostNet.out);
    assert.match(hostNet.out, /falls back to Default/);
    assert.match(hostNet.out, /^nameserver 127\.0\.0\.53\nsearch hz\.ali\.com$/m);
    assert.match(hostNet.out, /query kubernetes\.hz\.ali\.com\. A @127\.0\.0\.53 -> NXDOMAIN/);
    assert.match(hostNet.out, /query kubernetes\. A @127\.0\.0\.53 -> NXDOMAIN/);
    assert.match(hostNet.out, /\*\* server can't find kubernetes: NXDOMAIN/);

    // hostNetwork + ClusterFirstWithHostNet: the cluster DNS and search list, as in the seed.
    const withHostNet = await resolve(node, ['kubernetes', '--namespace', 'default', '--host-network', '--dns-policy', 'ClusterFirstWithHostNet', '--host-resolv-conf', hostRc]);
    assert.equal(withHostNet.code, 0, withHostNet.out);
    assert.match(withHostNet.out, /^nameserver 10\.96\.0\.10\nsearch default\.svc\.cluster\.local svc\.cluster\.local cluster\.local hz\.ali\.com\noptions ndots:5$/m);
    assert.match(withHostNet.out, /query kubernetes\.default\.svc\.cluster\.local\. A @10\.96\.0\.10 -> NOERROR \[aa\]: kubernetes\.default\.svc\.cluster\.local A 10\.96\.0\.1/);
    assert.match(withHostNet.out, /Name:\s+kubernetes\.default\.svc\.cluster\.local\nAddress: 10\.96\.0\.1$/m);

    // Another namespace's service: one NXDOMAIN in the pod's own namespace first.
    const tiller = await resolve(node, ['tiller-deploy.kube-system', '--namespace', 'default', '--host-network', '--dns-policy', 'ClusterFirstWithHostNet', '--host-resolv-conf', hostRc]);
    assert.equal(tiller.code, 0, tiller.out);
    const queries = tiller.out.split('\n').filter((l) => l.startsWith('query '));
    assert.equal(queries.length, 2, tiller.out);
    assert.match(queries[0]!, /tiller-deploy\.kube-system\.default\.svc\.cluster\.local\. A @10\.96\.0\.10 -> NXDOMAIN/);
    assert.match(tiller.out, /Address: 10\.108\.160\.127/);

    // glibc agrees: with the pod's resolv.conf in place, getent walks the same search list.
    etcNetns = join('/etc/netns', node.name);
    mkdirSync(etcNetns, { recursive: true });
    writeFileSync(join(etcNetns, 'resolv.conf'), 'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local hz.ali.com\noptions ndots:5\n');
    const getent = await node.exec('getent', ['ahostsv4', 'tiller-deploy.kube-system'], { allowFail: true });
    assert.match(getent.stdout, /^10\.108\.160\.127\s/m, getent.stdout + getent.stderr);
    writeFileSync(join(etcNetns, 'resolv.conf'), 'nameserver 127.0.0.53\nsearch hz.ali.com\n');
    const getentHost = await node.exec('getent', ['ahostsv4', 'kubernetes'], { allowFail: true });
    assert.equal(getentHost.code, 2, 'glibc cannot resolve kubernetes with the node resolv.conf');

    // A new Service file is served within a second of appearing in the folder.
    writeFileSync(
      join(manifests, 'new.yaml'),
      'apiVersion: v1\nkind: Service\nmetadata: {name: fresh, namespace: default}\nspec:\n  clusterIP: 10.96.77.7\n  ports: [{port: 80}]\n',
    );
    const t0 = Date.now();
    await waitFor('fresh.default.svc.cluster.local', async () => (await digShort(node, '10.96.0.10', 'fresh.default.svc.cluster.local')) === '10.96.77.7', 1000, 50);
    assert.ok(Date.now() - t0 <= 1100, `took ${Date.now() - t0} ms`);
  } finally {
    await topo.destroy();
    if (etcNetns) rmSync(etcNetns, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
