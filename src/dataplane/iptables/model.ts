// The structured form of an iptables-mode ruleset for one IP family: the
// renderer produces it, `render` prints it as one iptables-restore payload,
// and the node agent diffs two of them to program only what changed.
//
// Every rule is kept as its full restore line ("-A CHAIN args…"), exactly as
// upstream writes it, so the same text serves the full payload, a `-D` of the
// identical rule spec, or an `-I CHAIN N` of it.
import type { IPFamily } from '../../k8s/types.js';

export type TableName = 'filter' | 'nat';

/** Chain name → its rules, in order. A Map keeps declaration order. */
export type ChainMap = Map<string, string[]>;

/** What one service port contributes to the ruleset. */
export interface ServicePortRules {
  /** ServicePortName.String(): "ns/name" or "ns/name:port". */
  key: string;
  /** Rules it appends to the shared chains (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES, KUBE-PROXY-FIREWALL), per table. */
  shared: Record<TableName, ChainMap>;
  /** The nat chains it owns (KUBE-SVC/SVL/EXT/FW/SEP-…), each with its rules. */
  chains: ChainMap;
}

/**
 * A rule kube-proxy keeps in a built-in chain with `iptables -I` (ensured on full syncs, never
 * duplicated). Its target chain (the argument after "-j") must exist first: create it with
 * `iptables -t TABLE -N CHAIN` when missing, as upstream's EnsureChain does (KUBE-FIREWALL is
 * not in every payload).
 */
export interface JumpRule {
  table: TableName;
  /** The built-in chain: PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING. */
  chain: string;
  /** The rule's arguments, without "-A CHAIN" (e.g. ["-m","comment","--comment","kubernetes service portals","-j","KUBE-SERVICES"]). */
  args: string[];
}

export interface IptablesRuleset {
  family: IPFamily;
  /** The fixed chains with their own rules: declared in this order in each table (upstream's order). */
  fixed: Record<TableName, ChainMap>;
  /** Rules that must be written after every service's rules in a shared chain (the KUBE-SERVICES → KUBE-NODEPORTS jump(s)). */
  trailing: Record<TableName, ChainMap>;
  /** One entry per service port, sorted by key. */
  services: ServicePortRules[];
  /** Jump rules from the built-in chains. */
  jumps: JumpRule[];
  /** Total endpoints across services: over 1000 turns on large-cluster mode. */
  endpointCount: number;
  largeClusterMode: boolean;
  /** Service ports left out of the rules, and why (e.g. a name that is unsafe to print in a comment). */
  skipped: { key: string; reason: string }[];
}
