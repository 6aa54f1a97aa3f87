import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { ServiceHealthServer, serviceHealthBody, serviceHealthResponse } from '../../src/server/service-health.js';

test('body is upstream’s tab-indented JSON with no trailing newline', () => {
  assert.equal(
    serviceHealthBody('ns1', 'svc1', 2, true),
    '{\n\t"service": {\n\t\t"namespace": "ns1",\n\t\t"name": "svc1"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}',
  );
});

test('200 only with local endpoints and a healthy proxy; weight header carries the count', () => {
  const ok = serviceHealthResponse('ns1/svc1', 3, true);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.headers, {
    'Content-Type': 'application/json',
    'X-Content-Type-Options': 'nosniff',
    'X-Load-Balancing-Endpoint-Weight': '3',
  });
  assert.equal(serviceHealthResponse('ns1/svc1', 0, true).status, 503);
  assert.equal(serviceHealthResponse('ns1/svc1', 0, true).headers['X-Load-Balancing-Endpoint-Weight'], '0');
  assert.equal(serviceHealthResponse('ns1/svc1', 3, false).status, 503);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
}

test('real sockets: servers open and close with services; endpoints counted; listen failure reported', async () => {
  let healthy = true;
  const failures: string[] = [];
  const hcs = new ServiceHealthServer({
    nodeIPs: ['127.0.0.1'],
    isHealthy: () => healthy,
    hostname: 'node-a',
    onListenError: (e) => failures.push(e.message),
  });
  const p1 = await freePort();
  const p2 = await freePort();
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(p2, '127.0.0.1', () => r()));
  try {
    await hcs.syncServices(new Map([['ns1/svc1', { port: p1 }], ['ns2/svc2', { port: p2 }]]));
    assert.deepEqual([...hcs.open()], [['ns1/svc1', p1]]);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!, /^node node-a failed to start healthcheck "ns2\/svc2" on port \d+: cannot listen on .*EADDRINUSE/);

    let res = await fetch(`http://127.0.0.1:${p1}/`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('x-load-balancing-endpoint-weight'), '0');
    assert.equal(await res.text(), serviceHealthBody('ns1', 'svc1', 0, true));

    hcs.syncEndpoints(new Map([['ns1/svc1', 2], ['other/x', 5]]));
    res = await fetch(`http://127.0.0.1:${p1}/anything`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-load-balancing-endpoint-weight'), '2');
    assert.equal(await res.text(), serviceHealthBody('ns1', 'svc1', 2, true));

    healthy = false;
    res = await fetch(`http://127.0.0.1:${p1}/`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), serviceHealthBody('ns1', 'svc1', 2, false));
    healthy = true;

    // The blocker goes away: the next sync retries and opens it.
    await new Promise<void>((r) => blocker.close(() => r()));
    await hcs.syncServices(new Map([['ns1/svc1', { port: p1 }], ['ns2/svc2', { port: p2 }]]));
    assert.equal(hcs.open().size, 2);
    hcs.syncEndpoints(new Map([['ns2/svc2', 1]]));
    res = await fetch(`http://127.0.0.1:${p1}/`);
    assert.equal(res.status, 503, 'services missing from syncEndpoints drop to 0');
    await res.text();

    // Removing a service closes its port.
    await hcs.syncServices(new Map([['ns2/svc2', p2]]));
    await assert.rejects(fetch(`http://127.0.0.1:${p1}/`));
    res = await fetch(`http://127.0.0.1:${p2}/`);
    assert.equal(res.status, 200);
    await res.text();
  } finally {
    await hcs.close();
    blocker.close();
  }
});
