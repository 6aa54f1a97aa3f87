// KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) files, read the
// way kube-proxy reads --config: YAML or JSON, strict about apiVersion/kind
// and about field types, with unknown fields reported (kube-proxy's strict
// decoding refuses them; we warn and carry on). Command-line flags override
// what the file says; see mergeProxySettings.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parseYaml } from '../util/yaml.js';
import type { Node } from '../k8s/types.js';
import { ipFamily, normalizeCIDR, normalizeIP } from '../util/ip.js';

export const PROXY_CONFIG_API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';

export type ProxyMode = 'iptables' | 'ipvs' | 'nftables' | 'kernelspace' | 'userspace';
export type DetectLocalModeName = 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix';

/** The fields of KubeProxyConfiguration kproxy uses, in the file's own names. Durations in milliseconds. */
export interface ProxyConfig {
  hostnameOverride?: string;
  bindAddress?: string;
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  /** clusterCIDR, split on commas and normalized. */
  clusterCIDR?: string[];
  mode?: string;
  nodePortAddresses?: string[];
  detectLocalMode?: DetectLocalModeName;
  detectLocal?: { bridgeInterface?: string; interfaceNamePrefix?: string; clusterCIDRs?: string[] };
  iptables?: { masqueradeAll?: boolean; masqueradeBit?: number; localhostNodePorts?: boolean; syncPeriod?: number; minSyncPeriod?: number };
  ipvs?: Record<string, unknown>;
  conntrack?: {
    maxPerCore?: number;
    min?: number;
    tcpEstablishedTimeout?: number;
    tcpCloseWaitTimeout?: number;
    tcpBeLiberal?: boolean;
    udpTimeout?: number;
    udpStreamTimeout?: number;
  };
  clientConnection?: { kubeconfig?: string };
  configSyncPeriod?: number;
  featureGates?: Record<string, boolean>;
  /** The whole decoded document, for fields kproxy does not model. */
  raw: Record<string, unknown>;
}

export interface LoadedProxyConfig {
  config: ProxyConfig;
  /** Unknown fields and other non-fatal problems, each naming the file and field. */
  warnings: string[];
}

/** Parses a Go duration ("30s", "1m30s", "500ms", "1h") into milliseconds. */
export function parseDuration(s: string): number | null {
  const t = s.trim();
  if (t === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * unit[m[2]!]!;
    pos = re.lastIndex;
  }
  return pos === t.length && pos > 0 ? total : null;
}

class ConfigError extends Error {}

const KNOWN_TOP = new Set([
  'apiVersion', 'kind', 'bindAddress', 'bindAddressHardFail', 'clientConnection', 'clusterCIDR', 'configSyncPeriod',
  'conntrack', 'detectLocal', 'detectLocalMode', 'enableProfiling', 'featureGates', 'healthzBindAddress', 'hostnameOverride',
  'iptables', 'ipvs', 'logging', 'metricsBindAddress', 'mode', 'nftables', 'nodePortAddresses', 'oomScoreAdj', 'portRange',
  'showHiddenMetricsForVersion', 'winkernel', 'udpIdleTimeout',
]);

/** Validates and decodes a KubeProxyConfiguration document. `source` names the file in messages. */
export function decodeProxyConfig(doc: unknown, source: string): LoadedProxyConfig {
  const warnings: string[] = [];
  const fail = (field: string, msg: string): never => {
    throw new ConfigError(`${source}: ${field}: ${msg}`);
  };
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) fail('(document)', 'expected a KubeProxyConfiguration object');
  const raw = doc as Record<string, unknown>;
  if (raw.apiVersion !== PROXY_CONFIG_API_VERSION) {
    fail('apiVersion', `expected ${JSON.stringify(PROXY_CONFIG_API_VERSION)}, got ${JSON.stringify(raw.apiVersion)}`);
  }
  if (raw.kind !== 'KubeProxyConfiguration') fail('kind', `expected "KubeProxyConfiguration", got ${JSON.stringify(raw.kind)}`);
  for (const k of Object.keys(raw)) if (!KNOWN_TOP.has(k)) warnings.push(`${source}: ${k}: unknown field (ignored)`);

  const str = (obj: Record<string, unknown>, key: string, path: string): string | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') fail(path, `expected a string, got ${JSON.stringify(v)}`);
    return v as string;
  };
  const bool = (obj: Record<string, unknown>, key: string, path: string): boolean | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') fail(path, `expected true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const int = (obj: Record<string, unknown>, key: string, path: string): number | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, `expected an integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const dur = (obj: Record<string, unknown>, key: string, path: string): number | undefined => {
    const v = str(obj, key, path);
    if (v === undefined || v === '') return undefined;
    const ms = parseDuration(v);
    if (ms === null) fail(path, `${JSON.stringify(v)} is not a duration (e.g. "30s", "1m")`);
    return ms as number;
  };
  const sub = (obj: Record<string, unknown>, key: string, path: string): Record<string, unknown> | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) fail(path, 'expected an object');
    return v as Record<string, unknown>;
  };
  const cidrList = (list: string[], path: string): string[] =>
    list.map((c, i) => normalizeCIDR(c) ?? fail(`${path}[${i}]`, `${JSON.stringify(c)} is not a CIDR`));

  const cfg: ProxyConfig = { raw };
  const set = <K extends keyof ProxyConfig>(k: K, v: ProxyConfig[K] | undefined): void => {
    if (v !== undefined) cfg[k] = v;
  };
  set('hostnameOverride', str(raw, 'hostnameOverride', 'hostnameOverride') || undefined);
  set('bindAddress', str(raw, 'bindAddress', 'bindAddress') || undefined);
  set('healthzBindAddress', str(raw, 'healthzBindAddress', 'healthzBindAddress') || undefined);
  set('metricsBindAddress', str(raw, 'metricsBindAddress', 'metricsBindAddress') || undefined);
  const cc = str(raw, 'clusterCIDR', 'clusterCIDR');
  if (cc) set('clusterCIDR', cidrList(cc.split(',').map((s) => s.trim()).filter(Boolean), 'clusterCIDR'));
  set('mode', str(raw, 'mode', 'mode') || undefined);
  const npa = raw.nodePortAddresses;
  if (npa !== undefined && npa !== null) {
    if (!Array.isArray(npa) || npa.some((x) => typeof x !== 'string')) fail('nodePortAddresses', 'expected a list of strings');
    cfg.nodePortAddresses = (npa as string[]).map((s, i) =>
      s === 'primary' ? s : (normalizeCIDR(s) ?? fail(`nodePortAddresses[${i}]`, `${JSON.stringify(s)} is neither a CIDR nor "primary"`)),
    );
  }
  const dlm = str(raw, 'detectLocalMode', 'detectLocalMode');
  if (dlm) {
    if (!['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'].includes(dlm)) {
      fail('detectLocalMode', `unknown mode ${JSON.stringify(dlm)} (ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix)`);
    }
    cfg.detectLocalMode = dlm as DetectLocalModeName;
  }
  const dl = sub(raw, 'detectLocal', 'detectLocal');
  if (dl) {
    cfg.detectLocal = {};
    const b = str(dl, 'bridgeInterface', 'detectLocal.bridgeInterface');
    if (b) cfg.detectLocal.bridgeInterface = b;
    const p = str(dl, 'interfaceNamePrefix', 'detectLocal.interfaceNamePrefix');
    if (p) cfg.detectLocal.interfaceNamePrefix = p;
    const cl = dl.clusterCIDRs;
    if (Array.isArray(cl)) cfg.detectLocal.clusterCIDRs = cidrList(cl.map(String), 'detectLocal.clusterCIDRs');
  }
  const ipt = sub(raw, 'iptables', 'iptables');
  if (ipt) {
    cfg.iptables = {};
    const ma = bool(ipt, 'masqueradeAll', 'iptables.masqueradeAll');
    if (ma !== undefined) cfg.iptables.masqueradeAll = ma;
    const mb = int(ipt, 'masqueradeBit', 'iptables.masqueradeBit');
    if (mb !== undefined) {
      if (mb < 0 || mb > 31) fail('iptables.masqueradeBit', `must be in 0..31, got ${mb}`);
      cfg.iptables.masqueradeBit = mb;
    }
    const lnp = bool(ipt, 'localhostNodePorts', 'iptables.localhostNodePorts');
    if (lnp !== undefined) cfg.iptables.localhostNodePorts = lnp;
    const sp = dur(ipt, 'syncPeriod', 'iptables.syncPeriod');
    if (sp !== undefined) cfg.iptables.syncPeriod = sp;
    const msp = dur(ipt, 'minSyncPeriod', 'iptables.minSyncPeriod');
    if (msp !== undefined) cfg.iptables.minSyncPeriod = msp;
  }
  const ipvs = sub(raw, 'ipvs', 'ipvs');
  if (ipvs) cfg.ipvs = ipvs;
  const ct = sub(raw, 'conntrack', 'conntrack');
  if (ct) {
    cfg.conntrack = {};
    const c = cfg.conntrack;
    const mpc = int(ct, 'maxPerCore', 'conntrack.maxPerCore');
    if (mpc !== undefined) c.maxPerCore = mpc;
    const min = int(ct, 'min', 'conntrack.min');
    if (min !== undefined) c.min = min;
    const te = dur(ct, 'tcpEstablishedTimeout', 'conntrack.tcpEstablishedTimeout');
    if (te !== undefined) c.tcpEstablishedTimeout = te;
    const tc = dur(ct, 'tcpCloseWaitTimeout', 'conntrack.tcpCloseWaitTimeout');
    if (tc !== undefined) c.tcpCloseWaitTimeout = tc;
    const bl = bool(ct, 'tcpBeLiberal', 'conntrack.tcpBeLiberal');
    if (bl !== undefined) c.tcpBeLiberal = bl;
    const ut = dur(ct, 'udpTimeout', 'conntrack.udpTimeout');
    if (ut !== undefined) c.udpTimeout = ut;
    const us = dur(ct, 'udpStreamTimeout', 'conntrack.udpStreamTimeout');
    if (us !== undefined) c.udpStreamTimeout = us;
  }
  const cc2 = sub(raw, 'clientConnection', 'clientConnection');
  if (cc2) {
    const kc = str(cc2, 'kubeconfig', 'clientConnection.kubeconfig');
    cfg.clientConnection = kc ? { kubeconfig: kc } : {};
  }
  set('configSyncPeriod', dur(raw, 'configSyncPeriod', 'configSyncPeriod'));
  const fg = sub(raw, 'featureGates', 'featureGates');
  if (fg) {
    cfg.featureGates = {};
    for (const [k, v] of Object.entries(fg)) {
      if (typeof v !== 'boolean') fail(`featureGates.${k}`, `expected true or false, got ${JSON.stringify(v)}`);
      cfg.featureGates[k] = v as boolean;
    }
  }
  return { config: cfg, warnings };
}

/** Reads and decodes a --config file (YAML or JSON). Errors name the file and the field. */
export async function loadProxyConfig(path: string): Promise<LoadedProxyConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`${path}: not valid YAML/JSON: ${(e as Error).message}`);
  }
  return decodeProxyConfig(doc, path);
}

/** Settings for one proxy instance after defaults, --config and flags are combined. */
export interface ProxySettings {
  mode: string;
  hostname: string;
  nodeIPs: string[];
  clusterCIDRs: string[];
  detectLocalMode: DetectLocalModeName;
  bridgeInterface?: string;
  interfaceNamePrefix?: string;
  masqueradeAll: boolean;
  masqueradeBit: number;
  nodePortAddresses: string[];
  localhostNodePorts: boolean;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  conntrackTCPBeLiberal: boolean;
}

/** Flag values as given on the command line (undefined = not given). */
export interface ProxyFlags {
  hostnameOverride?: string;
  clusterCIDR?: string;
  masqueradeAll?: boolean;
  masqueradeBit?: number;
  nodePortAddresses?: string;
  localhostNodePorts?: boolean;
  detectLocalMode?: string;
  podBridgeInterface?: string;
  podInterfaceNamePrefix?: string;
  proxyMode?: string;
  nodeIP?: string;
}

function splitList(s: string): string[] {
  return s.split(',').map((x) => x.trim()).filter(Boolean);
}

/** The node's addresses the way kubelet/kube-proxy pick them: InternalIPs, else ExternalIPs; one per family, first wins. */
export function nodeIPsFromNode(node: Node | undefined): string[] {
  if (!node) return [];
  const pick = (type: string) => node.addresses.filter((a) => a.type === type).map((a) => normalizeIP(a.address)).filter((x): x is string => !!x);
  let ips = pick('InternalIP');
  if (ips.length === 0) ips = pick('ExternalIP');
  const out: string[] = [];
  for (const fam of [ipFamily(ips[0] ?? ''), 4, 6]) {
    const ip = ips.find((x) => ipFamily(x) === fam);
    if (ip && !out.includes(ip)) out.push(ip);
  }
  return out;
}

/** Defaults ← config file ← flags. Throws with the flag name on bad values. `nodes` supplies node IPs when --node-ip is absent. */
export function mergeProxySettings(cfg: ProxyConfig | undefined, flags: ProxyFlags, nodes: Node[] = []): ProxySettings {
  const hostnameRaw = flags.hostnameOverride ?? cfg?.hostnameOverride ?? hostname();
  const host = hostnameRaw.trim().toLowerCase();
  let clusterCIDRs = cfg?.detectLocal?.clusterCIDRs ?? cfg?.clusterCIDR ?? [];
  if (flags.clusterCIDR !== undefined) {
    clusterCIDRs = splitList(flags.clusterCIDR).map((c) => {
      const n = normalizeCIDR(c);
      if (!n) throw new Error(`--cluster-cidr: ${JSON.stringify(c)} is not a CIDR`);
      return n;
    });
  }
  const mode = (flags.detectLocalMode ?? cfg?.detectLocalMode ?? 'ClusterCIDR') as DetectLocalModeName;
  if (!['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'].includes(mode)) {
    throw new Error(`--detect-local-mode: unknown mode ${JSON.stringify(mode)} (ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix)`);
  }
  const bridge = flags.podBridgeInterface ?? cfg?.detectLocal?.bridgeInterface;
  const prefix = flags.podInterfaceNamePrefix ?? cfg?.detectLocal?.interfaceNamePrefix;
  if (mode === 'BridgeInterface' && !bridge) throw new Error('--detect-local-mode=BridgeInterface needs --pod-bridge-interface');
  if (mode === 'InterfaceNamePrefix' && !prefix) throw new Error('--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix');
  const bit = flags.masqueradeBit ?? cfg?.iptables?.masqueradeBit ?? 14;
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`--iptables-masquerade-bit: must be an integer in 0..31, got ${bit}`);
  let npa = cfg?.nodePortAddresses ?? [];
  if (flags.nodePortAddresses !== undefined) {
    npa = splitList(flags.nodePortAddresses).map((c) => {
      if (c === 'primary') return c;
      const n = normalizeCIDR(c);
      if (!n) throw new Error(`--nodeport-addresses: ${JSON.stringify(c)} is neither a CIDR nor "primary"`);
      return n;
    });
  }
  let nodeIPs: string[];
  if (flags.nodeIP !== undefined) {
    nodeIPs = splitList(flags.nodeIP).map((ip) => {
      const n = normalizeIP(ip);
      if (!n) throw new Error(`--node-ip: ${JSON.stringify(ip)} is not an IP address`);
      return n;
    });
  } else {
    nodeIPs = nodeIPsFromNode(nodes.find((n) => n.meta.name === host));
  }
  const settings: ProxySettings = {
    mode: flags.proxyMode ?? cfg?.mode ?? 'iptables',
    hostname: host,
    nodeIPs,
    clusterCIDRs,
    detectLocalMode: mode,
    masqueradeAll: flags.masqueradeAll ?? cfg?.iptables?.masqueradeAll ?? false,
    masqueradeBit: bit,
    nodePortAddresses: npa,
    localhostNodePorts: flags.localhostNodePorts ?? cfg?.iptables?.localhostNodePorts ?? true,
    syncPeriodMs: cfg?.iptables?.syncPeriod ?? 30_000,
    minSyncPeriodMs: cfg?.iptables?.minSyncPeriod ?? 1_000,
    conntrackTCPBeLiberal: cfg?.conntrack?.tcpBeLiberal ?? false,
  };
  if (settings.mode === '') settings.mode = 'iptables';
  if (bridge) settings.bridgeInterface = bridge;
  if (prefix) settings.interfaceNamePrefix = prefix;
  return settings;
}
