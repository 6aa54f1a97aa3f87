// Runs a UserspaceProxier inside a namespace for the kernel tests (Node cannot
// enter a namespace itself). Options come as JSON in argv[2]; commands arrive
// as JSON lines on stdin and each gets one JSON line back on stdout:
//   {"cmd":"sync","ports":[…]}  → {"ok":true,"report":{…},"status":[…]}
//   {"cmd":"lb","key":"ns/name:port","protocol":"TCP"} → {"ok":true,"endpoints":[{key,activeConns,inactiveConns}]}
//   {"cmd":"stop"}              → {"ok":true} and exit
import { createInterface } from 'node:readline';
import { UserspaceProxier, type UserspaceOptions } from '../../src/dataplane/userspace/proxier.js';
import type { UsServicePort } from '../../src/dataplane/userspace/model.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as UserspaceOptions;
let proxier: UserspaceProxier;
try {
  proxier = new UserspaceProxier(opts);
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: (e as Error).message }) + '\n');
  process.exit(2);
}
process.stdout.write(JSON.stringify({ ok: true, ready: true, dataPath: proxier.dataPath }) + '\n');
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line) as { cmd: string; ports?: UsServicePort[]; key?: string; protocol?: 'TCP' | 'UDP' };
  try {
    if (msg.cmd === 'sync') {
      const report = await proxier.sync(msg.ports ?? []);
      process.stdout.write(JSON.stringify({ ok: true, report, status: proxier.status() }) + '\n');
    } else if (msg.cmd === 'lb') {
      const lb = proxier.loadBalancer(msg.key ?? '', msg.protocol ?? 'TCP');
      const endpoints = lb ? [...lb.endpoints.values()].map((e) => ({ key: e.key, activeConns: e.activeConns, inactiveConns: e.inactiveConns })) : [];
      process.stdout.write(JSON.stringify({ ok: true, endpoints }) + '\n');
    } else if (msg.cmd === 'stop') {
      await proxier.stop();
      process.stdout.write(JSON.stringify({ ok: true }) + '\n');
      process.exit(0);
    } else {
      throw new Error(`unknown command ${msg.cmd}`);
    }
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: (e as Error).message }) + '\n');
  }
}
await proxier.stop();
