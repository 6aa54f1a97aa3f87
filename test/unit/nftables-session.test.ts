import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionError } from '../../src/dataplane/nftables/session.js';

test('sessionError: none on success or warnings; on an error, the message and the statement under the carets', () => {
  const text = 'add element ip kproxy a { 1.1.1.1 }\nadd element ip kproxy nosuch { 2.2.2.2 }\ndelete element ip kproxy b { 3.3.3.3 }\n';
  const line = text.trim().split('\n').join(' ; ');
  assert.equal(sessionError('', line, text), null);
  assert.equal(sessionError('Warning: something harmless\n', line, text), null);
  const col = line.indexOf('nosuch');
  const stderr = `Error: No such file or directory\n${line}\n${' '.repeat(col)}^^^^^^\n`;
  const e = sessionError(stderr, line, text)!;
  assert.equal(e.message, 'nft failed: No such file or directory');
  assert.deepEqual(e.lines, ['2: add element ip kproxy nosuch { 2.2.2.2 }']);
  // Carets on the last statement, and an error nft did not point at.
  const last = sessionError(`Error: x\n${line}\n${' '.repeat(line.lastIndexOf('b {'))}^\n`, line, text)!;
  assert.deepEqual(last.lines, ['3: delete element ip kproxy b { 3.3.3.3 }']);
  assert.deepEqual(sessionError('Error: Could not process rule: File exists\n', line, text)!.lines, []);
});
