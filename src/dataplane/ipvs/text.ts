// The text forms of a rendered ipvs node: `ipvsadm -Sn` lines (what
// ipvsadm-restore reads), `ipset restore` input, and the whole node printed
// with headers for `kproxy render --proxy-mode ipvs`.
import type { Protocol } from '../../k8s/types.js';
import { joinHostPort } from '../../util/ip.js';
import type { IpsetSpec, IpvsRender, VirtualServer } from './model.js';
import { DUMMY_DEVICE } from './names.js';

/** ipvsadm's service switch in save format (-t, -u, --sctp-service). */
export function ipvsadmProtoSwitch(p: Protocol): string {
  return p === 'TCP' ? '-t' : p === 'UDP' ? '-u' : '--sctp-service';
}

/** The "-A …" line of a virtual server, as `ipvsadm -Sn` prints it (ipvsadm 1.31 field order). */
export function formatVirtualServerLine(vs: VirtualServer): string {
  let s = `-A ${ipvsadmProtoSwitch(vs.protocol)} ${joinHostPort(vs.address, vs.port)} -s ${vs.scheduler}`;
  if (vs.persistentTimeout !== undefined) s += ` -p ${vs.persistentTimeout}`;
  if (vs.schedFlags.length > 0) s += ` -b ${vs.schedFlags.join(',')}`;
  return s;
}

export function formatIpvsadmRestore(vss: readonly VirtualServer[]): string {
  const out: string[] = [];
  for (const vs of vss) {
    out.push(formatVirtualServerLine(vs));
    const svc = `${ipvsadmProtoSwitch(vs.protocol)} ${joinHostPort(vs.address, vs.port)}`;
    for (const rs of vs.realServers) out.push(`-a ${svc} -r ${joinHostPort(rs.address, rs.port)} -m -w ${rs.weight}`);
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/** `create NAME TYPE …` as upstream's ipset runner builds it (the comment is not passed to ipset). */
export function formatIpsetCreate(set: IpsetSpec): string {
  if (set.type === 'bitmap:port') return `create ${set.name} bitmap:port range 0-65535 -exist`;
  return `create ${set.name} ${set.type} family ${set.family} hashsize 1024 maxelem 65536 -exist`;
}

export function formatIpsetRestore(sets: readonly IpsetSpec[]): string {
  const out: string[] = [];
  for (const s of sets) out.push(formatIpsetCreate(s));
  for (const s of sets) for (const e of s.entries) out.push(`add ${s.name} ${e} -exist`);
  return out.join('\n') + '\n';
}

function ipWithPrefix(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

/** The four parts of one family, each under a header, for `kproxy render --proxy-mode ipvs`. */
export function renderIpvsText(r: IpvsRender): string {
  const fam = r.family;
  const out: string[] = [];
  out.push(`### ${fam}: addresses on ${DUMMY_DEVICE} (ip addr add ADDR dev ${DUMMY_DEVICE})`);
  for (const a of r.interfaceAddresses) out.push(ipWithPrefix(a));
  out.push('');
  out.push(`### ${fam}: IPVS virtual servers (ipvsadm-restore input; scheduler ${r.scheduler})`);
  out.push(r.ipvsadmRestore.trimEnd());
  out.push('');
  out.push(`### ${fam}: ipsets (ipset restore input)`);
  out.push(r.ipsetRestore.trimEnd());
  out.push('');
  out.push(`### ${fam}: iptables (iptables-restore --noflush input)`);
  out.push('# jumps from the built-in chains, each ensured with iptables -I (prepended, only when absent):');
  for (const j of r.jumps) out.push(`# -t ${j.table} -I ${j.chain} ${j.args.join(' ')}`);
  out.push(r.iptablesRestore.trimEnd());
  return out.join('\n') + '\n';
}
