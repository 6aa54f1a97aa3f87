// `kproxy run --kubeconfig` against the fake API server (list/watch), both
// inside one network namespace: the rules follow the API's objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Topology, runPrefix, waitFor } from '../../src/lab/netns.js';
import { kproxyMain } from '../../src/lab/cluster.js';

const helper = fileURLToPath(new URL('./run-apiserver-helper.js', import.meta.url));

function slice(ips: string[]) {
  return {
    metadata: { name: 'web-x', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: '', port: 8080, protocol: 'TCP' }],
  };
}

test('kproxy run --kubeconfig programs what the API server says, and follows its watch', { timeout: 90_000 }, async () => {
  const topo = new Topology(runPrefix('ka'));
  let logs = '';
  try {
    const node = await topo.netns('node');
    const api: ChildProcess = topo.track(node.spawnNode(helper, [], { stdio: ['pipe', 'pipe', 'pipe'] }));
    let out = '';
    api.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    api.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    await waitFor('the fake API server', () => out.includes('kubeconfig '), 20_000, 50);
    const kubeconfig = /kubeconfig (\S+)/.exec(out)![1]!;
    const send = (resource: string, obj: unknown) => api.stdin!.write(JSON.stringify({ resource, obj }) + '\n');
    send('nodes', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.78.10' }] } });
    send('services', { metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.1.10', clusterIPs: ['10.96.1.10'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] } });
    send('endpointslices', slice(['10.244.1.21']));
    const agent = topo.track(
      node.spawn(process.execPath, [kproxyMain, 'run', '--kubeconfig', kubeconfig, '--hostname-override', 'node-a', '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--v=1']),
    );
    agent.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
    agent.stdout!.resume();
    const nat = async () => (await node.exec('iptables-save', ['-t', 'nat'])).stdout;
    await waitFor('rules for the service', async () => /-d 10\.96\.1\.10\/32 .*default\/web cluster IP/.test(await nat()), 30_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs.slice(-3000)}`);
    });
    assert.match(await nat(), /--to-destination 10\.244\.1\.21:8080/);
    // A watch event moves the endpoint.
    send('endpointslices', slice(['10.244.1.22', '10.244.1.23']));
    await waitFor('the new endpoints', async () => {
      const n = await nat();
      return n.includes('10.244.1.22:8080') && n.includes('10.244.1.23:8080') && !n.includes('10.244.1.21:8080');
    }, 15_000, 100);
    // Node IP from the Node object (no --node-ip): the info line says so.
    assert.match(logs, /"nodeIPs":\["192\.168\.78\.10"\]/);
    agent.kill('SIGTERM');
    await waitFor('the agent to stop', () => agent.exitCode !== null, 10_000, 50);
    assert.equal(agent.exitCode, 0);
  } finally {
    await topo.destroy();
  }
});
