// The userspace proxy driven in-process on loopback (no iptables): listeners,
// schedulers over live connection counts, retries, RST when nothing answers,
// draining, UDP sessions, listeners coming and going, a taken port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { UserspaceProxier, type UserspaceOptions } from '../../src/dataplane/userspace/proxier.js';
import type { UsServicePort } from '../../src/dataplane/userspace/model.js';
import { startBackend, type Backend } from '../kernel/userspace-backend.js';
import { bulk, greet, slowBulk, udpAsk } from '../kernel/userspace-client.js';

function svc(key: string, backends: { port: number }[], extra: Partial<UsServicePort> = {}): UsServicePort {
  return {
    key,
    protocol: 'TCP',
    clusterIP: '10.96.0.10',
    port: 80,
    nodePort: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    sessionAffinity: 'None',
    stickyMaxAgeSeconds: 10800,
    endpoints: backends.map((b) => ({ ip: '127.0.0.1', port: b.port, weight: 1 })),
    ...extra,
  };
}

/** The TCP data path the current test runs on (both() runs each test on each). */
let dataPath: 'handles' | 'net' = 'handles';

/** Registers a test once per TCP data path: Node's TCP handles (the default) and net.Socket (the fallback). */
function both(name: string, fn: () => Promise<void>): void {
  for (const path of ['handles', 'net'] as const) {
    test(`${name} [${path}]`, async () => {
      dataPath = path;
      await fn();
    });
  }
}

async function withProxy(opts: UserspaceOptions, fn: (p: UserspaceProxier) => Promise<void>): Promise<void> {
  const p = new UserspaceProxier({ listenIP: '127.0.0.1', dataPath, ...opts });
  assert.equal(p.dataPath, opts.dataPath ?? dataPath);
  try {
    await fn(p);
  } finally {
    await p.stop();
  }
}

async function backends(n: number): Promise<Backend[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startBackend(`b${i}`)));
}

function portOf(p: UserspaceProxier, key: string, protocol: 'TCP' | 'UDP' = 'TCP'): number {
  const s = p.status().find((x) => x.key === key && x.protocol === protocol);
  assert.ok(s && s.proxyPort > 0, `no listener for ${key}: ${JSON.stringify(p.status())}`);
  return s.proxyPort;
}

async function waitUntil(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function hold(port: number): Promise<{ name: string; sock: Socket }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('data', (d) => resolve({ name: d.toString().trim(), sock }));
    sock.once('error', reject);
  });
}

both('rr spreads new connections evenly; counters return to zero', async () => {
  const bs = await backends(3);
  try {
    await withProxy({ scheduler: 'rr' }, async (p) => {
      await p.sync([svc('default/web', bs)]);
      const port = portOf(p, 'default/web');
      const seen: string[] = [];
      for (let i = 0; i < 30; i++) seen.push(await greet('127.0.0.1', port));
      for (const b of bs) assert.equal(seen.filter((n) => n === b.name).length, 10, seen.join(','));
      // rr walks the list in order
      assert.deepEqual(seen.slice(0, 3), ['b0', 'b1', 'b2']);
      const lb = p.loadBalancer('default/web')!;
      for (let i = 0; i < 50 && [...lb.endpoints.values()].some((e) => e.activeConns + e.inactiveConns); i++) await new Promise((r) => setTimeout(r, 20));
      for (const e of lb.endpoints.values()) assert.deepEqual([e.activeConns, e.inactiveConns], [0, 0], e.key);
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('TCP: half-close passes through and bulk data arrives whole', async () => {
  const bs = await backends(1);
  try {
    await withProxy({}, async (p) => {
      await p.sync([svc('default/echo', bs)]);
      const port = portOf(p, 'default/echo');
      // The client ends its side first; the backend still answers afterwards.
      const reply = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
        let buf = '';
        s.on('data', (d) => (buf += d.toString()));
        s.on('end', () => resolve(buf));
        s.on('error', reject);
        s.end('hello');
      });
      assert.equal(reply, 'b0\nhellobye from b0\n');
      const r = await bulk('127.0.0.1', port, 32 * 1024 * 1024);
      assert.deepEqual(r, { name: 'b0', received: 32 * 1024 * 1024 });
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

/** A backend that runs `onConn` on each connection (for the tests of the data path itself). */
async function rawBackend(onConn: (s: Socket) => void): Promise<{ port: number; close: () => Promise<void>; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as { port: number }).port,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

both('backpressure: a client that does not read stops the backend, and gets everything once it reads', async () => {
  const total = 96 * 1024 * 1024;
  const chunk = Buffer.alloc(256 * 1024, 7);
  let flushed = 0;
  const be = await rawBackend((s) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!s.write(chunk, () => (flushed += chunk.length))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  try {
    await withProxy({}, async (p) => {
      await p.sync([svc('default/bp', [be])]);
      const c = connect({ host: '127.0.0.1', port: portOf(p, 'default/bp') });
      c.pause();
      await new Promise((r) => setTimeout(r, 500));
      // Without backpressure the proxy would have read it all (into its memory); with it,
      // what left the backend is bounded by the socket buffers on the way (a few MB each).
      assert.ok(flushed < 40 * 1024 * 1024, `${flushed} bytes left the backend while the client read nothing`);
      let got = 0;
      c.on('data', (d: Buffer) => (got += d.length));
      c.resume();
      await new Promise<void>((resolve, reject) => {
        c.on('end', resolve);
        c.on('error', reject);
      });
      c.destroy();
      assert.equal(got, total);
    });
  } finally {
    await be.close();
  }
});

both('an abort is passed on as an abort: backend RST → client ECONNRESET, client RST → backend ECONNRESET', async () => {
  const backendErrors: string[] = [];
  const be = await rawBackend((s) => {
    s.on('data', (d: Buffer) => {
      if (d.toString() === 'reset me') s.resetAndDestroy();
    });
    s.on('error', (e: NodeJS.ErrnoException) => backendErrors.push(e.code ?? e.message));
  });
  try {
    await withProxy({}, async (p) => {
      await p.sync([svc('default/rst', [be])]);
      const port = portOf(p, 'default/rst');
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        const c = connect({ host: '127.0.0.1', port });
        c.on('error', resolve);
        c.on('close', () => resolve(undefined));
        c.write('reset me');
      });
      assert.equal(err?.code, 'ECONNRESET');
      const c = connect({ host: '127.0.0.1', port });
      c.on('error', () => {});
      await new Promise<void>((r) => c.once('connect', () => r()));
      await waitUntil(() => be.sockets.size === 1);
      c.write('hello');
      await new Promise((r) => setTimeout(r, 50));
      c.resetAndDestroy();
      await waitUntil(() => backendErrors.includes('ECONNRESET'));
      const lb = p.loadBalancer('default/rst')!;
      await waitUntil(() => [...lb.endpoints.values()].every((e) => e.activeConns + e.inactiveConns === 0));
    });
  } finally {
    await be.close();
  }
});

both('IPv6: a listener on ::1 proxies to an IPv6 endpoint', async () => {
  const b = await startBackend('v6', '::1');
  try {
    await withProxy({ listenIP: '::1' }, async (p) => {
      await p.sync([{ ...svc('default/v6', []), clusterIP: 'fd00::10', endpoints: [{ ip: '::1', port: b.port, weight: 1 }] }]);
      assert.equal(await greet('::1', portOf(p, 'default/v6')), 'v6');
    });
  } finally {
    await b.close();
  }
});

both('lc sends new connections away from the server holding long ones', async () => {
  const bs = await backends(2);
  const held: Socket[] = [];
  try {
    const reg = new Registry();
    await withProxy({ scheduler: 'lc', registry: reg }, async (p) => {
      await p.sync([svc('default/lc', bs)]);
      const port = portOf(p, 'default/lc');
      // Three long connections: b0 (tie → first), b1, b0.
      for (const want of ['b0', 'b1', 'b0']) {
        const h = await hold(port);
        held.push(h.sock);
        assert.equal(h.name, want);
      }
      // b0 holds 2, b1 holds 1: short ones all go to b1 (each closes before the next).
      for (let i = 0; i < 5; i++) assert.equal(await greet('127.0.0.1', port), 'b1');
      const lb = p.loadBalancer('default/lc')!;
      assert.equal(lb.endpoints.get(`127.0.0.1:${bs[0]!.port}`)!.activeConns, 2);
      // The gauge reads the same counters at scrape time.
      const text = await reg.metrics();
      assert.match(text, new RegExp(`kubeproxy_userspace_connections\\{service_port_name="default/lc",endpoint="127.0.0.1:${bs[0]!.port}",state="active"\\} 2`));
    });
  } finally {
    for (const s of held) s.destroy();
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('a refused endpoint is skipped by retry; all endpoints down means RST, quickly', async () => {
  const bs = await backends(2);
  const dead = await deadPort();
  const reg = new Registry();
  try {
    await withProxy({ scheduler: 'rr', registry: reg }, async (p) => {
      const eps = [bs[0]!, { port: dead }, bs[1]!];
      await p.sync([svc('default/retry', eps)]);
      const port = portOf(p, 'default/retry');
      const seen: string[] = [];
      for (let i = 0; i < 12; i++) seen.push(await greet('127.0.0.1', port));
      assert.ok(seen.every((n) => n === 'b0' || n === 'b1'), seen.join(','));
      const text = await reg.metrics();
      assert.match(text, new RegExp(`kubeproxy_userspace_endpoint_dial_failures_total\\{service_port_name="default/retry",endpoint="127.0.0.1:${dead}"\\} [1-9]`));
      assert.match(text, /kubeproxy_userspace_connections_total\{service_port_name="default\/retry",protocol="TCP",result="proxied"\} 12/);

      await p.sync([svc('default/retry', [{ port: dead }])]);
      const t0 = Date.now();
      await assert.rejects(greet('127.0.0.1', port), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
      await p.sync([svc('default/retry', [])]);
      await assert.rejects(greet('127.0.0.1', port), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('session affinity ClientIP keeps a client on one endpoint until the endpoint leaves', async () => {
  const bs = await backends(3);
  try {
    await withProxy({ scheduler: 'rr' }, async (p) => {
      await p.sync([svc('default/sticky', bs, { sessionAffinity: 'ClientIP', stickyMaxAgeSeconds: 60 })]);
      const port = portOf(p, 'default/sticky');
      const first = await greet('127.0.0.1', port);
      for (let i = 0; i < 6; i++) assert.equal(await greet('127.0.0.1', port), first);
      const rest = bs.filter((b) => b.name !== first);
      await p.sync([svc('default/sticky', rest, { sessionAffinity: 'ClientIP', stickyMaxAgeSeconds: 60 })]);
      const next = await greet('127.0.0.1', port);
      assert.notEqual(next, first);
      for (let i = 0; i < 4; i++) assert.equal(await greet('127.0.0.1', port), next);
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('an endpoint removed during a long transfer: the transfer completes; after the grace it is cut', async () => {
  const bs = await backends(2);
  try {
    await withProxy({ scheduler: 'rr', terminationGraceMs: 1500 }, async (p) => {
      await p.sync([svc('default/drain', bs)]);
      const port = portOf(p, 'default/drain');
      // A slow reader keeps the transfer going while the endpoint is removed.
      const done = slowBulk('127.0.0.1', port, 8 * 1024 * 1024, 2);
      await new Promise((r) => setTimeout(r, 100));
      await p.sync([svc('default/drain', [bs[1]!])]);
      assert.equal(await greet('127.0.0.1', port), 'b1');
      const r = await done;
      assert.deepEqual(r, { name: 'b0', received: 8 * 1024 * 1024 });

      // A connection that outlives the grace is cut.
      await p.sync([svc('default/drain', bs)]);
      let h = await hold(port);
      if (h.name !== 'b0') {
        h.sock.destroy();
        h = await hold(port);
      }
      assert.equal(h.name, 'b0');
      const closed = new Promise<number>((resolve) => h.sock.on('close', () => resolve(Date.now())));
      h.sock.on('error', () => {});
      const t0 = Date.now();
      await p.sync([svc('default/drain', [bs[1]!])]);
      const t1 = await closed;
      assert.ok(t1 - t0 >= 1400, `cut after ${t1 - t0} ms`);
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('services added and removed while traffic flows; the others are not disturbed', async () => {
  const bs = await backends(2);
  try {
    await withProxy({}, async (p) => {
      await p.sync([svc('default/a', [bs[0]!]), svc('default/b', [bs[1]!])]);
      const pa = portOf(p, 'default/a');
      const pb = portOf(p, 'default/b');
      const long = bulk('127.0.0.1', pa, 16 * 1024 * 1024);
      let stop = false;
      let ok = 0;
      const loop = (async () => {
        while (!stop && ok < 2000) {
          assert.equal(await greet('127.0.0.1', pa), 'b0');
          ok++;
        }
      })();
      for (let i = 0; i < 5; i++) {
        await p.sync([svc('default/a', [bs[0]!]), svc(`default/c${i}`, [bs[1]!])]);
        const pc = portOf(p, `default/c${i}`);
        assert.equal(await greet('127.0.0.1', pc), 'b1');
        await p.sync([svc('default/a', [bs[0]!])]);
      }
      stop = true;
      await loop;
      assert.ok(ok > 0);
      assert.deepEqual(await long, { name: 'b0', received: 16 * 1024 * 1024 });
      // b's listener is gone: refused.
      await assert.rejects(greet('127.0.0.1', pb), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
      assert.deepEqual(p.status().map((s) => s.key), ['default/a']);
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

both('a proxy port already taken: a clear error for that service, the others work', async () => {
  const bs = await backends(1);
  // A taken port whose neighbour is free. Below the ephemeral range (32768+), so
  // no connection another test opens meanwhile can land on the neighbour.
  const listen = (srv: Server, port: number): Promise<boolean> =>
    new Promise((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
  const squatter = createServer();
  let taken = 0;
  for (let i = 0; i < 50 && !taken; i++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (!(await listen(squatter, port))) continue;
    const probe = createServer();
    if (await listen(probe, port + 1)) taken = port;
    else squatter.close();
    await new Promise((r) => probe.close(r));
  }
  assert.ok(taken, 'found a taken port with a free neighbour');
  try {
    await withProxy({ portRange: { from: taken, to: taken } }, async (p) => {
      const r = await p.sync([svc('default/x', bs)]);
      assert.equal(r.errors.length, 1);
      assert.match(r.errors[0]!, new RegExp(`service default/x \\(TCP\\): cannot open a proxy listener: 127.0.0.1:${taken}: address already in use \\(no free port in --proxy-port-range ${taken}-${taken}\\)`));
    });
    await withProxy({ portRange: { from: taken, to: taken + 1 } }, async (p) => {
      const r = await p.sync([svc('default/a', bs), svc('default/b', bs)]);
      assert.equal(r.errors.length, 1, JSON.stringify(r));
      assert.match(r.errors[0]!, /service default\/b \(TCP\): cannot open a proxy listener/);
      assert.equal(portOf(p, 'default/a'), taken + 1);
      assert.equal(await greet('127.0.0.1', taken + 1), 'b0');
    });
  } finally {
    squatter.close();
    await Promise.all(bs.map((b) => b.close()));
  }
});

test('UDP: per-client sessions through the proxy, idle timeout ends them', async () => {
  const bs = await backends(2);
  try {
    await withProxy({ scheduler: 'rr', udpIdleTimeoutMs: 200 }, async (p) => {
      await p.sync([svc('kube-system/dns', bs, { protocol: 'UDP', port: 53 })]);
      const port = portOf(p, 'kube-system/dns', 'UDP');
      const replies: string[] = [];
      for (let i = 0; i < 4; i++) replies.push(await udpAsk('127.0.0.1', port, `q${i}`));
      assert.deepEqual(replies, ['b0:q0', 'b1:q1', 'b0:q2', 'b1:q3']);
      const lb = p.loadBalancer('kube-system/dns', 'UDP')!;
      const inactive = (): number => [...lb.endpoints.values()].reduce((n, e) => n + e.inactiveConns, 0);
      assert.ok(inactive() > 0);
      for (let i = 0; i < 40 && inactive() > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(inactive(), 0);
    });
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

test('an unknown data path is refused; KPROXY_USERSPACE_DATAPATH=net selects the net path', () => {
  assert.throws(() => new UserspaceProxier({ dataPath: 'fast' as 'net' }), /userspace data path "fast": use handles or net/);
  const before = process.env.KPROXY_USERSPACE_DATAPATH;
  process.env.KPROXY_USERSPACE_DATAPATH = 'net';
  try {
    assert.equal(new UserspaceProxier({}).dataPath, 'net');
  } finally {
    if (before === undefined) delete process.env.KPROXY_USERSPACE_DATAPATH;
    else process.env.KPROXY_USERSPACE_DATAPATH = before;
  }
  // On the Node this project runs on (20), the handle path is there and is the default.
  assert.equal(new UserspaceProxier({}).dataPath, 'handles');
});

test('an unknown scheduler is refused at start with the valid list', () => {
  assert.throws(() => new UserspaceProxier({ scheduler: 'fastest' }), /--ipvs-scheduler: unknown scheduler "fastest"; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, mh/);
  assert.throws(() => new UserspaceProxier({ scheduler: 'sh', schedulerFlags: 'sh-nope' }), /--ipvs-scheduler-flags: unknown scheduler flag "sh-nope"/);
});
