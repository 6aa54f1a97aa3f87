// A second, real kernel for what this host's kernel lacks (IPVS, dummy): Debian's
// User-mode Linux (Linux 6.1 run as an ordinary process) booted with this host's
// filesystem as its root through hostfs, a shell script as init. The guest sees
// the same files (node, dist/, the test's temp folder), so a test writes its
// script, boots, and reads back what the script left in its folder.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const UML = '/usr/bin/linux.uml';
const MODULES = '/usr/lib/uml/modules';

/**
 * Modules for iptables (legacy) NAT and filtering, both families (--cleanup
 * touches ip6tables too), ipsets, conntrack, veth, bridge and dummy. xt_nat
 * holds the DNAT/SNAT targets iptables mode's endpoint chains use.
 */
export const BASE_MODULES = [
  'ip_tables', 'iptable_nat', 'iptable_filter', 'iptable_mangle', 'ipt_REJECT', 'nf_conntrack', 'nf_conntrack_netlink', 'nf_nat',
  'ip6_tables', 'ip6table_nat', 'ip6table_filter', 'ip6table_mangle', 'ip6t_REJECT',
  'xt_nat', 'xt_physdev', 'xt_MASQUERADE', 'xt_comment', 'xt_mark', 'xt_addrtype', 'xt_conntrack', 'xt_set', 'xt_tcpudp', 'xt_statistic', 'xt_recent', 'xt_multiport',
  'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet', 'ip_set_hash_net', 'ip_set_bitmap_port',
  'veth', 'bridge', 'br_netfilter', 'dummy',
];
/** IPVS and every scheduler kube-proxy accepts. */
export const IPVS_MODULES = ['ip_vs', 'xt_ipvs', 'ip_vs_rr', 'ip_vs_wrr', 'ip_vs_lc', 'ip_vs_wlc', 'ip_vs_sh', 'ip_vs_dh', 'ip_vs_mh', 'ip_vs_sed', 'ip_vs_nq'];

export interface UmlOptions {
  /** Shell run as the guest's init after the preamble (mounts, PATH, modules, lo up); $D is the shared folder. */
  script: string;
  modules?: string[];
  /** Wall-clock bound on the whole boot; the process group is killed past it. */
  timeoutMs: number;
  memMiB?: number;
}

export interface UmlRun {
  /** The shared folder (host path = guest path); removed by `cleanup`. */
  dir: string;
  /** The guest's console (kernel messages and the script's stdout/stderr). */
  console: string;
  /** The script's exit status (`status` file written by the harness), or null if it never finished. */
  status: number | null;
  /** Modules that failed to load, one per line ('' when all loaded). */
  missingModules: string;
  read(file: string): string;
  cleanup(): void;
}

export function umlAvailable(): boolean {
  return existsSync(UML) && existsSync(MODULES) && readdirSync(MODULES).length > 0;
}

/**
 * Boots UML with `script` as init and resolves once it powers off (or rejects
 * when it outlives `timeoutMs`, after killing it). The caller owns `cleanup`.
 */
export async function bootUml(opts: UmlOptions): Promise<UmlRun> {
  if (!umlAvailable()) throw new Error(`${UML} or ${MODULES} is missing: .ci/run installs Debian's user-mode-linux`);
  const version = readdirSync(MODULES).sort().at(-1)!;
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-uml-'));
  mkdirSync(join(dir, 'lib/modules'), { recursive: true });
  // modprobe -d DIR wants DIR/lib/modules/<version>.
  symlinkSync(join(MODULES, version), join(dir, 'lib/modules', version));
  const init = join(dir, 'init.sh');
  const modules = opts.modules ?? [...BASE_MODULES, ...IPVS_MODULES];
  writeFileSync(
    init,
    `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /run
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
D=${dir}
: > $D/missing-modules.txt
for m in ${modules.join(' ')}; do modprobe -d $D $m 2>/dev/null || echo "$m" >> $D/missing-modules.txt; done
# The modules are loaded; stop the kernel's own module requests. Its modprobe
# cannot find them anyway (they live under ${MODULES}, reached only through
# -d), and 6.1's bpfilter hook (CONFIG_BPFILTER_UMH=m) calls
# request_module("bpfilter") on every iptables-legacy get/setsockopt while
# bpfilter is not loaded, which here is always: a modprobe process per call,
# 0.2-2 s per iptables-legacy command. An empty path fails those at once.
echo > /proc/sys/kernel/modprobe
ip link set lo up
( . $D/script.sh ) > $D/script.log 2>&1
echo $? > $D/status
poweroff -f
`,
  );
  writeFileSync(join(dir, 'script.sh'), opts.script);
  chmodSync(init, 0o755);
  const read = (f: string): string => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  let consoleText: string;
  try {
    consoleText = await run(['mem=' + (opts.memMiB ?? 1024) + 'M', 'rootfstype=hostfs', 'rootflags=/', 'rw', `init=${init}`, 'con=null', 'con0=fd:0,fd:1'], opts.timeoutMs, () => read('script.log'));
  } catch (e) {
    // KPROXY_UML_KEEP=1 keeps the shared folder of a guest that timed out, to read what it left.
    if (process.env.KPROXY_UML_KEEP) throw new Error(`${(e as Error).message}\n(kept ${dir})`);
    cleanup();
    throw e;
  }
  const s = read('status').trim();
  return { dir, console: consoleText, status: s === '' ? null : Number(s), missingModules: read('missing-modules.txt'), read, cleanup };
}

function run(args: string[], ms: number, log: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(UML, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
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
      reject(new Error(`UML did not power off within ${ms} ms; script log:\n${log().slice(-3000)}\nconsole:\n${out.slice(-2000)}`));
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
