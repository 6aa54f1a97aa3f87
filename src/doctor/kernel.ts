// Kernel settings Service traffic depends on (seed 001 §4's checklist).
// Everything is read from /proc/sys and /sys of the namespace doctor runs in;
// nothing is changed.
import { readFile, readdir, access } from 'node:fs/promises';
import type { CheckResult } from './check.js';

export interface KernelFacts {
  /** The cluster has IPv6 services, so IPv6 forwarding matters. */
  ipv6: boolean;
  /** Whether localhost NodePorts are in use (IPv4 NodePorts reachable on 127.0.0.1). */
  localhostNodePorts: boolean;
}

async function sysctl(key: string): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/sys/${key.replaceAll('.', '/')}`, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** Bridges in this namespace and the interfaces enslaved to them. */
export async function bridges(): Promise<{ name: string; ports: string[] }[]> {
  const out: { name: string; ports: string[] }[] = [];
  for (const name of (await readdir('/sys/class/net').catch(() => [] as string[])).sort()) {
    if (!(await exists(`/sys/class/net/${name}/bridge`))) continue;
    const ports = await readdir(`/sys/class/net/${name}/brif`).catch(() => [] as string[]);
    out.push({ name, ports: ports.sort() });
  }
  return out;
}

function flag(id: string, title: string, key: string, value: string | undefined, want: string, why: string): CheckResult {
  if (value === undefined)
    return { id, title, status: 'error', evidence: [`cannot read ${key} (/proc/sys/${key.replaceAll('.', '/')})`] };
  if (value === want) return { id, title, status: 'ok', evidence: [`${key} = ${value}`] };
  return { id, title, status: 'fail', evidence: [`${key} = ${value}`, why], fix: `sysctl -w ${key}=${want}` };
}

export async function kernelChecks(facts: KernelFacts): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  results.push(
    flag(
      'kernel.ip_forward',
      'IPv4 forwarding',
      'net.ipv4.ip_forward',
      await sysctl('net.ipv4.ip_forward'),
      '1',
      'packets DNATed to pods on other hosts or behind a bridge are not forwarded',
    ),
  );
  results.push(
    flag(
      'kernel.conf_all_forwarding',
      'IPv4 forwarding on all interfaces',
      'net.ipv4.conf.all.forwarding',
      await sysctl('net.ipv4.conf.all.forwarding'),
      '1',
      'interfaces do not forward IPv4 packets',
    ),
  );
  if (facts.ipv6) {
    results.push(
      flag(
        'kernel.ipv6_forwarding',
        'IPv6 forwarding',
        'net.ipv6.conf.all.forwarding',
        await sysctl('net.ipv6.conf.all.forwarding'),
        '1',
        'the cluster has IPv6 services, but IPv6 packets are not forwarded',
      ),
    );
  }

  const brs = (await bridges()).filter((b) => b.ports.length > 0);
  if (brs.length > 0) {
    const desc = brs.map((b) => `${b.name} (${b.ports.length} port${b.ports.length === 1 ? '' : 's'})`).join(', ');
    if (!(await exists('/proc/sys/net/bridge'))) {
      results.push({
        id: 'kernel.br_netfilter',
        title: 'bridged traffic passes through iptables',
        status: 'fail',
        evidence: [`pods hang off bridge(s): ${desc}`, 'br_netfilter is not loaded (/proc/sys/net/bridge is missing)'],
        fix: 'modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1',
      });
    } else {
      const why = 'pod-to-Service traffic between pods on the same bridge skips the DNAT rules, and hairpin replies bypass conntrack';
      const r = flag(
        'kernel.br_netfilter',
        'bridged traffic passes through iptables',
        'net.bridge.bridge-nf-call-iptables',
        await sysctl('net.bridge.bridge-nf-call-iptables'),
        '1',
        why,
      );
      r.evidence.unshift(`pods hang off bridge(s): ${desc}`);
      results.push(r);
      if (facts.ipv6) {
        const r6 = flag(
          'kernel.br_netfilter_ipv6',
          'bridged IPv6 traffic passes through ip6tables',
          'net.bridge.bridge-nf-call-ip6tables',
          await sysctl('net.bridge.bridge-nf-call-ip6tables'),
          '1',
          why,
        );
        results.push(r6);
      }
    }
  }

  if (facts.localhostNodePorts) {
    results.push(
      flag(
        'kernel.route_localnet',
        'NodePorts on 127.0.0.1',
        'net.ipv4.conf.all.route_localnet',
        await sysctl('net.ipv4.conf.all.route_localnet'),
        '1',
        'the rules accept NodePorts on localhost, but the kernel drops 127.0.0.0/8 packets after DNAT to a pod (kube-proxy sets this itself when localhost NodePorts are on)',
      ),
    );
  }

  const count = await sysctl('net.netfilter.nf_conntrack_count');
  const max = await sysctl('net.netfilter.nf_conntrack_max');
  if (count === undefined || max === undefined) {
    results.push({
      id: 'kernel.conntrack_table',
      title: 'conntrack table fill',
      status: 'error',
      evidence: ['cannot read net.netfilter.nf_conntrack_count/max (is nf_conntrack loaded?)'],
    });
  } else {
    const fill = Number(count) / Math.max(1, Number(max));
    const ev = [`nf_conntrack_count = ${count}`, `nf_conntrack_max = ${max}`, `fill ${(fill * 100).toFixed(1)}%`];
    const fix = `sysctl -w net.netfilter.nf_conntrack_max=${Math.max(Number(max) * 2, 131072)}`;
    if (fill >= 0.9)
      results.push({ id: 'kernel.conntrack_table', title: 'conntrack table fill', status: 'fail', evidence: [...ev, 'new connections are dropped when the table is full ("nf_conntrack: table full, dropping packet")'], fix });
    else if (fill >= 0.75)
      results.push({ id: 'kernel.conntrack_table', title: 'conntrack table fill', status: 'warn', evidence: ev, fix });
    else results.push({ id: 'kernel.conntrack_table', title: 'conntrack table fill', status: 'ok', evidence: ev });
  }
  return results;
}
