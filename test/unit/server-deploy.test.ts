// deploy/: the DaemonSet and RBAC parse, grant what kube-proxy needs, and pass
// only flags that `kproxy run` accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseYamlStream } from '../../src/util/yaml.js';
import { Command } from 'commander';
import { register } from '../../src/cli/run.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
type Obj = Record<string, any>;
const docs: Obj[] = parseYamlStream(readFileSync(`${root}deploy/kproxy-daemonset.yaml`, 'utf8')).map((d) => {
  assert.equal(d.error, undefined, JSON.stringify(d.error));
  return d.value as Obj;
});
const byKind = (k: string) => docs.filter((d) => d.kind === k);

test('RBAC: list/watch services, endpointslices, nodes; get nodes; create/patch events in both groups', () => {
  const [role] = byKind('ClusterRole');
  assert.ok(role);
  const allows = (group: string, resource: string, verb: string) =>
    (role.rules as Obj[]).some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  for (const verb of ['list', 'watch']) {
    assert.ok(allows('', 'services', verb), `services ${verb}`);
    assert.ok(allows('discovery.k8s.io', 'endpointslices', verb), `endpointslices ${verb}`);
    assert.ok(allows('', 'nodes', verb), `nodes ${verb}`);
  }
  assert.ok(allows('', 'nodes', 'get'));
  for (const group of ['', 'events.k8s.io']) for (const verb of ['create', 'patch']) assert.ok(allows(group, 'events', verb), `${group || 'core'} events ${verb}`);
  // Nothing writable beyond events.
  for (const r of role.rules as Obj[]) if (!r.resources.includes('events')) assert.deepEqual(r.verbs.filter((v: string) => !['get', 'list', 'watch'].includes(v)), []);
  const [binding] = byKind('ClusterRoleBinding');
  const [sa] = byKind('ServiceAccount');
  assert.equal(binding.roleRef.name, role.metadata.name);
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
});

test('DaemonSet: host network, node-critical, privileged with NET_ADMIN, xtables lock and modules, livez probe, tolerate all', () => {
  const [ds] = byKind('DaemonSet');
  const spec = ds.spec.template.spec;
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.equal(spec.serviceAccountName, byKind('ServiceAccount')[0]!.metadata.name);
  assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
  const c = spec.containers[0];
  assert.equal(c.securityContext.privileged, true);
  assert.ok(c.securityContext.capabilities.add.includes('NET_ADMIN'));
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/livez', port: 10256 });
  const mounts = Object.fromEntries((c.volumeMounts as Obj[]).map((m) => [m.name, m]));
  const vols = Object.fromEntries((spec.volumes as Obj[]).map((v) => [v.name, v]));
  assert.equal(mounts['xtables-lock'].mountPath, '/run/xtables.lock');
  assert.deepEqual(vols['xtables-lock'].hostPath, { path: '/run/xtables.lock', type: 'FileOrCreate' });
  assert.equal(mounts['lib-modules'].mountPath, '/lib/modules');
  assert.equal(mounts['lib-modules'].readOnly, true);
  assert.equal(ds.spec.selector.matchLabels['k8s-app'], ds.spec.template.metadata.labels['k8s-app']);
});

test('every DaemonSet flag is one `kproxy run` accepts', () => {
  const program = new Command();
  register(program);
  const run = program.commands.find((c) => c.name() === 'run');
  assert.ok(run);
  const accepted = new Set(run.options.map((o) => o.long));
  const [ds] = byKind('DaemonSet');
  const args: string[] = ds.spec.template.spec.containers[0].args;
  assert.ok(args.length > 0);
  for (const a of args) {
    const flag = a.split('=')[0]!;
    assert.ok(accepted.has(flag), `${flag} is not a kproxy run flag`);
  }
  assert.ok(args.includes('--hostname-override=$(NODE_NAME)'));
});

test('Dockerfile: node:20-slim, the netfilter tools, production deps without scripts, kproxy run entrypoint', () => {
  const df = readFileSync(`${root}deploy/Dockerfile`, 'utf8');
  assert.match(df, /^FROM node:20-slim AS build$/m);
  assert.match(df, /^FROM node:20-slim$/m);
  assert.match(df, /apt-get install -y --no-install-recommends iptables conntrack ipset iproute2/);
  assert.match(df, /npm ci --omit=dev --ignore-scripts/);
  assert.match(df, /^ENTRYPOINT \["node", "\/app\/dist\/src\/cli\/main\.js", "run"\]$/m);
});
