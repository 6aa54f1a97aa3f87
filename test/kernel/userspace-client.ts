// Small clients for the userspace-mode tests, usable in-process and as a
// script inside a namespace:
//   node userspace-client.js greet HOST PORT N        → one backend name per line
//   node userspace-client.js bulk HOST PORT BYTES     → "received <bytes>"
//   node userspace-client.js udp HOST PORT N          → one reply per line
//   node userspace-client.js hold HOST PORT MS        → name, then holds the connection MS ms
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

/** Connects, reads the greeting line, closes. Rejects with the socket error (e.g. ECONNRESET). */
export function greet(host: string, port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    s.on('data', (d) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      reject(new Error(`closed before greeting (${JSON.stringify(buf)})`));
    });
  });
}

/** Asks for `bytes` bytes and counts what arrives until the FIN. */
export function bulk(host: string, port: number, bytes: number, timeoutMs = 60_000): Promise<{ name: string; received: number }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    let head = '';
    let name = '';
    let received = 0;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`timeout after ${received} bytes`));
    }, timeoutMs);
    s.on('connect', () => s.write(`SEND ${bytes}\n`));
    s.on('data', (d: Buffer) => {
      if (!name) {
        head += d.toString('latin1');
        const i = head.indexOf('\n');
        if (i < 0) return;
        name = head.slice(0, i);
        received += head.length - i - 1;
        return;
      }
      received += d.length;
    });
    s.on('end', () => {
      clearTimeout(t);
      s.end();
      resolve({ name, received });
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** One UDP datagram and its reply, from a fresh socket (a new client port each time). */
/** Asks for `bytes` and reads them slowly (a pause of pauseMs after every chunk), so the transfer outlasts changes made under it. */
export function slowBulk(host: string, port: number, bytes: number, pauseMs: number): Promise<{ name: string; received: number }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    let name = '';
    let received = 0;
    s.on('connect', () => s.write(`SEND ${bytes}\n`));
    s.on('data', (d: Buffer) => {
      if (!name) {
        const i = d.indexOf(10);
        name = d.subarray(0, i).toString();
        received += d.length - i - 1;
      } else received += d.length;
      s.pause();
      setTimeout(() => s.resume(), pauseMs);
    });
    s.on('end', () => resolve({ name, received }));
    s.on('error', reject);
  });
}

export function udpAsk(host: string, port: number, msg: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      reject(new Error('udp timeout'));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(m.toString());
    });
    s.on('error', (e) => {
      clearTimeout(t);
      s.close();
      reject(e);
    });
    s.send(msg, port, host);
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [cmd, host = '127.0.0.1', portS = '80', nS = '1'] = process.argv.slice(2);
  const port = Number(portS);
  const n = Number(nS);
  try {
    if (cmd === 'greet') {
      for (let i = 0; i < n; i++) {
        try {
          process.stdout.write(`${await greet(host, port)}\n`);
        } catch (e) {
          process.stdout.write(`error ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
        }
      }
    } else if (cmd === 'bulk') {
      const r = await bulk(host, port, n);
      process.stdout.write(`received ${r.received} from ${r.name}\n`);
    } else if (cmd === 'udp') {
      for (let i = 0; i < n; i++) {
        try {
          process.stdout.write(`${await udpAsk(host, port, `ping${i}`)}\n`);
        } catch (e) {
          process.stdout.write(`error ${(e as Error).message}\n`);
        }
      }
    } else if (cmd === 'slowbulk') {
      // Reads with a pause after every chunk, so the transfer lasts long enough to change things under it.
      const r = await slowBulk(host, port, n, 10);
      process.stdout.write(`received ${r.received} from ${r.name}\n`);
    } else if (cmd === 'hold') {
      const s = connect({ host, port });
      s.once('data', (d) => process.stdout.write(d.toString()));
      s.on('error', (e) => process.stdout.write(`error ${(e as NodeJS.ErrnoException).code}\n`));
      setTimeout(() => s.destroy(), n);
    } else {
      throw new Error(`unknown command ${cmd}`);
    }
  } catch (e) {
    process.stdout.write(`error ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    process.exitCode = 1;
  }
}
