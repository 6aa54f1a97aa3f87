// `kproxy doctor`: every check, in order, each one guarded so a check that
// cannot run reports that and the others still run. Doctor only reads.
import { exec } from '../util/exec.js';
import { ipFamily } from '../util/ip.js';
import type { ClusterState, IPFamily } from '../k8s/types.js';
import type { ProxySettings } from '../proxy/config.js';
import { renderIptables } from '../dataplane/iptables/render.js';
import { renderOptionsFromSettings } from '../dataplane/iptables/render-options.js';
import { trace, type Proto } from '../netfilter/simulate.js';
import { savedTables } from '../dataplane/iptables/sync-save.js';
import type { DnsPolicy } from '../dns/resolver-sim.js';
import { guarded, type CheckResult } from './check.js';
import { kernelChecks } from './kernel.js';
import { defaultBackend, readLive, ruleChecks, type Backend, type LiveRules } from './rules.js';
import { driftChecks } from './drift.js';
import { dnatTargets, forwardTrapChecks, reachChecks, routeGet } from './reach.js';
import { dnsChecks } from './dns.js';
import { agentChecks } from './agent.js';
import { nftablesChecks } from './nftables.js';
import { makeReport, type Report } from './report.js';

export interface DoctorOptions {
  settings: ProxySettings;
  /** The cluster as the source says it is; undefined when doctor runs without a source. */
  state?: ClusterState;
  dns: {
    namespace: string;
    dnsPolicy: DnsPolicy;
    hostNetwork: boolean;
    zone: string;
    clusterDNS?: string[];
    resolvConfPath: string;
    port?: number;
  };
  agent?: { healthz: string; metrics: string } | null;
  backend?: Backend;
}

/** IPv4/IPv6 addresses on this namespace's interfaces. */
export async function localAddresses(): Promise<string[]> {
  const r = await exec('ip', ['-j', 'addr', 'show'], { allowFail: true });
  if (r.code !== 0) return [];
  const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local).filter((x): x is string => !!x));
}

function familiesOf(state: ClusterState | undefined, settings: ProxySettings): IPFamily[] {
  const fams = new Set<IPFamily>(['IPv4']);
  for (const ip of settings.nodeIPs) if (ipFamily(ip) === 6) fams.add('IPv6');
  for (const s of state?.services ?? []) for (const ip of s.clusterIPs) if (ipFamily(ip) === 6) fams.add('IPv6');
  return [...fams];
}

async function rawSave(live: LiveRules): Promise<string> {
  const cmd = `${live.family === 6 ? 'ip6tables' : 'iptables'}-${live.backend}-save`;
  return (await exec(cmd, ['-t', 'nat'])).stdout;
}

export async function runDoctor(o: DoctorOptions): Promise<Report> {
  const checks: CheckResult[] = [];
  const families = familiesOf(o.state, o.settings);
  const backend = o.backend ?? (await defaultBackend());
  const other: Backend = backend === 'nft' ? 'legacy' : 'nft';
  const locals = await localAddresses();
  const state: ClusterState = o.state ?? { services: [], endpointSlices: [], nodes: [], pods: [] };
  const settings = { ...o.settings, nodeIPs: o.settings.nodeIPs.length ? o.settings.nodeIPs : locals.filter((a) => !a.startsWith('127.') && a !== '::1' && !a.startsWith('fe80')) };
  const rendered = renderIptables(state, renderOptionsFromSettings(settings, { families, localAddresses: locals }));

  const live = new Map<IPFamily, LiveRules>();
  const nftMode = settings.mode === 'nftables';
  if (nftMode) {
    // nftables mode writes no iptables rules: its table and elements are checked instead.
    for (const fam of families) {
      const ropts = renderOptionsFromSettings(settings, { families: [fam], localAddresses: locals });
      checks.push(...(await guarded(`nftables.${fam.toLowerCase()}`, `${fam} nftables table`, () => nftablesChecks(fam, o.state, ropts))));
    }
  }
  for (const fam of nftMode ? [] : families) {
    const f = fam === 'IPv6' ? 6 : 4;
    checks.push(
      ...(await guarded(`rules.read.ipv${f}`, `IPv${f} rules`, async () => {
        const mine = await readLive(backend, f);
        if (!mine) throw new Error(`${f === 6 ? 'ip6tables' : 'iptables'}-${backend}-save failed (no permission, or the tool is missing)`);
        live.set(fam, mine);
        const theirs = await readLive(other, f);
        const rs = rendered.find((r) => r.family === fam);
        return ruleChecks({ live: mine, ...(theirs ? { other: theirs } : {}), jumps: rs?.jumps ?? [] });
      })),
    );
  }

  const live4 = live.get('IPv4');
  const nodeportsJump = live4?.ruleset.tables.get('nat')?.chains.get('KUBE-SERVICES')?.rules.find((r) => r.target?.kind === 'jump' && r.target.chain === 'KUBE-NODEPORTS');
  const hasNodePorts = (live4?.ruleset.tables.get('nat')?.chains.get('KUBE-NODEPORTS')?.rules.length ?? 0) > 0;
  const localhostNodePorts = settings.localhostNodePorts && hasNodePorts && !!nodeportsJump && !/! -d 127\.0\.0\.0\/8/.test(nodeportsJump.spec);
  checks.push(...(await guarded('kernel', 'kernel settings', () => kernelChecks({ ipv6: families.includes('IPv6'), localhostNodePorts }))));

  if (o.state && !nftMode) {
    for (const rs of rendered) {
      const l = live.get(rs.family);
      if (!l) continue;
      checks.push(...(await guarded(`drift.${rs.family.toLowerCase()}`, `${rs.family} drift`, async () => driftChecks(rs, savedTables(await rawSave(l)).nat))));
    }
  }

  for (const [fam, l] of live) {
    const f = fam === 'IPv6' ? 6 : 4;
    checks.push(
      ...(await guarded(`reach.ipv${f}`, `IPv${f} DNAT destinations`, () =>
        reachChecks({ targets: dnatTargets(l.ruleset), ...(o.state ? { state: o.state } : {}), localIPs: locals, clusterCIDRs: settings.clusterCIDRs, route: routeGet }),
      )),
    );
    const famLocals = locals.filter((a) => ipFamily(a) === f);
    checks.push(
      ...(await guarded(`reach.nodeport_forward.ipv${f}`, 'NodePort forwarding', async () =>
        forwardTrapChecks({
          live: l.ruleset,
          localIPs: famLocals,
          ...(settings.nodeIPs.find((ip) => ipFamily(ip) === f) ? { nodeIP: settings.nodeIPs.find((ip) => ipFamily(ip) === f)! } : {}),
          ...(o.state ? { state: o.state } : {}),
          trace: (dst, dport, proto) => trace(l.ruleset, { dst, dport, proto: proto as Proto, from: 'external', localIps: famLocals }).outcomes,
        }),
      )),
    );
  }

  checks.push(...(await guarded('dns.pod_view', 'pod DNS', () => dnsChecks({ ...o.dns, ...(o.state ? { state: o.state } : {}) }))));

  if (o.agent) {
    const agent = o.agent;
    checks.push(...(await guarded('agent', 'agent', () => agentChecks({ ...agent, syncPeriodSeconds: settings.syncPeriodMs / 1000 }))));
  } else {
    checks.push({ id: 'agent.healthz', title: 'agent health endpoint', status: 'skip', evidence: ['--no-agent'] });
  }
  return makeReport(settings.hostname, checks);
}
