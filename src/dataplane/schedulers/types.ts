// The shapes every scheduler works on. They mirror what the kernel's IPVS
// schedulers see of a destination (weight, activeconns, inactconns, flags),
// so the same module can drive the userspace proxy and model an ipvs node.

export interface SchedServer {
  /** Stable identity of the destination, e.g. "10.0.1.5:8080". */
  key: string;
  ip: string;
  port: number;
  /** 0 quiesces the server: no new connections, existing ones continue. */
  weight: number;
  /** Open, established connections (IPVS activeconns). */
  activeConns: number;
  /** Connections not established any more or not "active" (IPVS inactconns: half-closed TCP, UDP sessions). */
  inactiveConns: number;
  /** false is treated like the kernel's OVERLOAD flag: never chosen. Default true. */
  available?: boolean;
}

export interface ClientInfo {
  srcIP: string;
  srcPort?: number;
  /** The virtual address the client asked for (dh hashes it). */
  dstIP?: string;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /** Picks a server for a new connection, or undefined when the kernel would drop it. */
  schedule(servers: readonly SchedServer[], client: ClientInfo): SchedServer | undefined;
  /**
   * Tells the scheduler the destination list changed (added, removed, re-weighted),
   * as the kernel's add_dest/del_dest/upd_dest hooks do. schedule() also calls it
   * by itself when it notices the list changed, so callers may skip it.
   */
  update(servers: readonly SchedServer[]): void;
}

export const schedulerNames = ['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'dh', 'sh', 'mh'] as const;
export type SchedulerName = (typeof schedulerNames)[number];

/** The scheduler flags ipvsadm accepts (-b): flag-1 is sh-fallback/mh-fallback, flag-2 sh-port/mh-port. */
export const schedulerFlagNames = ['sh-fallback', 'sh-port', 'mh-fallback', 'mh-port', 'flag-1', 'flag-2', 'flag-3'] as const;
export type SchedulerFlag = (typeof schedulerFlagNames)[number];

export interface SchedulerFlags {
  /** On an unavailable hashed server, walk the table for another (IP_VS_SVC_F_SCHED1). */
  fallback: boolean;
  /** Hash the source port too (IP_VS_SVC_F_SCHED2). */
  port: boolean;
}

export function isUsable(s: SchedServer): boolean {
  return s.available !== false && s.weight > 0;
}

/** A signature of the destination list as the kernel's change hooks see it: order, identity, weight. */
export function listSignature(servers: readonly SchedServer[]): string {
  return servers.map((s) => `${s.key}/${s.weight}`).join(',');
}
