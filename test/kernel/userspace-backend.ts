// A tiny backend for the userspace-mode tests: TCP and UDP on one port. TCP
// greets with its name, then answers "SEND <n>\n" with n bytes and a FIN and
// echoes anything else; UDP replies "<name>:<message>". Imported in-process by
// the unit tests, and run as a script inside namespaces by the kernel tests:
//   node userspace-backend.js NAME HOST PORT
import { createServer, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

export interface Backend {
  name: string;
  port: number;
  tcp: Server;
  udp: UdpSocket;
  sockets: Set<Socket>;
  /** Connections accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

export async function startBackend(name: string, host = '127.0.0.1', port = 0): Promise<Backend> {
  const sockets = new Set<Socket>();
  const b = { name, sockets, accepted: 0 } as Backend;
  const tcp = createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(`${name}\n`);
    let buf = '';
    let sending = false;
    s.on('data', (d: Buffer) => {
      if (sending) return;
      buf += d.toString('latin1');
      const m = /^SEND (\d+)\n/.exec(buf);
      if (m) {
        sending = true;
        let left = Number(m[1]);
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
        return;
      }
      if (buf.length > 16 && !buf.startsWith('SEND')) {
        s.write(buf);
        buf = '';
      } else if (buf.includes('\n') && !buf.startsWith('SEND')) {
        s.write(buf);
        buf = '';
      }
    });
    s.on('end', () => {
      if (buf && !sending) s.write(buf);
      if (!sending) s.end(`bye from ${name}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen({ host, port }, () => resolve());
  });
  const a = tcp.address();
  b.port = typeof a === 'object' && a ? a.port : port;
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (msg, r) => udp.send(`${name}:${msg.toString()}`, r.port, r.address));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind({ address: host, port: b.port }, () => resolve());
  });
  Object.assign(b, {
    tcp,
    udp,
    close: async () => {
      for (const s of sockets) s.destroy();
      udp.close();
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  });
  return b;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [name = 'backend', host = '0.0.0.0', port = '8080'] = process.argv.slice(2);
  const b = await startBackend(name, host, Number(port));
  process.stdout.write(`listening ${b.name} ${host}:${b.port}\n`);
}
