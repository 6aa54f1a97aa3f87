// `kproxy render --proxy-mode ipvs` end to end through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const fixture = fileURLToPath(new URL('../../../test/fixtures/ipvs/node.yaml', import.meta.url));

function kproxy(...args: string[]) {
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 30_000 });
}

test('render --ipvs-scheduler sh and --cluster-cidr change the virtual servers and the ClusterIP masquerade rule', () => {
  const r = kproxy('render', '--proxy-mode', 'ipvs', '--ipvs-scheduler', 'sh', '--cluster-cidr', '10.244.0.0/16', '--hostname-override', 'node-a', fixture);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^-A -t 10\.96\.0\.10:80 -s sh$/m);
  assert.match(r.stdout, /--match-set KUBE-CLUSTER-IP dst,dst ! -s 10\.244\.0\.0\/16 -j KUBE-MARK-MASQ$/m);
});

test('an unknown --ipvs-scheduler is refused, listing the valid ones', () => {
  const r = kproxy('render', '--proxy-mode', 'ipvs', '--ipvs-scheduler', 'fastest', '--hostname-override', 'node-a', fixture);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /unknown scheduler "fastest"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);
  assert.equal(r.stdout, '');
});

test('render --proxy-mode ipvs prints the four parts under headers, byte for byte the reviewed golden output', async () => {
  const { readFileSync } = await import('node:fs');
  const golden = readFileSync(fileURLToPath(new URL('../../../test/fixtures/ipvs/node.expected.txt', import.meta.url)), 'utf8');
  const r = kproxy('render', '--proxy-mode', 'ipvs', '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--random-fully', 'true', fixture);
  assert.equal(r.status, 0, r.stderr);
  const heads = r.stdout.split('\n').filter((l) => l.startsWith('### '));
  assert.deepEqual(heads, [
    '### IPv4: addresses on kube-ipvs0 (ip addr add ADDR dev kube-ipvs0)',
    '### IPv4: IPVS virtual servers (ipvsadm-restore input; scheduler rr)',
    '### IPv4: ipsets (ipset restore input)',
    '### IPv4: iptables (iptables-restore --noflush input)',
  ]);
  assert.match(r.stdout, /^10\.96\.0\.10\/32$/m);
  assert.match(r.stdout, /^-A -u 192\.168\.1\.10:30053 -s rr -p 10800$/m);
  assert.match(r.stdout, /^add KUBE-NODE-PORT-UDP 30053 -exist$/m);
  assert.match(r.stdout, /^-A KUBE-POSTROUTING .* -j MASQUERADE --random-fully$/m);
  assert.equal(r.stdout, golden);
});

test('render --proxy-mode ipvs in-process: dual stack from --node-ip, and a warning only for a family whose NodePorts cannot be placed', async () => {
  const { runRender } = await import('../../src/cli/render.js');
  const dual = await runRender([fixture], { proxyMode: 'ipvs', hostnameOverride: 'node-a', nodeIp: '192.168.1.10,fd00::10', randomFully: 'true' });
  assert.equal(dual.code, 0);
  assert.equal(dual.stderr, '', 'no IPv6 NodePort services, so no IPv6 warning');
  assert.match(dual.stdout, /^### IPv6: IPVS virtual servers \(ipvsadm-restore input; scheduler rr\)$/m);
  const none = await runRender([fixture], { proxyMode: 'ipvs', hostnameOverride: 'elsewhere', randomFully: 'true' });
  assert.match(none.stderr, /IPv4: no node IP of this family: NodePort virtual servers \(and health check ports\) were not rendered/);
  assert.doesNotMatch(none.stdout, /30053/);
});
