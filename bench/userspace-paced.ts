// A paced HTTP/1.1 client for the userspace benchmark (wrk2 is not in Debian):
// sends requests at a fixed rate and times each from its scheduled start (so a
// stall is not hidden by sending less), run as
//   node userspace-paced.js HOST PORT RATE SECONDS [close|keepalive:N]  → one JSON line of latencies (ms)
// close: a new connection per request. keepalive:N: N persistent connections,
// one request in flight on each, requests queued when all are busy.
import { connect, type Socket } from 'node:net';

const [host = '127.0.0.1', portS = '80', rateS = '1000', secS = '5', mode = 'close'] = process.argv.slice(2);
const port = Number(portS);
const rate = Number(rateS);
const total = Math.round(rate * Number(secS));
const lat: number[] = [];
let errors = 0;
let done = 0;
const t0 = performance.now() + 300;
const req = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

function fire(i: number): void {
  const scheduled = t0 + (i * 1000) / rate;
  const s = connect({ host, port, noDelay: true });
  let got = 0;
  s.on('connect', () => s.write(req));
  s.on('data', (d) => (got += d.length));
  s.on('close', () => {
    if (got > 0) lat.push(performance.now() - scheduled);
    else errors++;
    if (++done === total) finish();
  });
  s.on('error', () => {});
}

function finish(): void {
  lat.sort((a, b) => a - b);
  const q = (p: number): number => Number((lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN).toFixed(3));
  process.stdout.write(JSON.stringify({ requests: total, ok: lat.length, errors, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1) }) + '\n');
}

interface Conn {
  s: Socket;
  buf: Buffer;
  busy: number | undefined;
}
const queue: number[] = [];
const idle: Conn[] = [];

function send(c: Conn, scheduled: number): void {
  c.busy = scheduled;
  c.s.write(kaReq);
}

const kaReq = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
function openKeepalive(n: number): void {
  for (let i = 0; i < n; i++) {
    const c: Conn = { s: connect({ host, port, noDelay: true }), buf: Buffer.alloc(0), busy: undefined };
    c.s.on('error', () => {});
    c.s.on('connect', () => idle.push(c));
    c.s.on('data', (d: Buffer) => {
      c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
      for (;;) {
        const he = c.buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const m = /content-length:\s*(\d+)/i.exec(c.buf.subarray(0, he).toString('latin1'));
        const end = he + 4 + (m ? Number(m[1]) : 0);
        if (c.buf.length < end) return;
        c.buf = c.buf.subarray(end);
        if (c.busy !== undefined) lat.push(performance.now() - c.busy);
        c.busy = undefined;
        if (++done === total) {
          finish();
          process.exit(0);
        }
        const q = queue.shift();
        if (q !== undefined) send(c, q);
        else idle.push(c);
      }
    });
  }
}

function fireKeepalive(i: number): void {
  const scheduled = t0 + (i * 1000) / rate;
  const c = idle.pop();
  if (c) send(c, scheduled);
  else queue.push(scheduled);
}

const keepalive = /^keepalive:(\d+)$/.exec(mode);
if (keepalive) openKeepalive(Number(keepalive[1]));

let next = 0;
const tick = (): void => {
  const now = performance.now();
  while (next < total && t0 + (next * 1000) / rate <= now) (keepalive ? fireKeepalive : fire)(next++);
  if (next < total) setTimeout(tick, 1);
};
setTimeout(tick, Math.max(0, t0 - performance.now()));
