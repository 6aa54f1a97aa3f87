// Running external tools (iptables-restore, ip, conntrack, …) without a shell:
// argv only, stdin as a string, stdout/stderr collected, a clear error on failure.
import { spawn } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ExecError extends Error {
  constructor(
    readonly cmd: string[],
    readonly result: ExecResult,
  ) {
    super(`${cmd.join(' ')} exited with ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  }
}

export interface ExecOptions {
  input?: string;
  /** Do not throw on a non-zero exit. */
  allowFail?: boolean;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Hands stdout over a line at a time instead of collecting it (the result's
   * stdout is then empty): for listings too large to hold as one string.
   */
  onStdoutLine?: (line: string) => void;
}

/** Inputs from this size on (nft or iptables-restore loading a large table) run their tool with bulkEnv. */
export const BULK_INPUT_CHARS = 1 << 20;

/**
 * The environment for a tool that will malloc hundreds of MiB (nft loading 120k elements:
 * 266 MiB, 66k page faults). glibc's malloc then takes transparent huge pages (where the
 * kernel offers them on madvise) and grows its heap 64 MiB at a time: nft -f of a 10k-service
 * table 1.73 s -> 0.95 s, iptables-restore of 86k lines 1.33 -> 1.13 s on this machine. Small
 * calls are left alone (the first huge page costs them ~0.6 ms). A user's own GLIBC_TUNABLES
 * come after ours and win; glibc before 2.35 ignores the tunable.
 */
export function bulkEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const ours = 'glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864';
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ? `${ours}:${env.GLIBC_TUNABLES}` : ours };
}

export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const env = (opts.input?.length ?? 0) >= BULK_INPUT_CHARS ? bulkEnv(opts.env) : (opts.env ?? process.env);
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    let carry = '';
    let lineError: Error | undefined;
    const onLine = opts.onStdoutLine;
    if (onLine) {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        if (lineError) return;
        const lines = (carry + chunk).split('\n');
        carry = lines.pop()!;
        try {
          for (const l of lines) onLine(l);
        } catch (e) {
          lineError ??= e as Error;
          child.kill('SIGKILL');
        }
      });
    } else child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      try {
        if (onLine && carry && !lineError) onLine(carry);
      } catch (e) {
        lineError = e as Error;
      }
      if (lineError) return reject(lineError);
      const result = {
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString() + (signal ? `\nkilled by ${signal}` : ''),
      };
      if (result.code !== 0 && !opts.allowFail) reject(new ExecError([cmd, ...args], result));
      else resolve(result);
    });
    child.stdin.on('error', () => {
      /* the tool may exit before reading all of stdin; its exit code tells */
    });
    child.stdin.end(opts.input ?? '');
  });
}
