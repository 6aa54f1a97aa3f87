// Runs the fake API server (test/support) inside a network namespace for
// run-api.test.ts: prints its kubeconfig path, then applies each JSON line
// read from stdin ({"resource":"endpointslices","obj":{…}}) and prints "ok".
import { createInterface } from 'node:readline';
import { FakeApiServer, type Resource } from '../support/k8s-fake-apiserver.js';

const server = new FakeApiServer();
await server.start();
process.stdout.write(`kubeconfig ${server.writeKubeconfig()}\n`);
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const { resource, obj } = JSON.parse(line) as { resource: Resource; obj: Parameters<FakeApiServer['apply']>[1] };
  server.apply(resource, obj);
  process.stdout.write('ok\n');
});
rl.on('close', () => void server.stop().then(() => process.exit(0)));
