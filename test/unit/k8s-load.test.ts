import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadManifestText, loadManifests, parseManifestText } from '../../src/k8s/load.js';
import { formatWarning } from '../../src/k8s/types.js';

const SVC_A = `apiVersion: v1
kind: Service
metadata:
  name: a
  namespace: default
spec:
  clusterIP: 10.96.0.10
  ports:
  - port: 80
`;

const svcJSON = (name: string, ip: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { clusterIP: ip, ports: [{ port: 80 }] } });

test('multi-document YAML: empty documents and comments skipped, every object read', () => {
  const text = `# leading comment\n---\n${SVC_A}---\n---\n# only a comment\n---\n${SVC_A.replace('name: a', 'name: b').replace('10.96.0.10', '10.96.0.11')}`;
  const { state, warnings } = loadManifestText(text, 'multi.yaml');
  assert.deepEqual(warnings, []);
  assert.deepEqual(state.services.map((s) => s.meta.name), ['a', 'b']);
});

test('kind: List and *List items; the warning field says which item', () => {
  const text = JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [svcJSON('a', '10.96.0.1'), svcJSON('b', '10.96.0.300'), { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } }],
  });
  const { state, warnings } = loadManifestText(text, 'list.json');
  assert.deepEqual(state.services.map((s) => s.meta.name), ['a']);
  assert.deepEqual(state.nodes.map((n) => n.meta.name), ['n1']);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!.field, 'items[1].spec.clusterIP');
  assert.equal(warnings[0]!.document, 0);
  const yamlList = `apiVersion: v1\nkind: ServiceList\nitems:\n- ${JSON.stringify(svcJSON('c', '10.96.0.3'))}\n`;
  assert.deepEqual(loadManifestText(yamlList, 'l.yaml').state.services.map((s) => s.meta.name), ['c']);
});

test('JSON: one object, or an array of objects', () => {
  assert.deepEqual(loadManifestText(JSON.stringify(svcJSON('a', '10.96.0.1')), 'a.json').state.services.length, 1);
  const arr = loadManifestText(JSON.stringify([svcJSON('a', '10.96.0.1'), svcJSON('b', '10.96.0.2')]), 'arr.json');
  assert.deepEqual(arr.state.services.map((s) => s.meta.name), ['a', 'b']);
});

test('a YAML syntax error names file, document and line, and the other documents are still used', () => {
  const text = `${SVC_A}---\nkind: Service\nmetadata: {name: broken\n  spec: x\n---\n${SVC_A.replace('name: a', 'name: c')}`;
  const parsed = parseManifestText(text, 'bad.yaml');
  assert.equal(parsed.syntaxErrors, 1);
  assert.deepEqual(parsed.objects.map((o) => o.object.meta.name), ['a', 'c']);
  const w = parsed.warnings[0]!;
  assert.equal(w.source, 'bad.yaml');
  assert.equal(w.document, 1);
  assert.match(w.message, /^YAML syntax error at line 1[0-3], column \d+: /);
  assert.match(formatWarning(w), /^bad\.yaml#1: YAML syntax error at line/);
});

test('broken JSON is reported with a line number; duplicate keys are errors', () => {
  const p = parseManifestText('{\n  "kind": "Service",\n  "metadata": {"name": "x"},,\n}', 'x.json');
  assert.equal(p.syntaxErrors, 1);
  assert.match(p.warnings[0]!.message, /syntax error at line 3/);
  const d = parseManifestText('kind: Service\nkind: Pod\n', 'dup.yaml');
  assert.equal(d.syntaxErrors, 1);
});

test('rejected objects and unknown kinds are counted apart', () => {
  const p = parseManifestText(`${SVC_A.replace('10.96.0.10', 'bogus')}---\nkind: ConfigMap\nmetadata: {name: x}\n`, 'x.yaml');
  assert.equal(p.rejected, 1);
  assert.equal(p.objects.length, 0);
  assert.equal(p.warnings.length, 2);
  assert.deepEqual(p.warnings.map((w) => w.document), [0, 1]);
});

test('YAML 1.2 scalars: "yes"/"on" stay strings, quoted numbers stay strings', () => {
  const p = parseManifestText('kind: Service\nmetadata: {name: s, labels: {enabled: yes, v: "1"}}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n', 'x.yaml');
  assert.deepEqual(p.warnings, []);
  assert.deepEqual(p.objects[0]!.object.meta.labels, { enabled: 'yes', v: '1' });
});

test('an object defined twice: the later one wins, with a warning', () => {
  const { state, warnings } = loadManifestText(`${SVC_A}---\n${SVC_A.replace('port: 80', 'port: 81')}`, 'x.yaml');
  assert.equal(state.services.length, 1);
  assert.equal(state.services[0]!.ports[0]!.port, 81);
  assert.match(warnings[0]!.message, /defined again/);
});

test('EndpointSlices are derived from Pods only for selector Services without slices', () => {
  const text = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.0.20, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec: {clusterIP: 10.96.0.21, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-1, labels: {kubernetes.io/service-name: manual}}
addressType: IPv4
endpoints: [{addresses: [10.1.1.1]}]
ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.244.0.5, conditions: [{type: Ready, status: "True"}]}
`;
  const { state, warnings } = loadManifestText(text, 'x.yaml');
  assert.deepEqual(warnings, []);
  const web = state.endpointSlices.filter((s) => s.serviceName === 'web');
  assert.equal(web.length, 1);
  assert.deepEqual(web[0]!.endpoints.map((e) => e.addresses[0]), ['10.244.0.5']);
  assert.deepEqual(web[0]!.ports, [{ name: '', port: 8080, protocol: 'TCP' }]);
  const manual = state.endpointSlices.filter((s) => s.serviceName === 'manual');
  assert.deepEqual(manual.map((s) => s.meta.name), ['manual-1'], 'hand-written slices are kept as they are');
  // Without pods in the input nothing is derived.
  const noPods = loadManifestText(text.split('---\napiVersion: v1\nkind: Pod')[0]!, 'x.yaml');
  assert.deepEqual(noPods.state.endpointSlices.map((s) => s.meta.name), ['manual-1']);
});

test('loadManifests: files, folders recursively (sorted, *.yaml/*.yml/*.json, hidden skipped), stdin', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-load-'));
  try {
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    mkdirSync(join(dir, '.git'));
    writeFileSync(join(dir, 'b.yaml'), SVC_A.replace('name: a', 'name: b'));
    writeFileSync(join(dir, 'a.yml'), SVC_A);
    writeFileSync(join(dir, 'sub', 'c.json'), JSON.stringify(svcJSON('c', '10.96.0.30')));
    writeFileSync(join(dir, 'sub', 'deeper', 'd.YAML'), SVC_A.replace('name: a', 'name: d'));
    writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
    writeFileSync(join(dir, '.hidden.yaml'), SVC_A.replace('name: a', 'name: hidden'));
    writeFileSync(join(dir, '.git', 'x.yaml'), SVC_A.replace('name: a', 'name: git'));
    writeFileSync(join(dir, 'b.yaml~'), SVC_A.replace('name: a', 'name: backup'));
    symlinkSync(join(dir, 'sub', 'c.json'), join(dir, 'z-link.json'));
    const single = join(dir, 'single.manifest');
    writeFileSync(single, SVC_A.replace('name: a', 'name: single'));
    const { state, warnings } = await loadManifests([dir, single]);
    // z-link.json defines c again: later wins, with a warning.
    assert.deepEqual(state.services.map((s) => s.meta.name), ['a', 'b', 'd', 'c', 'single']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /defined again \(first in .*sub\/c\.json\)/);
    await assert.rejects(loadManifests([join(dir, 'missing.yaml')]), /cannot read .*missing\.yaml: no such file or directory/);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    assert.match((await loadManifests([empty])).warnings[0]!.message, /holds no/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadManifests reads "-" from stdin', () => {
  const script = `import('${new URL('../../src/k8s/load.js', import.meta.url).href}').then(async (m) => {
    const r = await m.loadManifests(['-']);
    process.stdout.write(JSON.stringify(r.state.services.map((s) => s.meta.name)));
  });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { input: SVC_A, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '["a"]');
});
