// The guest side of the scheduler differential test (schedulers-differential.test.ts):
// the scenario (virtual services, real servers, weights, the connection pattern)
// and the two programs that run inside UML:
//   node sched-guest.js server        in the backend namespace: answers every TCP
//                                     connection on :8080 with the address it came to
//   node sched-guest.js client DIR    in the client namespace: sets up IPVS in the
//                                     director (the guest root, through nsenter), runs
//                                     the pattern and writes the kernel's choices to DIR/kernel.json
// The host then replays kernel.json through kproxy's scheduler models.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';

export const RS_PORT = 8080;
export const rs = (i: number): string => `10.1.0.${i}`;
export const RS_COUNT = 6;
export const SRC_COUNT = 60;
export const src = (i: number): string => `10.0.0.${i}`;
/** dh: the fwmark service's destinations (a local route in the director, marked in mangle PREROUTING). */
export const DH_DST_COUNT = 60;
export const dhDst = (i: number): string => `10.97.0.${i}`;
export const FWMARK = 1;

/** One step of a service's plan, run in order by the client. */
export type Step =
  | { op: 'seq'; n: number } // n connections one after another from src(1), each closed before the next
  | { op: 'sweep'; ports?: boolean } // one connection from each source address (ports: a distinct source port each)
  | { op: 'dsweep' } // one connection to each dh destination from src(1)
  | { op: 'add'; rs: number; w: number }
  | { op: 'del'; rs: number | 'last' } // 'last': the server that took the previous connection (rr/wrr's cursor)
  | { op: 'edit'; rs: number | 'last'; w: number }
  | { op: 'hold'; ops: HoldOp[] }; // connections held open and closed in a pattern (the counting schedulers)

/** 'o': open a connection (kept open); a number: close the connection opened at that index. */
export type HoldOp = 'o' | number;

export interface ServiceCase {
  name: string;
  scheduler: string;
  flags?: string;
  /** ipvsadm's service address: TCP VIP:80, or the fwmark. */
  vip?: string;
  fwmark?: number;
  /** Real servers in the order they are added: [server index, weight]. */
  dests: [number, number][];
  steps: Step[];
}

/** A deterministic open/close pattern: 40 opens, with closes of earlier connections mixed in. */
export function holdPattern(): HoldOp[] {
  const ops: HoldOp[] = [];
  const open: number[] = [];
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let k = 0; k < 40; k++) {
    ops.push('o');
    open.push(k);
    if (k % 3 === 2 && open.length > 2) {
      const [c] = open.splice(rand(open.length), 1);
      ops.push(c!);
    }
  }
  return ops;
}

const unequal: [number, number][] = [
  [1, 1],
  [2, 2],
  [3, 3],
  [4, 1],
  [5, 4],
];

export const cases: ServiceCase[] = [
  {
    name: 'rr',
    scheduler: 'rr',
    vip: '10.96.0.1',
    dests: [[1, 1], [2, 1], [3, 1], [4, 1]],
    steps: [
      { op: 'seq', n: 10 },
      { op: 'add', rs: 5, w: 1 },
      { op: 'seq', n: 7 },
      { op: 'del', rs: 'last' },
      { op: 'seq', n: 6 },
      { op: 'del', rs: 1 },
      { op: 'seq', n: 5 },
      { op: 'edit', rs: 3, w: 0 },
      { op: 'seq', n: 5 },
    ],
  },
  {
    name: 'wrr',
    scheduler: 'wrr',
    vip: '10.96.0.2',
    dests: [[1, 4], [2, 3], [3, 2], [4, 1]],
    steps: [
      { op: 'seq', n: 23 },
      { op: 'add', rs: 5, w: 2 },
      { op: 'seq', n: 15 },
      { op: 'edit', rs: 2, w: 6 },
      { op: 'seq', n: 17 },
      { op: 'del', rs: 'last' },
      { op: 'seq', n: 12 },
      { op: 'edit', rs: 1, w: 0 },
      { op: 'seq', n: 10 },
    ],
  },
  {
    name: 'wrr-gcd',
    scheduler: 'wrr',
    vip: '10.96.0.3',
    dests: [[1, 2], [2, 4], [3, 6]],
    steps: [
      { op: 'seq', n: 13 },
      { op: 'add', rs: 4, w: 3 },
      { op: 'seq', n: 16 },
      { op: 'edit', rs: 4, w: 8 },
      { op: 'seq', n: 12 },
    ],
  },
  ...(['lc', 'wlc', 'sed', 'nq'] as const).map(
    (s, i): ServiceCase => ({ name: s, scheduler: s, vip: `10.96.0.${10 + i}`, dests: unequal, steps: [{ op: 'hold', ops: holdPattern() }] }),
  ),
  {
    name: 'sh',
    scheduler: 'sh',
    vip: '10.96.0.20',
    dests: unequal,
    steps: [{ op: 'sweep' }, { op: 'del', rs: 3 }, { op: 'sweep' }, { op: 'edit', rs: 5, w: 0 }, { op: 'sweep' }],
  },
  { name: 'sh-port', scheduler: 'sh', flags: 'sh-port', vip: '10.96.0.21', dests: unequal, steps: [{ op: 'sweep', ports: true }] },
  {
    name: 'sh-fallback',
    scheduler: 'sh',
    flags: 'sh-fallback',
    vip: '10.96.0.22',
    dests: [[1, 1], [2, 2], [3, 0], [4, 1], [5, 3]],
    steps: [{ op: 'sweep' }],
  },
  {
    name: 'dh',
    scheduler: 'dh',
    fwmark: FWMARK,
    dests: [[1, 1], [2, 1], [3, 1], [4, 1], [5, 1]],
    steps: [{ op: 'dsweep' }, { op: 'add', rs: 6, w: 1 }, { op: 'dsweep' }],
  },
  {
    name: 'mh',
    scheduler: 'mh',
    vip: '10.96.0.30',
    dests: unequal,
    steps: [{ op: 'sweep' }, { op: 'del', rs: 2 }, { op: 'sweep' }, { op: 'edit', rs: 4, w: 0 }, { op: 'sweep' }],
  },
  { name: 'mh-port', scheduler: 'mh', flags: 'mh-port', vip: '10.96.0.31', dests: unequal, steps: [{ op: 'sweep', ports: true }] },
  {
    name: 'mh-fallback',
    scheduler: 'mh',
    flags: 'mh-fallback',
    vip: '10.96.0.32',
    dests: [[1, 1], [2, 2], [3, 0], [4, 1], [5, 3]],
    steps: [{ op: 'sweep' }],
  },
];

export interface KDest {
  ip: string;
  port: number;
  weight: number;
  active: number;
  inactive: number;
}
export type KEvent =
  | { t: 'dests'; list: KDest[]; why: string }
  | { t: 'conn'; id: number; src: string; sport?: number; dst: string; got: string | null; err?: string }
  | { t: 'close'; id: number };
export interface KCase {
  name: string;
  events: KEvent[];
  final: KDest[];
}

export function serviceArg(c: ServiceCase): string[] {
  return c.fwmark !== undefined ? ['-f', String(c.fwmark)] : ['-t', `${c.vip}:80`];
}

/** `ipvsadm -Ln --nosort` → destinations per service key ("TCP 10.96.0.1:80" / "FWM 1"), in the kernel's list order. */
export function parseIpvsadmList(text: string): Map<string, KDest[]> {
  const out = new Map<string, KDest[]>();
  let cur: KDest[] | undefined;
  for (const line of text.split('\n')) {
    const svc = /^(TCP|UDP|FWM)\s+(\S+)\s/.exec(line);
    if (svc) {
      cur = [];
      out.set(`${svc[1]} ${svc[2]}`, cur);
      continue;
    }
    const d = /^\s+->\s+([\d.]+):(\d+)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (d && cur) cur.push({ ip: d[1]!, port: Number(d[2]), weight: Number(d[3]), active: Number(d[4]), inactive: Number(d[5]) });
  }
  return out;
}

export function serviceKey(c: ServiceCase): string {
  return c.fwmark !== undefined ? `FWM ${c.fwmark}` : `TCP ${c.vip}:80`;
}

// ---- inside the guest ----

function director(args: string[], input?: string): string {
  return execFileSync('nsenter', ['--net=/proc/1/ns/net', ...args], { input, encoding: 'utf8', timeout: 20_000 });
}

function dump(c: ServiceCase): KDest[] {
  return parseIpvsadmList(director(['ipvsadm', '-Ln', '--nosort'])).get(serviceKey(c)) ?? [];
}

interface Conn {
  sock: net.Socket;
  closed: Promise<void>;
}

/** Opens a connection and waits for the server's line (its address), bounded by 3 s. */
function open(srcIP: string, dst: string, sport?: number): Promise<{ got: string | null; err?: string; conn?: Conn }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: dst, port: 80, localAddress: srcIP, ...(sport ? { localPort: sport } : {}) });
    let buf = '';
    let done = false;
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    const finish = (got: string | null, err?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (got === null) sock.destroy();
      resolve(got === null ? { got, err } : { got, conn: { sock, closed } });
    };
    const timer = setTimeout(() => finish(null, 'timeout'), 3000);
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(buf.slice(0, nl));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish(null, e.code ?? e.message));
  });
}

/** Closes and waits until both sides' FINs went through (the kernel entry is no longer ESTABLISHED), bounded by 3 s. */
async function close(c: Conn): Promise<void> {
  c.sock.end();
  await Promise.race([c.closed, new Promise((r) => setTimeout(r, 3000))]);
}

async function runCase(c: ServiceCase, ports: { next: number }): Promise<KCase> {
  const events: KEvent[] = [];
  const dst = c.vip ?? '';
  let id = 0;
  let last: string | null = null;
  const one = async (srcIP: string, to: string, sport?: number, keep = false): Promise<Conn | undefined> => {
    const r = await open(srcIP, to, sport);
    events.push({ t: 'conn', id: id++, src: srcIP, ...(sport ? { sport } : {}), dst: to, got: r.got, ...(r.err ? { err: r.err } : {}) });
    if (r.got) last = r.got;
    if (r.conn && !keep) {
      await close(r.conn);
      events.push({ t: 'close', id: id - 1 });
      return undefined;
    }
    return r.conn;
  };
  const resolveRs = (x: number | 'last'): string => (x === 'last' ? last ?? rs(1) : rs(x));
  events.push({ t: 'dests', list: dump(c), why: 'initial' });
  for (const s of c.steps) {
    switch (s.op) {
      case 'seq':
        for (let i = 0; i < s.n; i++) await one(src(1), dst);
        break;
      case 'sweep':
        for (let i = 1; i <= SRC_COUNT; i++) await one(src(i), dst, s.ports ? ports.next++ : undefined);
        break;
      case 'dsweep':
        for (let i = 1; i <= DH_DST_COUNT; i++) await one(src(1), dhDst(i));
        break;
      case 'add':
      case 'del':
      case 'edit': {
        let r = s.op === 'add' ? rs(s.rs) : resolveRs(s.rs);
        if (s.op !== 'add' && s.rs !== 'last') {
          // A fixed server already gone (an earlier 'last' took it): the first other one still there that is not the cursor.
          const present = dump(c).map((d) => d.ip);
          if (!present.includes(r)) r = present.find((ip) => ip !== last) ?? r;
        }
        const args = s.op === 'add' ? ['-a', ...serviceArg(c), '-r', `${r}:${RS_PORT}`, '-m', '-w', String(s.w)] : s.op === 'del' ? ['-d', ...serviceArg(c), '-r', `${r}:${RS_PORT}`] : ['-e', ...serviceArg(c), '-r', `${r}:${RS_PORT}`, '-m', '-w', String(s.w)];
        director(['ipvsadm', ...args]);
        events.push({ t: 'dests', list: dump(c), why: `ipvsadm ${args.join(' ')}` });
        break;
      }
      case 'hold': {
        const held = new Map<number, Conn>();
        const ids: number[] = [];
        for (const op of s.ops) {
          if (op === 'o') {
            const myId = id;
            ids.push(myId);
            const conn = await one(src(1), dst, undefined, true);
            if (conn) held.set(ids.length - 1, conn);
          } else {
            const conn = held.get(op);
            if (!conn) continue;
            held.delete(op);
            await close(conn);
            events.push({ t: 'close', id: ids[op]! });
          }
        }
        // A moment for the last state changes, then the counters; the held ones close after the dump.
        await new Promise((r) => setTimeout(r, 200));
        const final = dump(c);
        for (const conn of held.values()) conn.sock.destroy();
        return { name: c.name, events, final };
      }
    }
  }
  return { name: c.name, events, final: dump(c) };
}

async function client(dir: string): Promise<void> {
  const restore: string[] = [];
  for (const c of cases) {
    const svc = serviceArg(c).join(' ');
    restore.push(`-A ${svc} -s ${c.scheduler}${c.flags ? ` -b ${c.flags}` : ''}`);
    for (const [i, w] of c.dests) restore.push(`-a ${svc} -r ${rs(i)}:${RS_PORT} -m -w ${w}`);
  }
  director(['ipvsadm-restore'], restore.join('\n') + '\n');
  writeFileSync(`${dir}/ipvsadm-initial.txt`, director(['ipvsadm', '-Ln', '--nosort']));
  const out: KCase[] = [];
  const ports = { next: 31000 };
  const started = Date.now();
  for (const c of cases) {
    const t = Date.now();
    out.push(await runCase(c, ports));
    console.log(`case ${c.name}: ${Date.now() - t} ms`);
    if (Date.now() - started > 150_000) {
      console.log('time bound reached; remaining cases skipped');
      break;
    }
  }
  writeFileSync(`${dir}/kernel.json`, JSON.stringify(out));
  writeFileSync(`${dir}/ipvsadm-final.txt`, director(['ipvsadm', '-Ln', '--nosort']));
}

function server(): void {
  net
    .createServer((s) => {
      s.on('error', () => {});
      s.write(`${s.localAddress}\n`);
    })
    .listen(RS_PORT, '0.0.0.0', () => console.log('listening'));
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  if (process.argv[2] === 'server') server();
  else if (process.argv[2] === 'client')
    client(process.argv[3]!).then(
      () => process.exit(0),
      (e) => {
        console.error(e);
        process.exit(1);
      },
    );
}
