// The kube-proxy flags that decide what rules a node gets, shared by every
// command that renders them (render, run, doctor): one definition, one
// mapping onto ProxyFlags, so the commands cannot drift apart.
import type { Command } from 'commander';
import { InvalidArgumentError } from './commander.js';
import type { ProxyFlags } from '../proxy/config.js';

export interface ProxyCliOptions {
  hostnameOverride?: string;
  clusterCidr?: string;
  masqueradeAll?: boolean;
  iptablesMasqueradeBit?: number;
  nodeportAddresses?: string;
  iptablesLocalhostNodeports?: boolean;
  detectLocalMode?: string;
  podBridgeInterface?: string;
  podInterfaceNamePrefix?: string;
  config?: string;
  proxyMode?: string;
  nodeIp?: string;
}

export function parseBool(flag: string) {
  return (v: string | undefined): boolean => {
    if (v === undefined || v === 'true') return true;
    if (v === 'false') return false;
    throw new InvalidArgumentError(`${flag} takes true or false, not ${JSON.stringify(v)}`);
  };
}

export function parseIntArg(flag: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${flag} takes an integer, not ${JSON.stringify(v)}`);
    return Number(v);
  };
}

/** Adds the rule-shaping flags, with kube-proxy's names, to a command. */
export function addProxyFlags(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file; flags override it')
    .option('--hostname-override <name>', "this node's name (default: the host name)")
    .option('--node-ip <ip[,ip]>', "this node's IP(s) (default: from its Node object)")
    .option('--proxy-mode <mode>', 'iptables (default), ipvs, userspace')
    .option('--cluster-cidr <cidr[,cidr]>', 'pod CIDR(s), to tell pod traffic from external traffic')
    .option('--detect-local-mode <mode>', 'ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix')
    .option('--pod-bridge-interface <name>', 'bridge of the pods (BridgeInterface mode)')
    .option('--pod-interface-name-prefix <prefix>', 'prefix of pod interfaces (InterfaceNamePrefix mode)')
    .option('--masquerade-all [bool]', 'SNAT all traffic to service IPs', parseBool('--masquerade-all'))
    .option('--iptables-masquerade-bit <n>', 'fwmark bit for packets to SNAT (default 14)', parseIntArg('--iptables-masquerade-bit'))
    .option('--nodeport-addresses <cidr[,cidr]>', 'addresses NodePorts answer on: CIDRs or "primary" (default: all)')
    .option('--iptables-localhost-nodeports [bool]', 'NodePorts reachable on 127.0.0.1 (default true)', parseBool('--iptables-localhost-nodeports'));
}

export function proxyFlagsFrom(o: ProxyCliOptions): ProxyFlags {
  const flags: ProxyFlags = {};
  if (o.hostnameOverride !== undefined) flags.hostnameOverride = o.hostnameOverride;
  if (o.clusterCidr !== undefined) flags.clusterCIDR = o.clusterCidr;
  if (o.masqueradeAll !== undefined) flags.masqueradeAll = o.masqueradeAll;
  if (o.iptablesMasqueradeBit !== undefined) flags.masqueradeBit = o.iptablesMasqueradeBit;
  if (o.nodeportAddresses !== undefined) flags.nodePortAddresses = o.nodeportAddresses;
  if (o.iptablesLocalhostNodeports !== undefined) flags.localhostNodePorts = o.iptablesLocalhostNodeports;
  if (o.detectLocalMode !== undefined) flags.detectLocalMode = o.detectLocalMode;
  if (o.podBridgeInterface !== undefined) flags.podBridgeInterface = o.podBridgeInterface;
  if (o.podInterfaceNamePrefix !== undefined) flags.podInterfaceNamePrefix = o.podInterfaceNamePrefix;
  if (o.proxyMode !== undefined) flags.proxyMode = o.proxyMode;
  if (o.nodeIp !== undefined) flags.nodeIP = o.nodeIp;
  return flags;
}
