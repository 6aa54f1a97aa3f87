// Host capabilities that change rule text. Side effects live here so the
// renderer stays pure: callers detect once and pass the result in RenderOptions.
import { readFile } from 'node:fs/promises';
import { exec } from '../../util/exec.js';

/** "iptables v1.8.9 (nf_tables)" → [1, 8, 9]. */
export function parseIptablesVersion(text: string): [number, number, number] | null {
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

function atLeast(v: [number, number, number], min: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (v[i]! !== min[i]!) return v[i]! > min[i]!;
  return true;
}

/** MASQUERADE --random-fully (and iptables-restore -w/-W) arrived in iptables 1.6.2, as upstream checks. */
export const RANDOM_FULLY_MIN_VERSION: [number, number, number] = [1, 6, 2];

export function versionSupportsRandomFully(versionText: string): boolean {
  const v = parseIptablesVersion(versionText);
  return v !== null && atLeast(v, RANDOM_FULLY_MIN_VERSION);
}

/** Runs `iptables --version`; false when iptables is missing or too old. */
export async function detectRandomFully(binary = 'iptables'): Promise<boolean> {
  try {
    const r = await exec(binary, ['--version']);
    return versionSupportsRandomFully(r.stdout + r.stderr);
  } catch {
    return false;
  }
}

/** sysctl net.netfilter.nf_conntrack_tcp_be_liberal is non-zero (then upstream writes no INVALID drop rule). */
export async function detectConntrackTCPBeLiberal(): Promise<boolean> {
  try {
    const v = await readFile('/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal', 'utf8');
    return v.trim() !== '0';
  } catch {
    return false;
  }
}
