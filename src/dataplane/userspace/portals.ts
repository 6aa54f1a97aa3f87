// The iptables "portals" of upstream's userspace proxier (pkg/proxy/userspace,
// removed in v1.26): nat chains that send service traffic to the proxy's own
// listening port. From pods (PREROUTING) a REDIRECT to the proxy port; from the
// node itself (OUTPUT) a DNAT to the node's IP and the proxy port, because a
// REDIRECT or a DNAT to 127.0.0.1 of locally generated traffic breaks replies.
// NodePorts match any local destination address and come last. The chains are
// ours alone, so each sync rewrites them whole with `iptables-restore --noflush`.
import { exec } from '../../util/exec.js';
import { joinHostPort } from '../../util/ip.js';
import type { UsServicePort } from './model.js';

export const CONTAINER_PORTAL_CHAIN = 'KUBE-PORTALS-CONTAINER';
export const HOST_PORTAL_CHAIN = 'KUBE-PORTALS-HOST';
export const CONTAINER_NODEPORT_CHAIN = 'KUBE-NODEPORT-CONTAINER';
export const HOST_NODEPORT_CHAIN = 'KUBE-NODEPORT-HOST';
export const NON_LOCAL_NODEPORT_CHAIN = 'KUBE-NODEPORT-NON-LOCAL';

const PORTAL_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
const NODEPORT_COMMENT = 'handle service NodePorts; NOTE: this must be the last rule in the chain';
const NON_LOCAL_COMMENT = 'Ensure that non-local NodePort traffic can flow';

/** The jump rules from the built-in chains (upstream iptablesInit), with where they go. */
export const jumpRules: { table: 'nat' | 'filter'; chain: string; position: 'prepend' | 'append'; args: string[] }[] = [
  { table: 'nat', chain: 'PREROUTING', position: 'prepend', args: ['-m', 'comment', '--comment', PORTAL_COMMENT, '-j', CONTAINER_PORTAL_CHAIN] },
  { table: 'nat', chain: 'OUTPUT', position: 'prepend', args: ['-m', 'comment', '--comment', PORTAL_COMMENT, '-j', HOST_PORTAL_CHAIN] },
  {
    table: 'nat',
    chain: 'PREROUTING',
    position: 'append',
    args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODEPORT_COMMENT, '-j', CONTAINER_NODEPORT_CHAIN],
  },
  {
    table: 'nat',
    chain: 'OUTPUT',
    position: 'append',
    args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODEPORT_COMMENT, '-j', HOST_NODEPORT_CHAIN],
  },
  { table: 'filter', chain: 'INPUT', position: 'prepend', args: ['-m', 'comment', '--comment', NON_LOCAL_COMMENT, '-j', NON_LOCAL_NODEPORT_CHAIN] },
];

export interface PortalTarget {
  sp: UsServicePort;
  /** The port the proxy listens on for this service port. */
  proxyPort: number;
}

export interface PortalOptions {
  /** Where the listeners are bound: 0.0.0.0 means REDIRECT for pod traffic, otherwise DNAT to it. */
  listenIP: string;
  /** A non-loopback address of this node, the DNAT target for traffic from the node itself. */
  hostIP: string;
}

function q(s: string): string {
  return /^[A-Za-z0-9_./:-]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, '\\$1')}"`;
}

function cidr(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

/** iptablesCommonPortalArgs, in iptables-save's field order. */
function common(sp: UsServicePort, destIP: string | undefined, destPort: number, dstLocal = false): string {
  const proto = sp.protocol.toLowerCase();
  const parts: string[] = [];
  if (destIP) parts.push(`-d ${cidr(destIP)}`);
  parts.push(`-p ${proto}`);
  if (dstLocal) parts.push('-m addrtype --dst-type LOCAL');
  parts.push(`-m comment --comment ${q(sp.key)}`, `-m ${proto} --dport ${destPort}`);
  return parts.join(' ');
}

function containerTarget(o: PortalOptions, proxyPort: number): string {
  return o.listenIP === '0.0.0.0' || o.listenIP === '::'
    ? `-j REDIRECT --to-ports ${proxyPort}`
    : `-j DNAT --to-destination ${joinHostPort(o.listenIP, proxyPort)}`;
}

function hostTarget(o: PortalOptions, proxyPort: number): string {
  const ip = o.listenIP === '0.0.0.0' || o.listenIP === '::' ? o.hostIP : o.listenIP;
  return `-j DNAT --to-destination ${joinHostPort(ip, proxyPort)}`;
}

/**
 * The iptables-restore input (for --noflush) that makes the portal chains hold
 * exactly the rules for `targets`. Mirrors upstream openOnePortal /
 * openNodePort: cluster IPs get a container and a host rule; external and LB
 * IPs get a container rule, a container rule for local destinations and a host
 * rule for local destinations; NodePorts get container and host rules matched
 * on any local address plus a filter ACCEPT for the proxy port.
 */
export function renderPortals(targets: readonly PortalTarget[], o: PortalOptions): string {
  const nat: string[] = [];
  const filter: string[] = [];
  for (const { sp, proxyPort } of targets) {
    const c = containerTarget(o, proxyPort);
    const h = hostTarget(o, proxyPort);
    nat.push(`-A ${CONTAINER_PORTAL_CHAIN} ${common(sp, sp.clusterIP, sp.port)} ${c}`);
    nat.push(`-A ${HOST_PORTAL_CHAIN} ${common(sp, sp.clusterIP, sp.port)} ${h}`);
    for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) {
      nat.push(`-A ${CONTAINER_PORTAL_CHAIN} ${common(sp, ip, sp.port)} ${c}`);
      nat.push(`-A ${CONTAINER_PORTAL_CHAIN} ${common(sp, ip, sp.port, true)} ${c}`);
      nat.push(`-A ${HOST_PORTAL_CHAIN} ${common(sp, ip, sp.port, true)} ${h}`);
    }
    if (sp.nodePort > 0) {
      nat.push(`-A ${CONTAINER_NODEPORT_CHAIN} ${common(sp, undefined, sp.nodePort)} ${c}`);
      nat.push(`-A ${HOST_NODEPORT_CHAIN} ${common(sp, undefined, sp.nodePort)} ${h}`);
      filter.push(`-A ${NON_LOCAL_NODEPORT_CHAIN} ${common(sp, undefined, proxyPort)} -m state --state NEW -j ACCEPT`);
    }
  }
  return [
    '*nat',
    `:${CONTAINER_PORTAL_CHAIN} - [0:0]`,
    `:${HOST_PORTAL_CHAIN} - [0:0]`,
    `:${CONTAINER_NODEPORT_CHAIN} - [0:0]`,
    `:${HOST_NODEPORT_CHAIN} - [0:0]`,
    ...nat,
    'COMMIT',
    '*filter',
    `:${NON_LOCAL_NODEPORT_CHAIN} - [0:0]`,
    ...filter,
    'COMMIT',
    '',
  ].join('\n');
}

export interface IptablesRunner {
  /** Runs `iptables ARGS`; returns the exit code (never throws for non-zero when allowFail). */
  iptables(args: string[], allowFail?: boolean): Promise<number>;
  restore(input: string): Promise<void>;
}

export function systemIptables(cmd = 'iptables'): IptablesRunner {
  return {
    async iptables(args, allowFail = false) {
      const r = await exec(cmd, ['-w', '5', ...args], { allowFail });
      return r.code;
    },
    async restore(input) {
      await exec(`${cmd}-restore`, ['-w', '5', '--noflush'], { input });
    },
  };
}

/** Creates the chains and the jump rules once (upstream iptablesInit), then writes the portal rules. */
export async function applyPortals(run: IptablesRunner, input: string, ensureJumps: boolean): Promise<void> {
  if (ensureJumps) {
    // The chains must exist before a rule can jump to them: an empty restore creates them.
    await run.restore(renderPortals([], { listenIP: '0.0.0.0', hostIP: '127.0.0.1' }));
    for (const j of jumpRules) {
      const exists = (await run.iptables(['-t', j.table, '-C', j.chain, ...j.args], true)) === 0;
      if (!exists) await run.iptables(['-t', j.table, j.position === 'prepend' ? '-I' : '-A', j.chain, ...j.args]);
    }
  }
  await run.restore(input);
}

/** Removes the jump rules and the chains (upstream CleanupLeftovers). Errors are ignored: nothing may be there. */
export async function removePortals(run: IptablesRunner): Promise<void> {
  for (const j of jumpRules) {
    for (let i = 0; i < 5; i++) if ((await run.iptables(['-t', j.table, '-D', j.chain, ...j.args], true)) !== 0) break;
  }
  for (const [table, chain] of [
    ['nat', CONTAINER_PORTAL_CHAIN],
    ['nat', HOST_PORTAL_CHAIN],
    ['nat', CONTAINER_NODEPORT_CHAIN],
    ['nat', HOST_NODEPORT_CHAIN],
    ['filter', NON_LOCAL_NODEPORT_CHAIN],
  ] as const) {
    await run.iptables(['-t', table, '-F', chain], true);
    await run.iptables(['-t', table, '-X', chain], true);
  }
}
