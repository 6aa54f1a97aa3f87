// The "container" of a lab pod: answers every TCP (HTTP) request and every UDP
// datagram with one line naming the pod and what it saw, so a client can tell
// which endpoint a Service sent it to and whether its source address survived:
//
//   pod=hello-world-1 ip=10.244.1.2 port=8080 client=172.30.0.100:40312
//
// Usage: node pod-server.js --name POD [--tcp 8080,9000] [--udp 5353]
// Prints "ready" on stdout once every port listens.
import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';

export function answerLine(pod: string, localAddr: string, localPort: number, remoteAddr: string, remotePort: number): string {
  return `pod=${pod} ip=${stripMapped(localAddr)} port=${localPort} client=${stripMapped(remoteAddr)}:${remotePort}\n`;
}

/** Parses an answer line back (the demo and the tests read them). */
export function parseAnswer(line: string): { pod: string; ip: string; port: number; client: string } | undefined {
  const m = /^pod=(\S+) ip=(\S+) port=(\d+) client=(\S+)/.exec(line.trim());
  if (!m) return undefined;
  return { pod: m[1]!, ip: m[2]!, port: Number(m[3]), client: m[4]! };
}

function stripMapped(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function ports(v: string | undefined): number[] {
  if (!v) return [];
  return v.split(',').map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`invalid port "${p}"`);
    return n;
  });
}

async function main(argv: string[]): Promise<void> {
  const opt: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) opt[argv[i]!.replace(/^--/, '')] = argv[i + 1] ?? '';
  const name = opt.name ?? 'pod';
  const tcp = ports(opt.tcp);
  const udp = ports(opt.udp);
  if (tcp.length === 0 && udp.length === 0) tcp.push(8080);
  const waits: Promise<void>[] = [];
  for (const port of tcp) {
    const server = createServer((req, res) => {
      const s = req.socket;
      const body = answerLine(name, s.localAddress ?? '', s.localPort ?? port, s.remoteAddress ?? '', s.remotePort ?? 0);
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Pod-Name': name, Connection: 'close' });
      res.end(body);
    });
    waits.push(new Promise((r) => server.listen({ port, host: '::' }, () => r())));
  }
  for (const port of udp) {
    const sock = createSocket({ type: 'udp6' });
    sock.on('message', (_msg, rinfo) => {
      // The local address of a wildcard UDP socket is not known per datagram; report the port.
      sock.send(answerLine(name, opt.ip ?? '*', port, rinfo.address, rinfo.port), rinfo.port, rinfo.address);
    });
    waits.push(new Promise((r) => sock.bind({ port, address: '::' }, () => r())));
  }
  await Promise.all(waits);
  process.stdout.write('ready\n');
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`pod-server: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
