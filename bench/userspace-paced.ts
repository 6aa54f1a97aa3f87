// A paced HTTP/1.1 client for the userspace benchmark (wrk2 is not in Debian):
// opens one connection per request at a fixed rate and times each from its
// scheduled start (so a stall is not hidden by sending less), run as
//   node userspace-paced.js HOST PORT RATE SECONDS  → one JSON line of latencies (ms)
import { connect } from 'node:net';

const [host = '127.0.0.1', portS = '80', rateS = '1000', secS = '5'] = process.argv.slice(2);
const port = Number(portS);
const rate = Number(rateS);
const total = Math.round(rate * Number(secS));
const lat: number[] = [];
let errors = 0;
let done = 0;
const t0 = performance.now() + 50;
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

let next = 0;
const tick = (): void => {
  const now = performance.now();
  while (next < total && t0 + (next * 1000) / rate <= now) fire(next++);
  if (next < total) setTimeout(tick, 1);
};
setTimeout(tick, Math.max(0, t0 - performance.now()));
