// `kproxy render --proxy-mode ipvs`: the merged proxy settings turned into
// IpvsRenderOptions, one render per family, printed with headers.
import type { RenderContext, RenderOutput } from '../../cli/render.js';
import type { IPFamily } from '../../k8s/types.js';
import type { ProxySettings } from '../../proxy/config.js';
import { ipFamily } from '../../util/ip.js';
import { buildServicePortMap } from '../../proxy/service-port.js';
import { detectRandomFully } from '../iptables/detect.js';
import { isSchedulerName, schedulerNames } from '../schedulers/index.js';
import { DEFAULT_SCHEDULER } from './names.js';
import { nodeAddressesFromState, renderIpvs, type IpvsRenderOptions } from './render.js';
import type { IpvsRender } from './model.js';
import { renderIpvsText } from './text.js';

/** --ipvs-scheduler (or the config file's ipvs.scheduler), checked against the schedulers kproxy models. */
export function resolveScheduler(flag: string | undefined, configIpvs: Record<string, unknown> | undefined): string {
  const fromConfig = typeof configIpvs?.scheduler === 'string' ? configIpvs.scheduler : undefined;
  const name = (flag ?? fromConfig ?? '').trim() || DEFAULT_SCHEDULER;
  if (!isSchedulerName(name)) {
    throw new Error(`--ipvs-scheduler: unknown scheduler ${JSON.stringify(name)}; valid schedulers: ${schedulerNames.join(', ')}`);
  }
  return name;
}

export interface IpvsModeInput {
  settings: ProxySettings;
  scheduler: string;
  randomFully: boolean;
  families?: IPFamily[];
}

/** The families to render: those asked for, else those of the node IPs, else IPv4. */
export function ipvsFamilies(settings: ProxySettings, asked?: IPFamily[]): IPFamily[] {
  if (asked && asked.length) return asked;
  const fams = new Set<IPFamily>();
  for (const ip of settings.nodeIPs) fams.add(ipFamily(ip) === 6 ? 'IPv6' : 'IPv4');
  return fams.size ? (['IPv4', 'IPv6'] as const).filter((f) => fams.has(f)) : ['IPv4'];
}

/** Render options for one family from kube-proxy-style settings. */
export function ipvsOptionsFromSettings(state: RenderContext['state'], inp: IpvsModeInput, family: IPFamily): IpvsRenderOptions {
  const s = inp.settings;
  const want = family === 'IPv4' ? 4 : 6;
  // The node's addresses: the configured node IPs, then the Node object's other addresses.
  const nodeIPs = [...s.nodeIPs, ...nodeAddressesFromState(state, s.hostname, family)].filter((ip, i, a) => a.indexOf(ip) === i && ipFamily(ip) === want);
  const primary = s.nodeIPs.find((ip) => ipFamily(ip) === want);
  const o: IpvsRenderOptions = {
    family,
    nodeName: s.hostname,
    nodeIPs,
    nodePortAddresses: s.nodePortAddresses,
    scheduler: inp.scheduler,
    masqueradeAll: s.masqueradeAll,
    masqueradeBit: s.masqueradeBit,
    clusterCIDRs: s.clusterCIDRs,
    detectLocalMode: s.detectLocalMode,
    randomFully: inp.randomFully,
  };
  if (primary) o.nodeIP = primary;
  if (s.bridgeInterface) o.bridgeInterface = s.bridgeInterface;
  if (s.interfaceNamePrefix) o.interfaceNamePrefix = s.interfaceNamePrefix;
  return o;
}

export function renderIpvsFamilies(state: RenderContext['state'], inp: IpvsModeInput): IpvsRender[] {
  return ipvsFamilies(inp.settings, inp.families).map((f) => renderIpvs(state, ipvsOptionsFromSettings(state, inp, f)));
}

/** The ModeRenderer registered as modeRenderers.ipvs in src/cli/render.ts. */
export async function renderIpvsMode(ctx: RenderContext): Promise<RenderOutput> {
  const opts = ctx.options as RenderContext['options'] & { ipvsScheduler?: string };
  const scheduler = resolveScheduler(opts.ipvsScheduler, ctx.config?.ipvs);
  const rf = opts.randomFully ?? 'auto';
  const randomFully = rf === 'auto' ? await detectRandomFully() : rf === 'true';
  const families = opts.ipFamily ? (opts.ipFamily.split(',').map((f) => f.trim()) as IPFamily[]) : undefined;
  const renders = renderIpvsFamilies(ctx.state, { settings: ctx.settings, scheduler, randomFully, ...(families ? { families } : {}) });
  const warnings: string[] = [];
  for (const r of renders) {
    const wantsNodePorts = [...buildServicePortMap(ctx.state.services, r.family).values()].some((sp) => sp.nodePort !== 0);
    if (wantsNodePorts && r.nodePortAddresses.length === 0) {
      warnings.push(`${r.family}: no node IP of this family: NodePort virtual servers (and health check ports) were not rendered (set --node-ip)`);
    }
  }
  return { text: renders.map(renderIpvsText).join('\n'), warnings };
}
