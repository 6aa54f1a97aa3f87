// Is the agent alive and keeping up? Reads its healthz and Prometheus metrics
// the way an operator would with curl.
import type { CheckResult } from './check.js';

export interface AgentEndpoints {
  healthz: string;
  metrics: string;
  /** Sync period in seconds: a last sync older than twice this is stale. */
  syncPeriodSeconds: number;
}

async function get(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

/** Sums every sample of a metric in Prometheus text format (labels ignored). */
export function metricValue(text: string, name: string): number | undefined {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    found = true;
    sum += Number(m[3]);
  }
  return found ? sum : undefined;
}

export async function agentChecks(ep: AgentEndpoints, now = Date.now()): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const start = 'start the agent: kproxy run … (or check its DaemonSet pod: kubectl -n kube-system logs ds/kproxy)';
  try {
    const h = await get(ep.healthz);
    let healthy = h.status === 200;
    const ev = [`GET ${ep.healthz} → ${h.status}`, h.body.trim().slice(0, 300)];
    try {
      const body = JSON.parse(h.body) as { healthy?: boolean };
      if (body.healthy === false) healthy = false;
    } catch {
      ev.push('the body is not JSON');
    }
    results.push({
      id: 'agent.healthz',
      title: 'agent health endpoint',
      status: healthy ? 'ok' : 'fail',
      evidence: ev,
      ...(healthy ? {} : { fix: 'read the agent log: an update has been pending longer than 2 × the sync period (API server unreachable, or iptables-restore failing)' }),
    });
  } catch (e) {
    results.push({
      id: 'agent.healthz',
      title: 'agent health endpoint',
      status: 'fail',
      evidence: [`GET ${ep.healthz} failed: ${e instanceof Error ? e.message : String(e)}`],
      fix: start,
    });
    return results;
  }
  try {
    const m = await get(ep.metrics);
    const last = metricValue(m.body, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds');
    if (last === undefined || last === 0) {
      results.push({ id: 'agent.last_sync', title: 'last successful sync', status: 'fail', evidence: ['the agent has not completed a sync yet'], fix: start });
    } else {
      const age = now / 1000 - last;
      const stale = age > 2 * ep.syncPeriodSeconds;
      results.push({
        id: 'agent.last_sync',
        title: 'last successful sync',
        status: stale ? 'warn' : 'ok',
        evidence: [`last sync ${age.toFixed(1)} s ago (sync period ${ep.syncPeriodSeconds} s)`],
        ...(stale ? { fix: 'read the agent log for sync errors' } : {}),
      });
    }
    const failures = metricValue(m.body, 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total') ?? 0;
    results.push({
      id: 'agent.restore_failures',
      title: 'iptables-restore failures',
      status: failures > 0 ? 'warn' : 'ok',
      evidence: [`kubeproxy_sync_proxy_rules_iptables_restore_failures_total = ${failures}`],
      ...(failures > 0 ? { fix: 'read the agent log for "iptables-restore failed" and the offending lines' } : {}),
    });
  } catch (e) {
    results.push({
      id: 'agent.metrics',
      title: 'agent metrics endpoint',
      status: 'error',
      evidence: [`GET ${ep.metrics} failed: ${e instanceof Error ? e.message : String(e)}`],
    });
  }
  return results;
}
