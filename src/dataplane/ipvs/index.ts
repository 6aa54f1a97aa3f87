// `kproxy run --proxy-mode ipvs`: the ProxyBackend that run drives. At start
// it checks the kernel for IPVS and dummy interfaces and refuses, naming what
// is missing and the modes that do work here, when either is absent (as on
// kernels built without ip_vs). Where both exist, each sync renders every
// family and applies it with ip, ipset restore, iptables-restore and
// ipvsadm-restore (apply.ts).
import { existsSync } from 'node:fs';
import type { BackendOptions, FamilySyncReport, ProxyBackend } from '../backend.js';
import type { ClusterState, IPFamily } from '../../k8s/types.js';
import { exec } from '../../util/exec.js';
import { detectRandomFully } from '../iptables/detect.js';
import { iptablesTools, type IptablesTools } from '../iptables/apply.js';
import { parseSave } from '../iptables/sync-save.js';
import { applyIpvs, checkIpvsKernel, type IpvsKernelSupport } from './apply.js';
import { DUMMY_DEVICE, familySetName, IPSET_INFO, IPTABLES_CHAINS, IPTABLES_JUMPS } from './names.js';
import { ipvsOptionsFromSettings, resolveScheduler } from './render-mode.js';
import { renderIpvs } from './render.js';

export { renderIpvs, type IpvsRenderOptions } from './render.js';
export { renderIpvsText } from './text.js';
export { checkIpvsKernel } from './apply.js';

/** Optional settings ipvs mode reads beyond ProxySettings (run fills them from its flags). */
export interface IpvsSettings {
  ipvsScheduler?: string;
  /** --ipvs-exclude-cidrs / ipvs.excludeCIDRs: virtual servers there belong to someone else. */
  ipvsExcludeCIDRs?: string[];
}

/** Upstream's node addresses: every local address except those on kube-ipvs0 (GetAllLocalAddressesExcept). */
export async function nodeAddressesExceptDummy(): Promise<string[]> {
  try {
    const r = await exec('ip', ['-j', 'addr', 'show']);
    const links = JSON.parse(r.stdout) as { ifname?: string; addr_info?: { local?: string }[] }[];
    return links.filter((l) => l.ifname !== DUMMY_DEVICE).flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter(Boolean);
  } catch {
    return [];
  }
}

/** Whether the nftables mode is built into this kproxy and the kernel has nf_tables. */
async function nftablesUsable(): Promise<boolean> {
  if (!existsSync(new URL('../nftables/index.js', import.meta.url))) return false;
  // nftables mode's own probe: it lists no elements (`nft list tables` fetches them all).
  const { nftUsable } = await import('../nftables/apply.js');
  return (await nftUsable()) === undefined;
}

/** The start-up refusal: what is missing, and which modes will work on this host. */
export async function ipvsRefusal(support: IpvsKernelSupport): Promise<string | undefined> {
  const missing: string[] = [];
  if (!support.ipvs) missing.push('IPVS (the ip_vs kernel module)');
  if (!support.dummy) missing.push('dummy network interfaces (needed for kube-ipvs0)');
  if (missing.length === 0) return undefined;
  const modes = ['iptables', 'userspace', ...((await nftablesUsable()) ? ['nftables'] : [])];
  return (
    `--proxy-mode ipvs: this kernel lacks ${missing.join(' and ')}; ` +
    `modes that work here: ${modes.join(', ')} (e.g. --proxy-mode ${modes[0]})\n` +
    support.problems.map((p) => `  ${p}`).join('\n')
  );
}

export async function createBackend(opts: BackendOptions): Promise<ProxyBackend> {
  const s = opts.settings as BackendOptions['settings'] & IpvsSettings;
  const scheduler = resolveScheduler(s.ipvsScheduler ?? process.env.KPROXY_IPVS_SCHEDULER, undefined);
  const refusal = await ipvsRefusal(await checkIpvsKernel());
  if (refusal) throw new Error(refusal);
  return new IpvsBackend(opts, scheduler);
}

class IpvsBackend implements ProxyBackend {
  readonly mode = 'ipvs';
  private randomFully = true;

  constructor(
    private readonly opts: BackendOptions,
    private readonly scheduler: string,
  ) {}

  async start(): Promise<void> {
    // The sysctls upstream's NewProxier ensures.
    for (const [k, v] of [
      ['net.ipv4.vs.conntrack', '1'],
      ['net.ipv4.vs.expire_nodest_conn', '1'],
      ['net.ipv4.vs.expire_quiescent_template', '1'],
      ['net.ipv4.ip_forward', '1'],
    ] as const) {
      await exec('sysctl', ['-qw', `${k}=${v}`]);
    }
    this.randomFully = await detectRandomFully();
  }

  private tools = new Map<IPFamily, IptablesTools>();

  /** The iptables binaries for a family, per --iptables-backend (detected once for auto). */
  private async iptables(family: IPFamily): Promise<IptablesTools> {
    let t = this.tools.get(family);
    if (!t) this.tools.set(family, (t = await iptablesTools(family, this.opts.iptablesBackend)));
    return t;
  }

  async sync(state: ClusterState): Promise<FamilySyncReport[]> {
    const reports: FamilySyncReport[] = [];
    for (const family of this.opts.families) {
      const started = Date.now();
      try {
        const o = ipvsOptionsFromSettings(state, { settings: this.opts.settings, scheduler: this.scheduler, randomFully: this.randomFully }, family);
        // On the node itself, NodePorts sit on every local address (not only the configured node IPs), as upstream.
        const local = await nodeAddressesExceptDummy();
        o.nodeIPs = [...(o.nodeIPs ?? []), ...local].filter((ip, i, a) => a.indexOf(ip) === i);
        const r = renderIpvs(state, o);
        // --iptables-backend applies here too: a kernel with nf_tables but no nft NAT chain type (the 6.1 UML build) needs legacy.
        const tools = await this.iptables(family);
        await applyIpvs(r, { excludeCIDRs: (this.opts.settings as BackendOptions['settings'] & IpvsSettings).ipvsExcludeCIDRs ?? [], iptablesRestore: tools.restore });
        reports.push({ family, ok: true, full: true, detail: { virtualServers: r.virtualServers.length, addresses: r.interfaceAddresses.length, ms: Date.now() - started } });
      } catch (e) {
        reports.push({ family, ok: false, full: true, detail: {}, error: e as Error });
      }
    }
    const failed = reports.find((r) => !r.ok);
    if (failed) throw failed.error;
    return reports;
  }

  /**
   * Upstream cleanupLeftovers: IPVS table, kube-ipvs0, the iptables chains and jumps, then the ipsets.
   * Only what exists is deleted (one iptables-save per family, one ipset list): the same end state
   * with a handful of processes instead of a hundred, which matters on a slow kernel.
   */
  async cleanup(): Promise<void> {
    const quiet = { allowFail: true } as const;
    await exec('ipvsadm', ['-C'], quiet).catch(() => undefined);
    await exec('ip', ['link', 'del', DUMMY_DEVICE], quiet).catch(() => undefined);
    for (const family of ['IPv4', 'IPv6'] as const) {
      const t = await this.iptables(family);
      const dump = await exec(t.save, [], quiet).catch(() => ({ code: 1, stdout: '', stderr: '' }));
      const saved = dump.code === 0 ? parseSave(dump.stdout) : null; // no dump: try everything, as upstream does
      const ipt = t.iptables;
      const jumps = IPTABLES_JUMPS.filter(
        (j) => !saved || !!saved[j.table]?.chains.get(j.from)?.includes(`-A ${j.from} -m comment --comment "${j.comment}" -j ${j.to}`),
      );
      const chains = IPTABLES_CHAINS.filter((c) => !saved || !!saved[c.table]?.chains.has(c.chain));
      if (dump.code === 0) {
        // One iptables-restore --noflush per family: jumps deleted, chains flushed (declared) and deleted.
        const payload: string[] = [];
        for (const table of ['nat', 'filter'] as const) {
          const js = jumps.filter((j) => j.table === table);
          const cs = chains.filter((c) => c.table === table);
          if (!js.length && !cs.length) continue;
          payload.push(`*${table}`, ...cs.map((c) => `:${c.chain} - [0:0]`));
          payload.push(...js.map((j) => `-D ${j.from} -m comment --comment "${j.comment}" -j ${j.to}`));
          payload.push(...cs.map((c) => `-X ${c.chain}`), 'COMMIT');
        }
        if (!payload.length) continue;
        const r = await exec(t.restore, ['--noflush'], { allowFail: true, input: payload.join('\n') + '\n' }).catch(() => ({ code: 1 }));
        if (r.code === 0) continue;
      }
      // No dump, or the restore refused: one command each, as upstream.
      for (const j of jumps) await exec(ipt, ['-t', j.table, '-D', j.from, '-m', 'comment', '--comment', j.comment, '-j', j.to], quiet).catch(() => undefined);
      for (const c of chains) await exec(ipt, ['-t', c.table, '-F', c.chain], quiet).catch(() => undefined);
      for (const c of chains) await exec(ipt, ['-t', c.table, '-X', c.chain], quiet).catch(() => undefined);
    }
    const list = await exec('ipset', ['list', '-n'], quiet).catch(() => ({ code: 1, stdout: '', stderr: '' }));
    const sets = new Set(list.stdout.split('\n').map((l) => l.trim()));
    for (const info of IPSET_INFO) {
      for (const fam of ['IPv4', 'IPv6'] as const) {
        const name = familySetName(info.name, fam);
        if (list.code === 0 && !sets.has(name)) continue;
        await exec('ipset', ['destroy', name], quiet).catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {}
}
