// `kproxy trace --packets`: many packets, one load of the dump, one JSON result
// a line, each the same as tracing that packet alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');
const dump = join(root, 'test/fixtures/seeds/004-pod-check.save');

function kproxy(args: string[], input?: string) {
  return spawnSync(process.execPath, [main, 'trace', '--rules', dump, '--local-ip', '192.168.1.11', ...args], { encoding: 'utf8', timeout: 30_000, input });
}

test('each --packets line equals the single-packet JSON trace; bad lines say where and why, exit 1', () => {
  const packets = [
    { dst: '192.168.1.11:32239' },
    { dst: '192.168.1.11:32239', src: '198.51.100.7:5555', reply: true },
    { dst: '10.96.0.1:443', from: 'local' },
    { dst: '192.168.1.11:32239', proto: 'udp' },
  ];
  const dir = mkdtempSync(join(tmpdir(), 'kp-trace-batch-'));
  const file = join(dir, 'packets.jsonl');
  writeFileSync(file, ['# node checks', ...packets.map((p) => JSON.stringify(p)), '', '{"dst":"nonsense"}', '{"dst":"1.2.3.4:1","colour":"red"}', 'not json'].join('\n'));
  const r = kproxy(['--packets', file, '--format', 'json']);
  assert.equal(r.status, 1, 'some lines failed');
  const out = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(out.length, packets.length + 3);
  packets.forEach((p, i) => {
    const args = ['--dst', p.dst, '--format', 'json'];
    if (p.src) args.push('--src', p.src);
    if (p.from) args.push('--from', p.from);
    if (p.proto) args.push('--proto', p.proto);
    if (p.reply) args.push('--reply');
    const one = kproxy(args);
    assert.equal(one.status, 0, one.stderr);
    const { line, ...rest } = out[i]!;
    assert.equal(line, i + 2);
    assert.deepEqual(rest, JSON.parse(one.stdout));
  });
  assert.match(String(out[4]!.error), /packets\.jsonl:7: .*nonsense/);
  assert.match(String(out[5]!.error), /packets\.jsonl:8: unknown key "colour"/);
  assert.match(String(out[6]!.error), /packets\.jsonl:9: not a JSON object/);
  assert.match(r.stderr, /3 packet line\(s\) of .*packets\.jsonl could not be traced/);
  // The NodePort's three endpoints, each 1/3, for the first packet.
  const outcomes = (out[0]!.outcomes as { probability: number }[]).map((o) => o.probability);
  assert.equal(outcomes.length, 3);
  assert.ok(Math.abs(outcomes.reduce((a, b) => a + b, 0) - 1) < 1e-9);
});

test('--packets from stdin; --dst with --packets, neither, or text format are refused', () => {
  const r = kproxy(['--packets', '-', '--format', 'json'], '{"dst":"192.168.1.11:32239"}\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trimEnd().split('\n').length, 1);
  assert.match(kproxy(['--packets', '-', '--dst', '1.2.3.4:5', '--format', 'json'], '').stderr, /exclude each other/);
  assert.match(kproxy([]).stderr, /give --dst \(one packet\) or --packets FILE/);
  assert.match(kproxy(['--packets', '-'], '').stderr, /use --format json/);
});
