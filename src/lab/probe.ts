// A client that runs inside a lab namespace (`ip netns exec NS node probe.js …`):
// sends COUNT requests to a URL, each on a new connection (so each one is a new
// conntrack entry and the Service picks an endpoint afresh), and prints one JSON
// line per request: {"i":0,"ok":true,"answer":"pod=… ip=… port=… client=…","ms":3}.
//
// Usage: node probe.js URL [--count N] [--timeout MS]
//   URL: http://IP:PORT/path or udp://IP:PORT
import { request } from 'node:http';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

export interface ProbeResult {
  i: number;
  ok: boolean;
  answer?: string;
  error?: string;
  ms: number;
}

function httpOnce(url: URL, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { Connection: 'close' }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString().trim()));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

function udpOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(msg.toString().trim());
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      sock.close();
      reject(e);
    });
    sock.send('hello\n', port, host);
  });
}

export async function probe(target: string, count: number, timeoutMs: number, onResult: (r: ProbeResult) => void): Promise<void> {
  const url = new URL(target);
  for (let i = 0; i < count; i++) {
    const t0 = Date.now();
    try {
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const answer = url.protocol === 'udp:' ? await udpOnce(host, Number(url.port), timeoutMs) : await httpOnce(url, timeoutMs);
      onResult({ i, ok: true, answer, ms: Date.now() - t0 });
    } catch (e) {
      onResult({ i, ok: false, error: e instanceof Error ? e.message : String(e), ms: Date.now() - t0 });
    }
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const args = process.argv.slice(2);
  const target = args[0];
  const opt = (k: string, d: number) => {
    const i = args.indexOf(k);
    return i >= 0 ? Number(args[i + 1]) : d;
  };
  if (!target) {
    process.stderr.write('usage: probe.js URL [--count N] [--timeout MS]\n');
    process.exit(2);
  }
  probe(target, opt('--count', 1), opt('--timeout', 2000), (r) => process.stdout.write(JSON.stringify(r) + '\n')).catch((e: unknown) => {
    process.stderr.write(`probe: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
