import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseYaml, parseYamlStream, stringifyYaml } from '../../src/util/yaml.js';

test('a stream is cut at its document markers; comments before the first marker are no document', () => {
  const docs = parseYamlStream('# head\n%YAML 1.2\n---\na: 1\n...\n# between\n--- {b: 2}\n---\n---\nc: |\n  x\n  y\n');
  assert.deepEqual(docs.map((d) => d.value), [{ a: 1 }, { b: 2 }, null, { c: 'x\ny\n' }]);
  assert.deepEqual(parseYamlStream('a: 1\n---\nb: 2').map((d) => d.value), [{ a: 1 }, { b: 2 }]);
  assert.deepEqual(parseYamlStream(''), []);
  assert.deepEqual(parseYamlStream('# only a comment\n'), []);
  // "---" inside a line or indented is content, not a marker.
  assert.deepEqual(parseYamlStream('a: "x --- y"\nb: |\n  ---\n').map((d) => d.value), [{ a: 'x --- y', b: '---\n' }]);
});

test('a syntax error costs only its document and names its line in the whole text', () => {
  const docs = parseYamlStream('a: 1\n---\nb: [1, 2\nc: 3\n---\nd: 4\n');
  assert.deepEqual(docs[0]!.value, { a: 1 });
  assert.equal(docs[1]!.value, undefined);
  assert.ok(docs[1]!.error);
  assert.ok(docs[1]!.error.line >= 3 && docs[1]!.error.line <= 4, JSON.stringify(docs[1]!.error));
  assert.deepEqual(docs[2]!.value, { d: 4 });
  const dup = parseYamlStream('x: 1\nx: 2\n')[0]!;
  assert.match(dup.error!.message, /duplicated mapping key/);
  assert.equal(dup.error!.line, 2);
});

test('YAML 1.2 core schema: yes/on stay strings, no timestamps; JSON is YAML', () => {
  assert.deepEqual(parseYaml('a: yes\nb: on\nc: 2001-12-14\nd: 0x10\ne: "1"\nf: null\n'), { a: 'yes', b: 'on', c: '2001-12-14', d: 16, e: '1', f: null });
  assert.deepEqual(parseYamlStream('{"a": [1, {"b": true}]}')[0]!.value, { a: [1, { b: true }] });
  assert.throws(() => parseYaml('a: 1\n---\nb: 2\n'), /single document/);
});

test('a document with more than 100 aliases is refused (billion laughs)', () => {
  const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 11; i++) lines.push(`l${i}: [${Array(10).fill('*a').join(', ')}]`);
  const [d] = parseYamlStream(lines.join('\n'));
  assert.equal(d!.value, undefined);
  assert.match(d!.error!.message, /more than 100 aliases/);
  assert.deepEqual(parseYamlStream('a: &x 1\nb: *x\n')[0]!.value, { a: 1, b: 1 });
});

test('stringifyYaml round-trips through parseYaml', () => {
  const o = { kind: 'Pod', metadata: { name: 'p', labels: { on: 'yes', n: '1' } }, spec: { a: [1, 'two', null, true], long: 'x'.repeat(200) } };
  assert.deepEqual(parseYaml(stringifyYaml(o)), o);
});
