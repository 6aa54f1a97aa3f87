// The doctor's two outputs: a short text report (problems first) and a
// stable JSON document (docs/doctor.md describes it).
import { severity, type CheckResult, type Status } from './check.js';

export interface Report {
  /** Bumped only on incompatible changes to this shape. */
  version: 1;
  node: string;
  summary: Record<Status, number>;
  checks: CheckResult[];
}

export function makeReport(node: string, checks: CheckResult[]): Report {
  const sorted = checks
    .map((c, i) => ({ c, i }))
    .sort((a, b) => severity[a.c.status] - severity[b.c.status] || a.i - b.i)
    .map((x) => x.c);
  const summary: Record<Status, number> = { fail: 0, error: 0, warn: 0, ok: 0, skip: 0 };
  for (const c of checks) summary[c.status]++;
  return { version: 1, node, summary, checks: sorted };
}

const label: Record<Status, string> = { fail: 'FAIL ', error: 'ERROR', warn: 'WARN ', ok: 'ok   ', skip: 'skip ' };

export function formatReport(r: Report, verbose = false): string {
  const s = r.summary;
  const lines = [
    `kproxy doctor on ${r.node}: ${s.fail} failed, ${s.warn} warning${s.warn === 1 ? '' : 's'}, ${s.error} could not run, ${s.ok} ok`,
    '',
  ];
  for (const c of r.checks) {
    const detailed = verbose || c.status === 'fail' || c.status === 'warn' || c.status === 'error';
    if (!detailed) {
      lines.push(`${label[c.status]} ${c.title}${c.evidence[0] ? ` — ${c.evidence[0]}` : ''}`);
      continue;
    }
    lines.push(`${label[c.status]} ${c.title} [${c.id}]`);
    for (const e of c.evidence) for (const l of e.split('\n')) lines.push(`      ${l}`);
    if (c.fix) lines.push(`      fix: ${c.fix}`);
  }
  return lines.join('\n') + '\n';
}

export function exitCode(r: Report): number {
  return r.summary.fail > 0 ? 1 : 0;
}
