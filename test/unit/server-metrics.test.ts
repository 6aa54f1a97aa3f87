import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsServer, createProxyMetrics, handleMetricsRequest, networkProgrammingBuckets, syncBuckets } from '../../src/server/metrics.js';

test('upstream names, help texts and types are exposed', async () => {
  const m = createProxyMetrics();
  m.syncProxyRulesLatency.observe({ ip_family: 'IPv4' }, 0.003);
  m.iptablesRulesTotal.set({ table: 'nat', ip_family: 'IPv4' }, 42);
  m.syncProxyRulesNoLocalEndpointsTotal.set({ traffic_policy: 'external', ip_family: 'IPv4' }, 1);
  const text = await m.registry.metrics();
  const want: [string, string, string][] = [
    ['kubeproxy_sync_proxy_rules_duration_seconds', 'histogram', 'SyncProxyRules latency in seconds'],
    ['kubeproxy_sync_full_proxy_rules_duration_seconds', 'histogram', 'SyncProxyRules latency in seconds for full resyncs'],
    ['kubeproxy_sync_partial_proxy_rules_duration_seconds', 'histogram', 'SyncProxyRules latency in seconds for partial resyncs'],
    ['kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'gauge', 'The last time proxy rules were successfully synced'],
    ['kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', 'gauge', 'The last time a sync of proxy rules was queued'],
    ['kubeproxy_network_programming_duration_seconds', 'histogram', 'In Cluster Network Programming Latency in seconds'],
    ['kubeproxy_sync_proxy_rules_endpoint_changes_pending', 'gauge', 'Pending proxy rules Endpoint changes'],
    ['kubeproxy_sync_proxy_rules_endpoint_changes_total', 'counter', 'Cumulative proxy rules Endpoint changes'],
    ['kubeproxy_sync_proxy_rules_service_changes_pending', 'gauge', 'Pending proxy rules Service changes'],
    ['kubeproxy_sync_proxy_rules_service_changes_total', 'counter', 'Cumulative proxy rules Service changes'],
    ['kubeproxy_sync_proxy_rules_iptables_restore_failures_total', 'counter', 'Cumulative proxy iptables restore failures'],
    ['kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total', 'counter', 'Cumulative proxy iptables partial restore failures'],
    ['kubeproxy_sync_proxy_rules_iptables_total', 'gauge', 'Total number of iptables rules owned by kube-proxy'],
    ['kubeproxy_sync_proxy_rules_iptables_last', 'gauge', 'Number of iptables rules written by kube-proxy in last sync'],
    ['kubeproxy_sync_proxy_rules_no_local_endpoints_total', 'gauge', 'Number of services with a Local traffic policy and no endpoints'],
    ['kubeproxy_proxy_healthz_total', 'counter', 'Cumulative proxy healthz HTTP status'],
    ['kubeproxy_proxy_livez_total', 'counter', 'Cumulative proxy livez HTTP status'],
  ];
  for (const [name, type, help] of want) {
    assert.ok(text.includes(`# HELP ${name} [ALPHA] ${help}\n`), `help of ${name}`);
    assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `type of ${name}`);
  }
  assert.match(text, /kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="0\.004",ip_family="IPv4"\} 1\n/);
  assert.match(text, /kubeproxy_sync_proxy_rules_iptables_total\{table="nat",ip_family="IPv4"\} 42\n/);
  assert.match(text, /kubeproxy_sync_proxy_rules_no_local_endpoints_total\{traffic_policy="external",ip_family="IPv4"\} 1\n/);
});

test('buckets match upstream (exponential 1ms×2^k, network programming with the leading 0)', () => {
  assert.equal(syncBuckets.length, 15);
  assert.equal(syncBuckets[0], 0.001);
  assert.equal(syncBuckets[14], 16.384);
  assert.equal(networkProgrammingBuckets.length, 1 + 2 + 59 + 12 + 7);
  assert.deepEqual(networkProgrammingBuckets.slice(0, 5), [0, 0.25, 0.5, 1, 2]);
  assert.deepEqual(networkProgrammingBuckets.slice(-3), [240, 270, 300]);
});

test('metrics server routes: /metrics, /proxyMode, /healthz, /configz, 404', async () => {
  const m = createProxyMetrics();
  const opts = { bindAddress: '127.0.0.1:0', proxyMode: 'iptables', registry: m.registry, configz: () => ({ mode: 'iptables' }) };
  assert.equal((await handleMetricsRequest(opts, '/proxyMode', '')).body, 'iptables');
  assert.equal((await handleMetricsRequest(opts, '/healthz', '')).body, 'ok');
  assert.equal((await handleMetricsRequest(opts, '/healthz', 'verbose')).body, '[+]ping ok\nhealthz check passed\n');
  assert.equal((await handleMetricsRequest(opts, '/configz', '')).body, '{"kubeproxy.config.k8s.io":{"mode":"iptables"}}');
  assert.equal((await handleMetricsRequest(opts, '/x', '')).status, 404);

  const srv = new MetricsServer(opts);
  const bound = await srv.listen();
  try {
    m.iptablesRestoreFailuresTotal.inc({ ip_family: 'IPv4' });
    const res = await fetch(`http://127.0.0.1:${bound!.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /kubeproxy_sync_proxy_rules_iptables_restore_failures_total\{ip_family="IPv4"\} 1\n/);
    const pm = await fetch(`http://127.0.0.1:${bound!.port}/proxyMode`);
    assert.equal(await pm.text(), 'iptables');
  } finally {
    await srv.close();
  }
  assert.equal(await new MetricsServer({ bindAddress: '', proxyMode: 'iptables' }).listen(), undefined);
});
