// KubeProxyConfiguration decoding and flag/config/default merging.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProxyConfig, loadProxyConfig, mergeProxySettings, nodeIPsFromNode, parseDuration } from '../../src/proxy/config.js';
import { makeNode } from './iptables-helpers.js';

const base = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };

test('durations', () => {
  assert.equal(parseDuration('30s'), 30000);
  assert.equal(parseDuration('1m30s'), 90000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1h'), 3600000);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('30'), null);
  assert.equal(parseDuration('abc'), null);
});

test('decode: the fields kproxy uses, unknown fields warned', () => {
  const { config, warnings } = decodeProxyConfig(
    {
      ...base,
      hostnameOverride: 'node-a',
      clusterCIDR: '10.244.0.0/16, fd00:10::/64',
      mode: 'iptables',
      nodePortAddresses: ['primary', '192.168.000.0/24'],
      detectLocalMode: 'BridgeInterface',
      detectLocal: { bridgeInterface: 'cni0' },
      iptables: { masqueradeAll: true, masqueradeBit: 15, localhostNodePorts: false, syncPeriod: '10s', minSyncPeriod: '500ms' },
      conntrack: { tcpBeLiberal: true, maxPerCore: 32768, tcpEstablishedTimeout: '24h' },
      featureGates: { Foo: true },
      someFutureField: 1,
    },
    'kp.yaml',
  );
  assert.deepEqual(config.clusterCIDR, ['10.244.0.0/16', 'fd00:10::/64']);
  assert.deepEqual(config.nodePortAddresses, ['primary', '192.168.0.0/24']);
  assert.equal(config.iptables?.masqueradeBit, 15);
  assert.equal(config.iptables?.syncPeriod, 10000);
  assert.equal(config.conntrack?.tcpEstablishedTimeout, 86400000);
  assert.deepEqual(warnings, ['kp.yaml: someFutureField: unknown field (ignored)']);
});

test('decode: errors name the file and the field', () => {
  assert.throws(() => decodeProxyConfig({ ...base, apiVersion: 'v1' }, 'f.yaml'), /f\.yaml: apiVersion: expected "kubeproxy/);
  assert.throws(() => decodeProxyConfig({ ...base, kind: 'Pod' }, 'f.yaml'), /f\.yaml: kind:/);
  assert.throws(() => decodeProxyConfig({ ...base, iptables: { masqueradeBit: 40 } }, 'f.yaml'), /iptables\.masqueradeBit: must be in 0\.\.31/);
  assert.throws(() => decodeProxyConfig({ ...base, iptables: { masqueradeAll: 'yes' } }, 'f.yaml'), /iptables\.masqueradeAll: expected true or false/);
  assert.throws(() => decodeProxyConfig({ ...base, nodePortAddresses: ['x'] }, 'f.yaml'), /nodePortAddresses\[0\]/);
  assert.throws(() => decodeProxyConfig({ ...base, detectLocalMode: 'Magic' }, 'f.yaml'), /detectLocalMode: unknown mode/);
  assert.throws(() => decodeProxyConfig({ ...base, iptables: { syncPeriod: 'soon' } }, 'f.yaml'), /iptables\.syncPeriod: "soon" is not a duration/);
  assert.throws(() => decodeProxyConfig([], 'f.yaml'), /expected a KubeProxyConfiguration object/);
});

test('loadProxyConfig reads YAML files and reports unreadable ones', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-config-'));
  const f = join(dir, 'kube-proxy.yaml');
  writeFileSync(f, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\nmode: ""\n');
  const { config } = await loadProxyConfig(f);
  assert.deepEqual(config.clusterCIDR, ['10.244.0.0/16']);
  await assert.rejects(loadProxyConfig(join(dir, 'nope.yaml')), /cannot read config/);
  writeFileSync(f, 'a: [');
  await assert.rejects(loadProxyConfig(f), /not valid YAML/);
});

test('merge: defaults, then config, then flags', () => {
  const { config } = decodeProxyConfig({ ...base, hostnameOverride: 'From-Config', clusterCIDR: '10.244.0.0/16', iptables: { masqueradeAll: true } }, 'c');
  const nodes = [makeNode('from-config', ['192.168.1.5', 'fd00::5'])];
  let s = mergeProxySettings(config, {}, nodes);
  assert.equal(s.hostname, 'from-config');
  assert.deepEqual(s.nodeIPs, ['192.168.1.5', 'fd00::5']);
  assert.equal(s.masqueradeAll, true);
  assert.equal(s.masqueradeBit, 14);
  assert.equal(s.localhostNodePorts, true);
  assert.equal(s.mode, 'iptables');
  s = mergeProxySettings(config, { masqueradeAll: false, clusterCIDR: '10.0.0.0/8', nodeIP: '10.1.1.1', proxyMode: 'ipvs' }, nodes);
  assert.equal(s.masqueradeAll, false);
  assert.deepEqual(s.clusterCIDRs, ['10.0.0.0/8']);
  assert.deepEqual(s.nodeIPs, ['10.1.1.1']);
  assert.equal(s.mode, 'ipvs');
  assert.throws(() => mergeProxySettings(undefined, { clusterCIDR: 'x' }), /--cluster-cidr: "x" is not a CIDR/);
  assert.throws(() => mergeProxySettings(undefined, { nodeIP: '1.2.3' }), /--node-ip/);
  assert.throws(() => mergeProxySettings(undefined, { detectLocalMode: 'BridgeInterface' }), /needs --pod-bridge-interface/);
  assert.throws(() => mergeProxySettings(undefined, { masqueradeBit: 99 }), /--iptables-masquerade-bit/);
});

test('node IPs: InternalIP first, else ExternalIP; one per family, primary first', () => {
  const n = makeNode('n', []);
  n.addresses = [
    { type: 'Hostname', address: 'n' },
    { type: 'ExternalIP', address: '203.0.113.9' },
    { type: 'InternalIP', address: 'fd00::9' },
    { type: 'InternalIP', address: '10.0.0.9' },
    { type: 'InternalIP', address: '10.0.0.10' },
  ];
  assert.deepEqual(nodeIPsFromNode(n), ['fd00::9', '10.0.0.9']);
  n.addresses = [{ type: 'ExternalIP', address: '203.0.113.9' }];
  assert.deepEqual(nodeIPsFromNode(n), ['203.0.113.9']);
  assert.deepEqual(nodeIPsFromNode(undefined), []);
});
