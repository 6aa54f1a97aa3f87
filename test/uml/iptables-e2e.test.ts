// The iptables-mode `kproxy run` end-to-end suite (test/kernel/run-e2e.test.ts)
// on a second kernel: one UML boot (Debian's user-mode-linux, Linux 6.1 as a
// process, its own netfilter) runs the compiled suite inside the guest with
// KPROXY_IPTABLES_BACKEND=legacy (the 6.1 build has nf_tables but not the nft
// NAT chain type), and this test reads back its TAP output and asserts every
// subtest passed. See docs/ipvs.md, "The iptables e2e suite on a second kernel".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { bootUml } from './harness.js';

const root = new URL('../../../', import.meta.url).pathname;
const suite = join(root, 'dist/test/kernel/run-e2e.test.js');

/** The TAP lines of the tests that ran: name, ok, whether skipped (and why), and the failure's YAML block. */
function tapResults(tap: string): { name: string; ok: boolean; skip?: string; detail: string; ms: number }[] {
  const lines = tap.split('\n');
  const out: { name: string; ok: boolean; skip?: string; detail: string; ms: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*(not ok|ok) \d+ - (.*?)(?: # SKIP ?(.*))?$/.exec(lines[i]!);
    if (!m) continue;
    let detail = '';
    // The YAML block that follows a result (indented `---` … `...`).
    if (/^\s*---$/.test(lines[i + 1] ?? '')) {
      const end = lines.findIndex((l, j) => j > i + 1 && /^\s*\.\.\.$/.test(l));
      detail = lines.slice(i + 2, end < 0 ? undefined : end).join('\n');
    }
    const ms = Math.round(Number(/duration_ms: ([\d.]+)/.exec(detail)?.[1] ?? NaN));
    out.push({ name: m[2]!, ok: m[1] === 'ok', ...(m[3] !== undefined ? { skip: m[3] } : {}), detail, ms });
  }
  return out;
}

test('the iptables e2e suite (run-e2e) inside UML 6.1 with legacy iptables: every subtest passes', { timeout: 330_000 }, async () => {
  const t0 = Date.now();
  const uml = await bootUml({
    timeoutMs: 300_000,
    memMiB: 1536,
    script: `cd ${root}
start=$(date +%s%N)
# Every 20 s, what is running (into script.log: the harness shows its tail if the boot times out).
( while sleep 20; do echo "## uptime $(cut -d' ' -f1 /proc/uptime)"; ps -eo etimes,args | grep -E 'iptables|conntrack|probe|main.js' | grep -v grep | cut -c1-160; done ) &
W=$!
# tee: the TAP also reaches script.log, which the harness shows if the boot times out.
{ KPROXY_IPTABLES_BACKEND=legacy KPROXY_E2E_TIME_SCALE=${process.env.KPROXY_UML_TIME_SCALE ?? 5} ${process.execPath} --test --test-reporter=tap ${suite} 2>&1; echo $? > $D/suite-status; } | tee $D/tap.txt
echo $(( ($(date +%s%N) - start) / 1000000 )) > $D/suite-ms
uname -r > $D/uname.txt
kill $W
`,
  });
  try {
    const tap = uml.read('tap.txt');
    const where = `guest ${uml.read('uname.txt').trim()}, suite ${uml.read('suite-ms').trim()} ms, boot ${Date.now() - t0} ms`;
    assert.equal(uml.missingModules, '', 'every module loads');
    const results = tapResults(tap);
    const failed = results.filter((r) => !r.ok);
    assert.ok(results.length > 1, `the suite ran (${where}); TAP:\n${tap}\nscript log:\n${uml.read('script.log')}\nconsole:\n${uml.console.slice(-3000)}`);
    assert.deepEqual(
      failed.map((r) => r.name),
      [],
      `failures (${where}):\n${failed.map((r) => `--- ${r.name}\n${r.detail}`).join('\n')}\n\nfull TAP:\n${tap}`,
    );
    assert.equal(uml.read('suite-status').trim(), '0', `the suite exited 0 (${where}); TAP:\n${tap}`);
    const skipped = results.filter((r) => r.skip !== undefined);
    console.log(
      `${where}: ${results.length - skipped.length} passed, ${skipped.length} skipped` +
        results.map((r) => `\n  ${r.skip !== undefined ? `skipped (${r.skip})` : `${r.ms} ms`}: ${r.name}`).join(''),
    );
  } finally {
    uml.cleanup();
  }
});
