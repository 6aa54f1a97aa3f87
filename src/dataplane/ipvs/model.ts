// What ipvs mode programs on a node, for one IP family: the structured form
// `renderIpvs` produces and the text forms (ipvsadm-restore, ipset restore,
// iptables-restore) are printed from.
import type { IPFamily, Protocol } from '../../k8s/types.js';
import type { IpsetType } from './names.js';

export type VirtualServerKind = 'ClusterIP' | 'ExternalIP' | 'LoadBalancer' | 'NodePort';

export interface RealServer {
  address: string;
  port: number;
  /** Always 1 from kube-proxy (its first sync resets any other weight). */
  weight: number;
  /** kube-proxy uses NAT ("Masq", ipvsadm -m) only. */
  forward: 'masq';
}

export interface VirtualServer {
  protocol: Protocol;
  address: string;
  port: number;
  scheduler: string;
  /** Set for sessionAffinity ClientIP: IP_VS_SVC_F_PERSISTENT with this timeout (ipvsadm -p). */
  persistentTimeout?: number;
  /** Scheduler flags as ipvsadm names them (-b): "mh-port" when the scheduler is mh. */
  schedFlags: string[];
  /** Why it exists, and for which service port ("ns/name:port"). */
  kind: VirtualServerKind;
  service: string;
  /** The address is bound to kube-ipvs0 (ClusterIPs always; external and LB IPs unless already a node address). */
  bound: boolean;
  realServers: RealServer[];
}

export interface IpsetSpec {
  /** The family's name (KUBE-6-… for IPv6). */
  name: string;
  type: IpsetType;
  /** "inet" / "inet6"; bitmap:port sets have no family. */
  family: 'inet' | 'inet6';
  comment: string;
  /** Entries in ipset's text form, sorted as strings (upstream adds them from a sorted set). */
  entries: string[];
}

export interface IpvsJumpRule {
  table: 'nat' | 'filter';
  chain: string;
  /** The rule without "-A CHAIN": e.g. -m comment --comment "kubernetes service portals" -j KUBE-SERVICES */
  args: string[];
}

export interface IpvsRender {
  family: IPFamily;
  scheduler: string;
  /** Addresses kube-ipvs0 carries (ip addr add ADDR/32 or /128 dev kube-ipvs0), sorted. */
  interfaceAddresses: string[];
  virtualServers: VirtualServer[];
  ipsets: IpsetSpec[];
  /** nat and filter rules, each "-A CHAIN …" line exactly as written to iptables-restore. */
  natRules: string[];
  filterRules: string[];
  /** Ensured separately with `iptables -I` (prepend, only when absent), in upstream's order. */
  jumps: IpvsJumpRule[];
  /** Node addresses NodePort virtual servers were made on. */
  nodePortAddresses: string[];
  ipvsadmRestore: string;
  ipsetRestore: string;
  /** The payload for `iptables-restore --noflush` (upstream's NoFlushTables). */
  iptablesRestore: string;
}
