// `kproxy render`: the examples, flags, --config, --strict, bad input, proxy modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRender } from '../../src/cli/render.js';

const root = new URL('../../../', import.meta.url).pathname;
const hello = join(root, 'examples/hello-world');
const main = join(root, 'dist/src/cli/main.js');

test('hello-world example renders for k8s-n-1 with node IP from the Node object', async () => {
  const r = await runRender([hello], { hostnameOverride: 'k8s-n-1', clusterCidr: '10.244.0.0/16', randomFully: 'false' });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, '');
  const out = r.stdout;
  assert.ok(out.startsWith('*filter\n'));
  assert.ok(out.includes('-A KUBE-NODEPORTS -m comment --comment default/hello-world-service -m tcp -p tcp --dport 30001 -j KUBE-EXT-I6CTHWSTJGL5RHWT\n'));
  assert.ok(out.includes('-A KUBE-SERVICES -m comment --comment "default/hello-world-service cluster IP" -m tcp -p tcp -d 10.96.103.220 --dport 4000 -j KUBE-SVC-I6CTHWSTJGL5RHWT\n'));
  assert.ok(out.includes('--probability 0.3333333333 -j KUBE-SEP-'));
  assert.ok(out.includes('--to-destination 10.244.2.3:8080'));
  assert.ok(out.includes('--mark 0x00004000/0x00004000'), 'real kube-proxy formats the mark with %#08x');
  // Deterministic: two renders are identical.
  const again = await runRender([hello], { hostnameOverride: 'k8s-n-1', clusterCidr: '10.244.0.0/16', randomFully: 'false' });
  assert.equal(again.stdout, out);
});

test('--nodeport-addresses primary uses the node IP from the Node object; --raw keeps write order', async () => {
  const r = await runRender([hello], { hostnameOverride: 'k8s-n-2', nodeportAddresses: 'primary', randomFully: 'false', raw: true });
  assert.ok(r.stdout.includes('-d 192.168.56.12 -j KUBE-NODEPORTS\n'));
  assert.ok(r.stdout.trimEnd().split('\n').at(-2)!.includes('this must be the last rule'));
});

test('--config file, flags override it; unknown node warns', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-render-'));
  const cfg = join(dir, 'kp.yaml');
  writeFileSync(cfg, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nhostnameOverride: k8s-n-1\nclusterCIDR: 10.244.0.0/16\niptables:\n  masqueradeAll: true\n');
  let r = await runRender([hello], { config: cfg, randomFully: 'false' });
  assert.ok(r.stdout.includes('--dport 4000 -j KUBE-MARK-MASQ\n'), 'masqueradeAll from the config');
  r = await runRender([hello], { config: cfg, masqueradeAll: false, randomFully: 'false' });
  assert.ok(r.stdout.includes('--dport 4000 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n'));
  r = await runRender([hello], { hostnameOverride: 'nowhere', randomFully: 'false' });
  assert.match(r.stderr, /no node IPs: no Node named "nowhere"/);
  assert.equal(r.code, 0);
  r = await runRender([hello], { hostnameOverride: 'nowhere', randomFully: 'false', strict: true });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
});

test('bad input: warned and skipped (named file, document, field); --strict fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-render-'));
  writeFileSync(
    join(dir, 'svc.yaml'),
    [
      'apiVersion: v1\nkind: Service\nmetadata: {name: good, namespace: default}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}\n',
      'apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: default}\nspec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}\n',
    ].join('---\n'),
  );
  const r = await runRender([dir], { nodeIp: '192.168.0.10', randomFully: 'false' });
  assert.equal(r.code, 0);
  assert.match(r.stderr, /svc\.yaml#1/);
  assert.ok(r.stdout.includes('"default/good has no endpoints"'));
  assert.ok(!r.stdout.includes('default/bad'));
  const s = await runRender([dir], { nodeIp: '192.168.0.10', randomFully: 'false', strict: true });
  assert.equal(s.code, 1);
});

test('proxy modes render cannot do are refused clearly', async () => {
  await assert.rejects(runRender([hello], { proxyMode: 'userspace', nodeIp: '10.0.0.1' }), /--proxy-mode userspace: kproxy render supports iptables, ipvs, nftables/);
});

test('the kproxy binary: dual-stack output has one header per family; errors exit non-zero', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-render-'));
  writeFileSync(
    join(dir, 'ds.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: {name: ds, namespace: default}\nspec:\n  clusterIP: 10.96.0.5\n  clusterIPs: [10.96.0.5, "fd00::5"]\n  ipFamilies: [IPv4, IPv6]\n  ports: [{name: http, port: 80}]\n',
  );
  const r = spawnSync(process.execPath, [main, 'render', '--node-ip', '192.168.0.10,2001:db8::10', '--random-fully', 'false', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.equal(lines[0], '# IPv4');
  assert.ok(lines.includes('# IPv6'));
  assert.ok(r.stdout.includes('-d fd00::5 --dport 80'));
  const bad = spawnSync(process.execPath, [main, 'render', '--iptables-masquerade-bit', 'x', dir], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--iptables-masquerade-bit takes an integer/);
  const missing = spawnSync(process.execPath, [main, 'render', join(dir, 'nope')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read .*nope/);
});
