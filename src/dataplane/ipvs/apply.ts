// Programming a rendered ipvs node into the kernel, and the start-up check
// that the kernel can do it at all (IPVS and the dummy interface type).
// The diffs are pure and unit-tested; the appliers at the bottom run
// ipvsadm -R (restore without ipvsadm-restore's flush), ipset restore, ip and
// iptables-restore.
import { existsSync } from 'node:fs';
import { exec } from '../../util/exec.js';
import { runPrefix } from '../../lab/netns.js';
import { cidrContains, joinHostPort, splitHostPort } from '../../util/ip.js';
import type { IpvsRender, IpsetSpec, VirtualServer } from './model.js';
import { DUMMY_DEVICE } from './names.js';
import { formatIpsetCreate, formatVirtualServerLine, ipvsadmProtoSwitch } from './text.js';
import { parseIpvsadm } from '../../netfilter/ipvs-parse.js';
import { parseSave } from '../iptables/sync-save.js';

export interface IpvsKernelSupport {
  ipvs: boolean;
  dummy: boolean;
  /** Why a feature is missing, one line each. */
  problems: string[];
}

/**
 * Checks for what ipvs mode needs: IPVS (/proc/net/ip_vs, loading ip_vs when
 * absent, as libipvs does) and the dummy link type (tried in a throwaway
 * network namespace so the host is never touched).
 */
export async function checkIpvsKernel(): Promise<IpvsKernelSupport> {
  const problems: string[] = [];
  let ipvs = existsSync('/proc/net/ip_vs');
  if (!ipvs) {
    const r = await exec('modprobe', ['ip_vs'], { allowFail: true, timeoutMs: 10_000 }).catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
    ipvs = r.code === 0 && existsSync('/proc/net/ip_vs');
    if (!ipvs) problems.push(`IPVS (ip_vs): /proc/net/ip_vs is absent and modprobe ip_vs failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`.trim());
  }
  const ns = `${runPrefix('kpchk')}`;
  let dummy = false;
  const add = await exec('ip', ['netns', 'add', ns], { allowFail: true });
  if (add.code !== 0) {
    problems.push(`dummy interfaces: cannot create a network namespace to test them: ${add.stderr.trim()}`);
  } else {
    try {
      const r = await exec('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', 'kpdummy0', 'type', 'dummy'], { allowFail: true });
      dummy = r.code === 0;
      if (!dummy) problems.push(`dummy interfaces (CONFIG_DUMMY): ip link add … type dummy failed: ${r.stderr.trim()}`);
    } finally {
      await exec('ip', ['netns', 'delete', ns], { allowFail: true });
    }
  }
  return { ipvs, dummy, problems };
}

// ---- ipvsadm ---------------------------------------------------------------

/** A virtual server as `ipvsadm -Sn` shows it, for diffing. */
export interface SavedVirtualServer {
  /** "-t 10.0.0.1:80" */
  id: string;
  /** The whole "-A …" line. */
  line: string;
  /** "-r EP:PORT" → whole "-a …" line. */
  dests: Map<string, string>;
}

/** Reads `ipvsadm -Sn` output into comparable pieces (only what kproxy writes: -A and -a lines). */
export function readIpvsadmSave(text: string): Map<string, SavedVirtualServer> {
  const out = new Map<string, SavedVirtualServer>();
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/\s+/g, ' ');
    const m = /^-(A|a) (-t|-u|--sctp-service) (\S+)(.*)$/.exec(line);
    if (!m) continue;
    const id = `${m[2]} ${m[3]}`;
    if (m[1] === 'A') out.set(id, { id, line, dests: out.get(id)?.dests ?? new Map() });
    else {
      const r = /-r (\S+)/.exec(m[4]!);
      if (!r) continue;
      let vs = out.get(id);
      if (!vs) out.set(id, (vs = { id, line: '', dests: new Map() }));
      vs.dests.set(r[1]!, line);
    }
  }
  return out;
}

/**
 * The `ipvsadm -R` input that turns `current` (ipvsadm -Sn) into `desired`:
 * new services added, changed ones edited (-E), stale ones deleted; destinations
 * likewise. Only services of the given address family are considered stale,
 * so the IPv4 and IPv6 syncs leave each other alone (upstream cleanLegacyService).
 */
/** Open connections (active + inactive) per "-t VIP:PORT" service and "EP:PORT" real server, from `ipvsadm -Ln`. */
export type ConnCounts = Map<string, Map<string, number>>;

export function connCountsFromListing(listing: string): ConnCounts {
  const out: ConnCounts = new Map();
  for (const s of parseIpvsadm(listing).services) {
    if (!s.proto || s.address === undefined) continue;
    const id = `${s.proto === 'tcp' ? '-t' : s.proto === 'udp' ? '-u' : '--sctp-service'} ${joinHostPort(s.address, s.port!)}`;
    out.set(id, new Map(s.dests.map((d) => [joinHostPort(d.address, d.port), (d.activeConns ?? 0) + (d.inactiveConns ?? 0)])));
  }
  return out;
}

export function ipvsadmSyncScript(
  desired: readonly VirtualServer[],
  currentSave: string,
  family: 'IPv4' | 'IPv6',
  excludeCIDRs: readonly string[] = [],
  conns?: ConnCounts,
): string {
  const current = readIpvsadmSave(currentSave);
  const out: string[] = [];
  const want = new Set<string>();
  for (const vs of desired) {
    const id = `${ipvsadmProtoSwitch(vs.protocol)} ${joinHostPort(vs.address, vs.port)}`;
    want.add(id);
    const line = formatVirtualServerLine(vs);
    const cur = current.get(id);
    if (!cur || !cur.line) out.push(line);
    else if (cur.line !== line) out.push(line.replace(/^-A /, '-E '));
    const wantDests = new Set<string>();
    for (const rs of vs.realServers) {
      const r = joinHostPort(rs.address, rs.port);
      wantDests.add(r);
      const dline = `-a ${id} -r ${r} -m -w ${rs.weight}`;
      const have = cur?.dests.get(r);
      if (!have) out.push(dline);
      else if (have !== dline) out.push(dline.replace(/^-a /, '-e '));
    }
    for (const r of cur?.dests.keys() ?? []) {
      if (wantDests.has(r)) continue;
      // Upstream's graceful termination: a TCP real server with connections left is quiesced
      // (weight 0) and deleted by a later sync once they are gone; UDP and SCTP go at once.
      const open = conns?.get(id)?.get(r) ?? 0;
      if (vs.protocol === 'TCP' && open > 0) {
        const quiesced = `-e ${id} -r ${r} -m -w 0`;
        if (cur?.dests.get(r) !== `-a ${id} -r ${r} -m -w 0`) out.push(quiesced);
      } else out.push(`-d ${id} -r ${r}`);
    }
  }
  for (const id of current.keys()) {
    const isV6 = id.includes('[');
    if ((family === 'IPv6') !== isV6) continue;
    // --ipvs-exclude-cidrs: virtual servers someone else owns are left alone (upstream isIPInExcludeCIDRs).
    const host = splitHostPort(id.split(' ')[1]!).host;
    if (excludeCIDRs.some((c) => cidrContains(c, host))) continue;
    if (!want.has(id)) out.push(`-D ${id}`);
  }
  return out.length ? out.join('\n') + '\n' : '';
}

// ---- ipset -----------------------------------------------------------------

/** Members per set from `ipset save`. */
export function readIpsetSave(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const raw of text.split('\n')) {
    const f = raw.trim().split(/\s+/);
    if (f[0] === 'create' && f[1]) {
      if (!out.has(f[1])) out.set(f[1], new Set());
    } else if (f[0] === 'add' && f[1] && f[2]) {
      let s = out.get(f[1]);
      if (!s) out.set(f[1], (s = new Set()));
      s.add(f[2]);
    }
  }
  return out;
}

/** `ipset restore` input that makes every set exist with exactly the desired members (upstream syncIPSetEntries). */
export function ipsetSyncScript(sets: readonly IpsetSpec[], currentSave: string): string {
  const current = readIpsetSave(currentSave);
  const out: string[] = sets.map(formatIpsetCreate);
  for (const s of sets) {
    const have = current.get(s.name) ?? new Set<string>();
    const want = new Set(s.entries);
    for (const e of [...have].sort()) if (!want.has(e)) out.push(`del ${s.name} ${e}`);
    for (const e of s.entries) if (!have.has(e)) out.push(`add ${s.name} ${e} -exist`);
  }
  return out.join('\n') + '\n';
}

// ---- kube-ipvs0 addresses ----------------------------------------------------

/** Which addresses to add to and remove from kube-ipvs0 (upstream: bind as needed, unbind the superfluous). */
export function addressDiff(desired: readonly string[], current: readonly string[]): { add: string[]; del: string[] } {
  const want = new Set(desired);
  const have = new Set(current);
  return { add: desired.filter((a) => !have.has(a)), del: current.filter((a) => !want.has(a)) };
}

// ---- appliers (side effects) -------------------------------------------------

export interface ApplyOptions {
  /** Run commands through this prefix (e.g. ["ip","netns","exec","ns1"]); default none. */
  prefix?: string[];
  /** iptables-restore binary (iptables-restore / ip6tables-restore by family by default). */
  iptablesRestore?: string;
  /** --ipvs-exclude-cidrs: virtual servers in these are never deleted. */
  excludeCIDRs?: string[];
}

function run(o: ApplyOptions, cmd: string, args: string[], input?: string, allowFail = false) {
  const argv = [...(o.prefix ?? []), cmd, ...args];
  return exec(argv[0]!, argv.slice(1), { allowFail, ...(input === undefined ? {} : { input }) });
}

/**
 * The addresses bound to kube-ipvs0, creating it first when absent (one `ip`
 * call when it exists: every process counts on a slow kernel).
 */
async function dummyAddresses(o: ApplyOptions, family: 'IPv4' | 'IPv6'): Promise<string[]> {
  const args = ['-o', family === 'IPv6' ? '-6' : '-4', 'addr', 'show', 'dev', DUMMY_DEVICE];
  let r = await run(o, 'ip', args, undefined, true);
  if (r.code !== 0) {
    // Left down, as upstream leaves it: its addresses still get local routes, which is all IPVS needs.
    await run(o, 'ip', ['link', 'add', DUMMY_DEVICE, 'type', 'dummy']);
    r = await run(o, 'ip', args);
  }
  const out: string[] = [];
  for (const l of r.stdout.split('\n')) {
    const m = /\sinet6? (\S+)\//.exec(l);
    if (m) out.push(m[1]!);
  }
  return out;
}

/**
 * The jump rules missing from `save` (iptables-save of nat and filter), as
 * upstream's EnsureRule would find them; a rule whose text is not in the dump
 * is checked with `iptables -C` before it is inserted, so a formatting
 * difference costs a call, never a duplicate.
 */
export function jumpsMissingFromSave(jumps: IpvsRender['jumps'], save: string): IpvsRender['jumps'] {
  const saved = parseSave(save);
  return jumps.filter((j) => {
    const want = `-A ${j.chain} ${j.args.join(' ')}`;
    return !(saved[j.table]?.chains.get(j.chain) ?? []).some((r) => r.replace(/\s+/g, ' ') === want);
  });
}

/**
 * One sync of one family, in upstream's order: kube-ipvs0 exists, ipsets are
 * up to date, iptables rules are restored (--noflush) and jumps ensured, the
 * virtual servers are synced, and addresses no longer needed are unbound.
 */
export async function applyIpvs(r: IpvsRender, o: ApplyOptions = {}): Promise<void> {
  const bound = await dummyAddresses(o, r.family);
  const { add, del } = addressDiff(r.interfaceAddresses, bound);
  for (const a of add) await run(o, 'ip', ['addr', 'add', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', DUMMY_DEVICE]);

  const saved = await run(o, 'ipset', ['save']);
  await run(o, 'ipset', ['restore'], ipsetSyncScript(r.ipsets, saved.stdout));

  const restore = o.iptablesRestore ?? (r.family === 'IPv6' ? 'ip6tables-restore' : 'iptables-restore');
  const ipt = restore.replace(/-restore$/, '');
  await run(o, restore, ['--noflush', '--counters'], r.iptablesRestore);
  // Upstream EnsureRule per jump (iptables -C, then -I when absent): one iptables-save answers all nine checks.
  const dump = await run(o, `${ipt}-save`, [], undefined, true);
  for (const j of dump.code === 0 ? jumpsMissingFromSave(r.jumps, dump.stdout) : r.jumps) {
    const args = j.args.map((a) => a.replace(/^"(.*)"$/, '$1'));
    const check = await run(o, ipt, ['-t', j.table, '-C', j.chain, ...args], undefined, true);
    if (check.code !== 0) await run(o, ipt, ['-t', j.table, '-I', j.chain, ...args]);
  }

  const current = await run(o, 'ipvsadm', ['-Sn']);
  const excl = o.excludeCIDRs ?? [];
  let script = ipvsadmSyncScript(r.virtualServers, current.stdout, r.family, excl);
  // Open-connection counts only matter when a real server goes (graceful termination): list them only then.
  if (/^-d /m.test(script)) {
    const listing = await run(o, 'ipvsadm', ['-Ln']);
    script = ipvsadmSyncScript(r.virtualServers, current.stdout, r.family, excl, connCountsFromListing(listing.stdout));
  }
  if (script) {
    // `ipvsadm -R`, not the ipvsadm-restore wrapper: that one runs `ipvsadm -C` first, which flushes the
    // whole table (foreign services included) and would turn this diff into a partial table.
    const res = await run(o, 'ipvsadm', ['-R'], script, true);
    if (res.code !== 0) {
      throw new Error(`ipvsadm -R exited with ${res.code}: ${res.stderr.trim()}\ninput:\n${script.slice(0, 4000)}\nipvsadm -Sn before:\n${current.stdout.slice(0, 4000)}`);
    }
  }

  for (const a of del) await run(o, 'ip', ['addr', 'del', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', DUMMY_DEVICE]);
}
