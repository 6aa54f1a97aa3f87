// ipvs mode against a real IPVS kernel: this host's kernel has no IPVS and no
// dummy interfaces, so the test boots Debian's User-mode Linux (a 6.1 kernel run
// as a process, with this host's filesystem as its root through hostfs) and runs
// `kproxy run --proxy-mode ipvs` on the hello-world manifests inside it. The 6.1
// UML build has nf_tables without the nft NAT chain type, so iptables there is
// the legacy backend (--iptables-backend legacy).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { bootUml } from './harness.js';

const root = new URL('../../../', import.meta.url).pathname;
const main = join(root, 'dist/src/cli/main.js');

test('kproxy run --proxy-mode ipvs on a real IPVS kernel (UML 6.1): kube-ipvs0, virtual and real servers, legacy iptables rules', { timeout: 180_000 }, async () => {
  const uml = await bootUml({
    timeoutMs: 150_000,
    script: `${process.execPath} ${main} run --proxy-mode ipvs --iptables-backend legacy --manifests ${join(root, 'examples/hello-world')} \\
  --hostname-override k8s-n-1 --cluster-cidr 10.244.0.0/16 --v 1 --healthz-bind-address "" --metrics-bind-address "" > $D/run.log 2>&1 &
P=$!
for i in $(seq 1 120); do grep -q "synced all rules" $D/run.log && break; sleep 0.5; done
ipvsadm -Sn > $D/ipvsadm.txt
ip -o addr show dev kube-ipvs0 > $D/addr.txt
iptables-legacy-save -t nat > $D/nat.txt
ipset list -n > $D/ipsets.txt
kill $P
`,
  });
  try {
    const { read } = uml;
    const console = uml.console;
    const log = read('run.log');
    assert.equal(uml.missingModules, '', 'every module loads');
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
    uml.cleanup();
  }
});
