// Clients and servers the end-to-end kernel tests share: HTTP probes that say
// which pod answered and what it saw, a UDP client with a fixed source port,
// and a pod server started and waited for. Not a test file itself.
import type { Netns, Topology } from '../../src/lab/netns.js';
import { podServerScript, probeNetns } from '../../src/lab/cluster.js';
import { parseAnswer } from '../../src/lab/pod-server.js';

export interface Answer {
  ok: boolean;
  pod?: string;
  /** The address the pod saw the request arrive on. */
  ip?: string;
  /** The client address the pod saw (no port). */
  client?: string;
  error?: string;
  ms: number;
}

/** `count` HTTP requests from `ns`, each on a new connection; one Answer per request. */
export async function probe(ns: Netns, url: string, count = 1, timeoutMs = 1500): Promise<Answer[]> {
  return (await probeNetns(ns.name, url, count, timeoutMs)).map((r) => {
    const a = r.answer ? parseAnswer(r.answer) : undefined;
    // The client's port follows the last colon, which also separates IPv6 groups.
    const client = a ? a.client.slice(0, a.client.lastIndexOf(':')) : undefined;
    return { ok: r.ok, ms: r.ms, ...(a ? { pod: a.pod, ip: a.ip, client } : {}), ...(r.error ? { error: r.error } : {}) };
  });
}

const UDP_FROM_PORT = `
const d = require('node:dgram');
const [host, port, sport] = process.argv.slice(1);
const s = d.createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.bind(Number(sport), () => {
  const t = setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);
  s.on('message', (m) => { clearTimeout(t); console.log(m.toString().trim()); process.exit(0); });
  s.send('hi', Number(port), host);
});`;

/** One UDP datagram from a fixed source port (successive calls share a conntrack entry); the pod that answered, or what came back. */
export async function udpFromPort(ns: Netns, host: string, port: number, sport: number): Promise<string> {
  const r = await ns.exec(process.execPath, ['-e', UDP_FROM_PORT, host, String(port), String(sport)], { allowFail: true, timeoutMs: 10_000 });
  const m = /pod=(\S+)/.exec(r.stdout);
  return m ? m[1]! : r.stdout.trim();
}

/** Starts the lab's pod server in `ns` (tracked by the topology) and waits until it listens. */
export async function startPodServer(topo: Topology, ns: Netns, args: string[], timeoutMs = 15_000): Promise<void> {
  const srv = topo.track(ns.spawnNode(podServerScript, args));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pod server in ${ns.name} did not start`)), timeoutMs);
    srv.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
