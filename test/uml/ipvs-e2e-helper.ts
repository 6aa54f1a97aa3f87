// Run inside the UML guest by ipvs-e2e.test.ts's script (not a test file):
//
//   node ipvs-e2e-helper.js hold HOST PORT COUNT RELEASE_FILE
//
// opens COUNT TCP connections to HOST:PORT (each a new IPVS connection, so rr
// spreads them), prints "held N" once all are up and keeps them open and idle
// until RELEASE_FILE exists (polled, bounded to 90 s), then resets them (RST:
// IPVS moves them to CLOSE, which expires in 10 s, unlike FIN's TIME_WAIT of
// 2 min) and exits. That is the open connection graceful termination waits for.
import { connect, type Socket } from 'node:net';
import { existsSync } from 'node:fs';

async function hold(host: string, port: number, count: number, release: string): Promise<void> {
  const socks: Socket[] = [];
  for (let i = 0; i < count; i++) {
    socks.push(
      await new Promise<Socket>((resolve, reject) => {
        const s = connect({ host, port });
        const t = setTimeout(() => reject(new Error(`connect ${host}:${port} timed out`)), 5000);
        s.once('connect', () => {
          clearTimeout(t);
          resolve(s);
        });
        s.once('error', reject);
      }),
    );
  }
  for (const s of socks) s.on('error', () => undefined);
  process.stdout.write(`held ${socks.length}\n`);
  const deadline = Date.now() + 90_000;
  while (!existsSync(release) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const s of socks) s.resetAndDestroy();
  process.stdout.write(existsSync(release) ? 'released\n' : 'gave up waiting for the release file\n');
  setTimeout(() => process.exit(0), 200);
}

const [cmd, host, port, count, release] = process.argv.slice(2);
if (cmd === 'hold' && host && port && count && release) {
  hold(host, Number(port), Number(count), release).catch((e: unknown) => {
    process.stderr.write(`hold: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: ipvs-e2e-helper.js hold HOST PORT COUNT RELEASE_FILE\n');
  process.exit(2);
}
