// `kproxy trace` end to end: formats, stdin, listings with --table, and errors with exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const SEEDS = fileURLToPath(new URL('../../../test/fixtures/seeds/', import.meta.url));

function kproxy(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [MAIN, 'trace', ...args], { input, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('text, json and mermaid for the seed pod-check NodePort', () => {
  const base = ['--rules', `${SEEDS}004-pod-check.save`, '--dst', '192.168.1.11:32239', '--local-ip', '192.168.1.11'];
  const text = kproxy(base);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /Outcome 1 of 3: probability 33\.33% \(0\.33333333349\)/);
  assert.match(text.out, /nat\/KUBE-SEP-I57WEEY5SFOMRE2L:57 .* ⇒ DNAT 192\.168\.1\.11:32239 → 10\.244\.169\.191:80/);
  const json = JSON.parse(kproxy([...base, '--format', 'json']).out);
  assert.equal(json.version, 1);
  assert.deepEqual(
    json.outcomes.map((o: { destination: string; masquerade: boolean; verdict: string }) => [o.verdict, o.destination, o.masquerade]),
    [['ACCEPT', '10.244.169.176:80', true], ['ACCEPT', '10.244.169.177:80', true], ['ACCEPT', '10.244.169.191:80', true]],
  );
  for (const k of ['probability', 'verdict', 'destination', 'masquerade', 'source', 'uncertain', 'path']) assert.ok(k in json.outcomes[0], k);
  assert.deepEqual(Object.keys(json.outcomes[0].path[1]).slice(0, 5), ['kind', 'table', 'chain', 'line', 'rule']);
  assert.match(kproxy([...base, '--format', 'mermaid']).out, /^flowchart TD\n/);
});

test('stdin, listings, --table, --reply, --recent and inferred node addresses', () => {
  const listing = 'Chain OUTPUT (policy ACCEPT)\ntarget prot opt source destination\nDNAT tcp -- 0.0.0.0/0 10.0.0.1 tcp dpt:80 to:10.9.9.9:8080\n';
  const r = kproxy(['--rules', '-', '--table', 'nat', '--dst', '10.0.0.1:80', '--from', 'local', '--src', '10.1.1.1', '--reply', '--format', 'json'], listing);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.outcomes[0].destination, '10.9.9.9:8080');
  assert.equal(j.outcomes[0].reply[0].source, '10.0.0.1:80');
  const inferred = kproxy(['--rules', `${SEEDS}002-nat-router.save`, '--dst', '60.1.1.1:80', '--src', '8.8.8.8', '--from', 'eth1']);
  assert.match(inferred.out, /Node addresses \(inferred from the dump; give --local-ip to be sure\): 60\.1\.1\.1, 10\.1\.1\.254/);
});

test('bad input: a clear message naming the line, non-zero exit', () => {
  const bad = kproxy(['--rules', '-', '--dst', '1.2.3.4:80'], '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j NOWHERE\nCOMMIT\n');
  assert.equal(bad.code, 1);
  assert.match(bad.err, /stdin: line 3: jump to chain "NOWHERE"/);
  const trunc = kproxy(['--rules', '-', '--dst', '1.2.3.4:80'], '*nat\n:PREROUTING ACCEPT [0:0]\n');
  assert.equal(trunc.code, 1);
  assert.match(trunc.err, /has no COMMIT: the dump is truncated/);
  assert.equal(kproxy(['--rules', `${SEEDS}004-pod-check.save`, '--dst', '1.2.3.4']).code, 1);
  assert.equal(kproxy(['--rules', `${SEEDS}004-pod-check.save`, '--dst', '1.2.3.4:80', '--format', 'xml']).code, 1);
  assert.equal(kproxy(['--rules', '/nonexistent', '--dst', '1.2.3.4:80']).code, 1);
  const loop = kproxy(['--rules', '-', '--dst', '1.2.3.4:80'], '*filter\n:FORWARD ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A A -j B\n-A B -j A\nCOMMIT\n');
  assert.equal(loop.code, 0);
  assert.match(loop.out, /LOOP/);
});
