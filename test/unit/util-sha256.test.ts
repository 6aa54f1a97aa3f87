// util/sha256.ts against node:crypto: every length around the one-block limit, non-ASCII, chain names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sha256 } from '../../src/util/sha256.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const want = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

test('sha256 equals node:crypto for every length 0..130 and for non-ASCII text', () => {
  const alphabet = 'abcXYZ019/:.-_ ~';
  for (let n = 0; n <= 130; n++) {
    const s = Array.from({ length: n }, (_, i) => alphabet[(i * 7 + n) % alphabet.length]).join('');
    assert.equal(hex(sha256(s)), want(s), `length ${n}`);
  }
  for (const s of ['é', 'ns/ñame:port', '\u007f\u0080', '日本', 'x'.repeat(54) + 'é', '\uD83D\uDE00'])
    assert.equal(hex(sha256(s)), want(s), s);
  assert.equal(hex(sha256('default/hello-world-servicetcp10.244.1.5:8080')), want('default/hello-world-servicetcp10.244.1.5:8080'));
});
