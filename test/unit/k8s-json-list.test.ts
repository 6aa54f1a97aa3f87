// json-list.ts: a JSON List read item by item gives exactly what JSON.parse gives, or steps aside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonListItems } from '../../src/k8s/json-list.js';
import { parseManifestText } from '../../src/k8s/load.js';

/** What addRaw reads from JSON.parse(text): the items of a List, else null. */
function viaParse(text: string): unknown[] | null {
  const v = JSON.parse(text) as { kind?: unknown; items?: unknown };
  return v && typeof v === 'object' && !Array.isArray(v) && typeof v.kind === 'string' && v.kind.endsWith('List') && Array.isArray(v.items) ? v.items : null;
}

test('items as JSON.parse reads them: escapes, brackets in strings, numbers, nesting, whitespace, duplicate keys', () => {
  const lists = [
    '{"apiVersion":"v1","kind":"List","items":[]}',
    ' \n{ "kind" : "ServiceList" , "items" : [ {"a":"}]{[\\"\\\\"}, [1, -2.5e3, true, null, "x"] , "s" , 7 ] }\n\t',
    '{"items":[1],"kind":"List","items":[{"b":{"c":["]"]}}]}',
    '{"kind":"Pod","kind":"List","metadata":{"resourceVersion":"1"},"items":[{"\\u006bind":"Service"}]}',
    '{"__proto__":{"x":1},"kind":"List","items":[{"__proto__":2}]}',
    // Runs of backslashes before a quote: odd escapes it, even ends the string.
    '{"kind":"List","items":[{"k":"a\\\\\\"]\\\\"},"\\\\\\\\",""]}',
  ];
  for (const text of lists) {
    const items = jsonListItems(text);
    assert.ok(items, text);
    assert.deepEqual([...items], viaParse(text), text);
  }
});

test('anything else is left to JSON.parse: not a List, items not an array, not JSON', () => {
  for (const text of ['{"kind":"Service","items":[1]}', '{"kind":"List","items":{}}', '{"kind":"List"}', '[{"kind":"List","items":[]}]',
    '{"kind":"List","items":[1]} x', '{"kind":"List","items":[1,]}', '{"kind":"List" "items":[]}', '\ufeff{"kind":"List","items":[]}', '{"kind":List,"items":[]}'])
    assert.equal(jsonListItems(text), null, text);
  // An item that is not JSON is found when it is reached.
  const bad = jsonListItems('{"kind":"List","items":[{"a":1},{"a":01}]}')!;
  assert.throws(() => [...bad]);
});

test('parseManifestText: a List read item by item, and one that is not JSON, read as before', () => {
  const svc = (n: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: n, namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } });
  const good = parseManifestText(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [svc('a'), { kind: 'Service', metadata: { name: 'b' } }, svc('c')] }), 'l.json');
  assert.deepEqual(good.objects.map((o) => o.object.meta.name), ['a', 'c']);
  assert.ok(good.warnings.some((w) => w.field?.startsWith('items[1]')), JSON.stringify(good.warnings));
  // An item that is not JSON: the whole text is not JSON, so it goes to the YAML parser, as any bad
  // JSON does (a YAML comment in front sends it there directly, for comparison).
  for (const text of ['{"kind":"List","items":[' + JSON.stringify(svc('a')) + ',{"kind":"Service",}]}', '{"kind":"List","items":[' + JSON.stringify(svc('a')) + ',{"kind":01}]}']) {
    const got = parseManifestText(text, 'b.json');
    const yaml = parseManifestText('# yaml\n' + text, 'b.json');
    assert.deepEqual(got.objects, yaml.objects, text);
    assert.equal(got.syntaxErrors, yaml.syntaxErrors, text);
  }
});
