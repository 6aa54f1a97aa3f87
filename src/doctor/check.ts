// One doctor check's result. `fix` is a shell command an operator can run on
// the node (the tests run it and expect the check to pass afterwards).

export type Status = 'ok' | 'warn' | 'fail' | 'error' | 'skip';

export interface CheckResult {
  /** Stable identifier, e.g. "kernel.ip_forward". Part of the --json contract. */
  id: string;
  title: string;
  status: Status;
  /** What was seen, one fact per line. */
  evidence: string[];
  /** The command(s) that fix it, when there is one. */
  fix?: string;
}

export const severity: Record<Status, number> = { fail: 0, error: 1, warn: 2, ok: 3, skip: 4 };

export function ok(id: string, title: string, evidence: string[] = []): CheckResult {
  return { id, title, status: 'ok', evidence };
}

/** Runs a check; an exception becomes an `error` result for that check alone. */
export async function guarded(id: string, title: string, fn: () => Promise<CheckResult[]>): Promise<CheckResult[]> {
  try {
    return await fn();
  } catch (e) {
    return [{ id, title, status: 'error', evidence: [`could not run: ${e instanceof Error ? e.message : String(e)}`] }];
  }
}
