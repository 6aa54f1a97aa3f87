// ipvs mode against a real IPVS kernel: this host's kernel has no IPVS and no
// dummy interfaces, so the test boots Debian's User-mode Linux (a 6.1 kernel run
// as a process, with this host's filesystem as its root through hostfs) and runs
// `kproxy run --proxy-mode ipvs` on the hello-world manifests inside it. The 6.1
// UML build has nf_tables without the nft NAT chain type, so iptables there is
// the legacy backend (--iptables-backend legacy).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');
const UML = '/usr/bin/linux.uml';
const MODULES = '/usr/lib/uml/modules';

const MODS = [
  'ip_tables', 'iptable_nat', 'iptable_filter', 'ipt_REJECT', 'nf_conntrack', 'nf_nat', 'xt_MASQUERADE', 'xt_comment', 'xt_mark', 'xt_addrtype',
  'xt_conntrack', 'xt_set', 'xt_ipvs', 'xt_tcpudp', 'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet',
  'ip_set_hash_net', 'ip_set_bitmap_port', 'ip_vs', 'ip_vs_rr', 'dummy',
];

/** Boots UML with `script` as init; resolves with the console output once it powers off, or kills it after `ms`. */
function bootUml(script: string, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(UML, ['mem=1G', 'rootfstype=hostfs', 'rootflags=/', 'rw', `init=${script}`, 'con=null', 'con0=fd:0,fd:1'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const kill = (): void => {
      try {
        process.kill(-p.pid!, 'SIGKILL'); // UML runs its guest processes as host children: end the whole group
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`UML did not power off within ${ms} ms; console:\n${out.slice(-3000)}`));
    }, ms);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('exit', () => {
      clearTimeout(timer);
      kill();
      resolve(out);
    });
  });
}

test('kproxy run --proxy-mode ipvs on a real IPVS kernel (UML 6.1): kube-ipvs0, virtual and real servers, legacy iptables rules', { timeout: 180_000 }, async () => {
  assert.ok(existsSync(UML), `${UML} is missing: .ci/run installs Debian's user-mode-linux`);
  const version = readdirSync(MODULES)[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-uml-'));
  try {
    mkdirSync(join(dir, 'lib/modules'), { recursive: true });
    symlinkSync(join(MODULES, version), join(dir, 'lib/modules', version));
    const script = join(dir, 'init.sh');
    writeFileSync(
      script,
      `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /run
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
D=${dir}
for m in ${MODS.join(' ')}; do modprobe -d $D $m || echo "missing module $m" >> $D/modules.txt; done
ip link set lo up
${process.execPath} ${main} run --proxy-mode ipvs --iptables-backend legacy --manifests ${join(root, 'examples/hello-world')} \\
  --hostname-override k8s-n-1 --cluster-cidr 10.244.0.0/16 --v 1 --healthz-bind-address "" --metrics-bind-address "" > $D/run.log 2>&1 &
for i in $(seq 1 120); do grep -q "synced all rules" $D/run.log && break; sleep 0.5; done
ipvsadm -Sn > $D/ipvsadm.txt
ip -o addr show dev kube-ipvs0 > $D/addr.txt
iptables-legacy-save -t nat > $D/nat.txt
ipset list -n > $D/ipsets.txt
kill %1
poweroff -f
`,
    );
    chmodSync(script, 0o755);
    const console = await bootUml(script, 150_000);
    const read = (f: string): string => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
    const log = read('run.log');
    assert.equal(read('modules.txt'), '', 'every module loads');
    assert.match(log, /synced all rules/, `the agent synced; its log:\n${log}\nconsole:\n${console.slice(-2000)}`);
    assert.doesNotMatch(log, /"level":"error"/, log);
    const ipvs = read('ipvsadm.txt');
    for (const vs of ['10.96.103.220:4000', '192.168.56.11:30001']) {
      assert.ok(ipvs.includes(`-A -t ${vs} -s rr`), `virtual server ${vs}:\n${ipvs}`);
      for (const rs of ['10.244.1.5:8080', '10.244.1.6:8080', '10.244.2.3:8080']) assert.ok(ipvs.includes(`-a -t ${vs} -r ${rs} -m -w 1`), `real server ${rs} of ${vs}:\n${ipvs}`);
    }
    assert.match(read('addr.txt'), /inet 10\.96\.103\.220\/32/);
    assert.match(read('ipsets.txt'), /^KUBE-CLUSTER-IP$/m);
    assert.match(read('nat.txt'), /-A KUBE-SERVICES .*--match-set KUBE-CLUSTER-IP dst,dst/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
