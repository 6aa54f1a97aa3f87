// The kernel edge of the iptables dataplane: which binaries to run (nft or
// legacy backend, IPv4 or IPv6), iptables-restore with upstream's flags and
// the payload on stdin, iptables-save, and single iptables commands.
import type { IPFamily } from '../../k8s/types.js';
import { exec, ExecError, type ExecResult } from '../../util/exec.js';

export type BackendName = 'nft' | 'legacy';
export type BackendChoice = BackendName | 'auto';

export interface IptablesTools {
  family: IPFamily;
  backend: BackendName;
  iptables: string;
  restore: string;
  save: string;
  /** Prefix commands with this (e.g. ['ip','netns','exec',NAME]) to act in another namespace. */
  wrap: string[];
}

/** Reads `iptables -V`: "(nf_tables)" or "(legacy)". */
export async function detectBackend(wrap: string[] = []): Promise<BackendName> {
  const r = await run(wrap, 'iptables', ['-V'], { allowFail: true });
  const text = r.stdout + r.stderr;
  if (text.includes('nf_tables')) return 'nft';
  if (text.includes('legacy')) return 'legacy';
  throw new Error(`cannot tell the iptables backend from \`iptables -V\`: ${text.trim() || 'no output'}`);
}

export async function iptablesTools(family: IPFamily, choice: BackendChoice = 'auto', wrap: string[] = []): Promise<IptablesTools> {
  const backend = choice === 'auto' ? await detectBackend(wrap) : choice;
  const base = family === 'IPv6' ? 'ip6tables' : 'iptables';
  // The plain names follow the host's alternatives; pin the backend only when asked to.
  const bin = choice === 'auto' ? base : `${base}-${backend}`;
  return { family, backend, iptables: bin, restore: `${bin}-restore`, save: `${bin}-save`, wrap };
}

function run(wrap: string[], cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): Promise<ExecResult> {
  if (wrap.length) return exec(wrap[0]!, [...wrap.slice(1), cmd, ...args], { ...opts, timeoutMs: 600_000 });
  return exec(cmd, args, { ...opts, timeoutMs: 600_000 });
}

/** An iptables-restore failure with the offending payload lines. */
export class RestoreError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly line: number | undefined,
    readonly context: string[],
  ) {
    super(message);
  }
}

/** Lines N-1..N+1 (1-based N) of a payload, numbered, for the log. */
export function linesAround(payload: string, n: number): string[] {
  const lines = payload.split('\n');
  const out: string[] = [];
  for (let i = Math.max(1, n - 1); i <= Math.min(lines.length, n + 1); i++) out.push(`${i}: ${lines[i - 1]}`);
  return out;
}

/** `iptables-restore -w 5 -W 100000 --noflush --counters`, payload on stdin. */
export async function restore(tools: IptablesTools, payload: string): Promise<void> {
  try {
    await run(tools.wrap, tools.restore, ['-w', '5', '-W', '100000', '--noflush', '--counters'], { input: payload });
  } catch (e) {
    if (!(e instanceof ExecError)) throw e;
    const stderr = e.result.stderr.trim();
    // iptables-restore says "line N failed" (legacy: "Error occurred at line: N").
    const m = /line:? (\d+)/i.exec(stderr);
    const n = m ? Number(m[1]) : undefined;
    const context = n ? linesAround(payload, n) : [];
    throw new RestoreError(`${tools.restore} failed: ${stderr || `exit ${e.result.code}`}`, stderr, n, context);
  }
}

/** `iptables-save [-t TABLE]` output. */
export async function save(tools: IptablesTools, table?: string): Promise<string> {
  const r = await run(tools.wrap, tools.save, table ? ['-t', table] : []);
  return r.stdout;
}

/** One `iptables -w …` command; returns the exit code when allowFail. */
export async function iptables(tools: IptablesTools, args: string[], allowFail = false): Promise<ExecResult> {
  return run(tools.wrap, tools.iptables, ['-w', '5', ...args], { allowFail });
}
