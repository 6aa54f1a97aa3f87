// The demo's printed report (pure): one row per request and the spread of
// answers over pods, so a reader sees the random choice of the KUBE-SVC chain.
import { parseAnswer } from './pod-server.js';

export interface DemoRequest {
  from: string;
  to: string;
  ok: boolean;
  /** The pod server's answer line, or the error. */
  answer: string;
}

export interface DemoTally {
  total: number;
  failed: number;
  byPod: Map<string, number>;
}

export function tally(reqs: DemoRequest[]): DemoTally {
  const byPod = new Map<string, number>();
  let failed = 0;
  for (const r of reqs) {
    const a = r.ok ? parseAnswer(r.answer) : undefined;
    if (!a) {
      failed++;
      continue;
    }
    byPod.set(a.pod, (byPod.get(a.pod) ?? 0) + 1);
  }
  return { total: reqs.length, failed, byPod };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s + ' ' : s.padEnd(n);
}

export function formatRequests(reqs: DemoRequest[]): string {
  const w1 = Math.max(4, ...reqs.map((r) => r.from.length)) + 2;
  const w2 = Math.max(2, ...reqs.map((r) => r.to.length)) + 2;
  const w3 = Math.max(11, ...reqs.map((r) => parseAnswer(r.answer)?.pod.length ?? 0)) + 2;
  const lines = [`  ${pad('#', 4)}${pad('from', w1)}${pad('to', w2)}${pad('answered by', w3)}pod saw the client as`];
  reqs.forEach((r, i) => {
    const a = r.ok ? parseAnswer(r.answer) : undefined;
    const who = a ? a.pod : 'FAILED';
    const saw = a ? a.client.replace(/:\d+$/, '') : r.answer;
    lines.push(`  ${pad(String(i + 1), 4)}${pad(r.from, w1)}${pad(r.to, w2)}${pad(who, w3)}${saw}`);
  });
  return lines.join('\n');
}

export function formatSpread(t: DemoTally, pods: string[]): string {
  const names = [...new Set([...pods, ...t.byPod.keys()])];
  const answered = t.total - t.failed;
  const w = Math.max(...names.map((n) => n.length)) + 2;
  const lines = [`spread over ${answered} answered request${answered === 1 ? '' : 's'}${t.failed ? ` (${t.failed} failed)` : ''}:`];
  for (const n of names) {
    const c = t.byPod.get(n) ?? 0;
    const share = answered ? c / answered : 0;
    const bar = '█'.repeat(Math.round(share * 30)).padEnd(30, '·');
    lines.push(`  ${pad(n, w)}${bar} ${String(c).padStart(3)}  ${(share * 100).toFixed(0).padStart(3)}%`);
  }
  if (names.length > 1) lines.push(`  (each endpoint has probability 1/${names.length} ≈ ${(100 / names.length).toFixed(0)}% per new connection)`);
  return lines.join('\n');
}
