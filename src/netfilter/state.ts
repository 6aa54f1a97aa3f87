// What the simulator carries along one branch of a trace: the packet as it is
// now, its conntrack entry, the path so far, and everything it had to assume.
import type { Addr, Cidr } from './addr.js';
import type { IpsetStore } from './ipset.js';
import type { Ruleset, TableName } from './ruleset.js';

export interface Packet {
  family: 4 | 6;
  /** Lower-case protocol name: tcp, udp, sctp, icmp, icmpv6. */
  proto: string;
  src: Addr;
  dst: Addr;
  sport?: number;
  dport?: number;
  /** Incoming interface; null for locally generated packets. */
  iif: string | null;
  /** Outgoing interface; null before routing, or when the routes given do not say. */
  oif: string | null;
  mark: number;
  tcpFlags: string[];
  icmpType?: number;
}

export interface Tuple {
  src: Addr;
  dst: Addr;
  sport?: number;
  dport?: number;
}

export type CtState = 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID' | 'UNTRACKED';

export interface Conn {
  state: CtState;
  dir: 'ORIGINAL' | 'REPLY';
  /** The tuple of the connection's first packet, before any NAT. */
  orig: Tuple;
  /** DNAT / SNAT done (the status bits IPS_DST_NAT / IPS_SRC_NAT). */
  dnat: boolean;
  snat: boolean;
  masquerade: boolean;
  /** NAT bindings already set up (each is decided once per connection, at its first hook). */
  dstNatDone: boolean;
  srcNatDone: boolean;
  confirmed: boolean;
  seenReply: boolean;
  mark: number;
  /** Reply direction: conntrack has restored the original source / destination. */
  unSnatDone?: boolean;
  unDnatDone?: boolean;
}

export type StepKind =
  | 'rule'
  | 'policy'
  | 'fallthrough'
  | 'return'
  | 'not-taken'
  | 'routing'
  | 'conntrack'
  | 'nat'
  | 'deliver'
  | 'note'
  | 'ipvs';

export interface Step {
  kind: StepKind;
  table: TableName | null;
  chain: string | null;
  line: number | null;
  /** The rule text (for rules), or a sentence (for routing, conntrack and notes). */
  rule: string;
  /** What the step did: "jump KUBE-SVC-…", "DNAT → 10.0.0.1:80", "MARK 0x4000", "p=0.3333". */
  effect?: string;
  /** The netfilter hook the step happened in. */
  hook?: string;
}

export interface Uncertainty {
  line: number | null;
  table: TableName | null;
  chain: string | null;
  rule: string;
  reason: string;
}

export interface Route {
  cidr: Cidr;
  iface: string;
  via?: Addr;
  src?: Addr;
}

export interface LocalAddr {
  addr: Addr;
  iface?: string;
}

export type Verdict = 'ACCEPT' | 'DROP' | 'REJECT' | 'LOOP' | 'QUEUE' | 'STOLEN';

export interface Branch {
  prob: number;
  pkt: Packet;
  ct: Conn;
  path: Step[];
  uncertain: Uncertainty[];
  notes: string[];
  /** recent lists: name → addresses present. */
  recent: Map<string, Set<string>>;
  /** Set once the branch has ended. */
  verdict?: Verdict;
  rejectWith?: string;
  delivery?: 'local' | 'forward' | 'none';
  /** Steps taken: bounds every walk. */
  budget: number;
}

/** A point where another component chooses where the packet goes next (IPVS: a real server for a local VIP). */
export interface LocalDeliveryChoice {
  probability: number;
  /** The new destination (the real server). */
  dst: Addr;
  dport?: number;
  /** One line for the path: "IPVS 10.96.0.1:443 rr → 10.0.0.5:6443". */
  note: string;
}

export interface Env {
  rs: Ruleset;
  locals: LocalAddr[];
  /** 'given' (--local-ip), 'inferred' (from the dump) or 'none' (only loopback is known). */
  localKnowledge: 'given' | 'inferred' | 'none';
  routes: Route[];
  ipsets: IpsetStore | null;
  /**
   * Called when a packet is about to be delivered to a local address after INPUT. Return
   * choices to send it on (as IPVS does for a virtual server), or null to deliver locally.
   */
  localDelivery?: (pkt: Packet) => LocalDeliveryChoice[] | null;
  maxBranches: number;
}

export function cloneBranch(b: Branch): Branch {
  return {
    prob: b.prob,
    pkt: { ...b.pkt, tcpFlags: b.pkt.tcpFlags },
    ct: { ...b.ct, orig: { ...b.ct.orig } },
    path: b.path.slice(),
    uncertain: b.uncertain.slice(),
    notes: b.notes.slice(),
    recent: b.recent.size ? new Map([...b.recent].map(([k, v]) => [k, new Set(v)])) : new Map(),
    verdict: b.verdict,
    rejectWith: b.rejectWith,
    delivery: b.delivery,
    budget: b.budget,
  };
}
