// util/sha256.ts: known digests (FIPS 180-4 examples), UTF-8 input, and input past one block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256 } from '../../src/util/sha256.js';

const hex = (b: string): string => Buffer.from(b, 'latin1').toString('hex');

test('sha256 gives the published digests, hashes text as UTF-8, and takes input past one block', () => {
  assert.equal(hex(sha256('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hex(sha256('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(
    hex(sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  );
  // Python's hashlib.sha256('é'.encode()): the UTF-8 bytes c3 a9, not Latin-1's e9.
  assert.equal(hex(sha256('é')), '4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c');
  assert.equal(hex(sha256('x'.repeat(200))), 'aa20c23e3201834050679e1d88941b9a6fed0557c9a705cb2c315e2e63fd486d');
});
