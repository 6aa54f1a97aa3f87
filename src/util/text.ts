// Bytes → text for the large inputs (manifests, iptables dumps).
import { isAscii } from 'node:buffer';

/**
 * UTF-8 bytes as a string. Most inputs are ASCII, and then a Latin-1 string of the same
 * bytes is the same text, made by one copy: UTF-8 decoding a 50 MB dump costs several
 * times that here, and parsers read one-byte strings fastest.
 */
export function decodeText(buf: Buffer): string {
  return buf.toString(isAscii(buf) ? 'latin1' : 'utf8');
}

/**
 * The string, flattened. Strings built by concatenation are rope trees in V8 (a node
 * per `+`); reading one character flattens the rope in place. For strings kept long
 * (rules, set elements: hundreds of thousands at 10k services) that halves the memory
 * they hold and the GC work to keep them.
 */
export function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}
