// A JSON `kind: List` (what `kubectl get -o json` writes), read item by item.
// JSON.parse of a whole 30 MB List builds every raw item before the first is
// validated, so all of them outlive a few young-generation collections and are
// copied into the old generation, only to be dropped after validation. Parsing
// one item at a time lets each raw item die young. The scan below only finds
// where the top-level values and the items begin and end; JSON.parse still reads
// every piece, so the values are exactly those of JSON.parse(text).

/** JSON's whitespace (JSON.parse accepts no other). */
function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(text: string, i: number): number {
  while (i < text.length && isWs(text.charCodeAt(i))) i++;
  return i;
}

/**
 * The end (exclusive) of the string starting at text[i] === '"', or -1. Most of a
 * manifest's characters are inside strings: indexOf jumps to the next quote natively,
 * and the quote ends the string unless an odd number of backslashes precedes it.
 */
function stringEnd(text: string, i: number): number {
  for (;;) {
    const q = text.indexOf('"', i + 1);
    if (q < 0) return -1;
    let b = q - 1;
    while (text.charCodeAt(b) === 0x5c) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
    i = q;
  }
}

/** The end (exclusive) of the value starting at text[i], or -1; scalars end at the next delimiter. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return stringEnd(text, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (; i < text.length; i++) {
      const d = text.charCodeAt(i);
      if (d === 0x22) {
        i = stringEnd(text, i) - 1;
        if (i < 0) return -1;
      } else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        if (--depth === 0) return i + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || isWs(d)) break;
    j++;
  }
  return j > i ? j : -1;
}

/** The [start, end) spans of the elements of the array starting at text[i] === '[', and its end; null if malformed. */
function arraySpans(text: string, i: number): { spans: number[]; end: number } | null {
  const spans: number[] = [];
  i = skipWs(text, i + 1);
  if (text.charCodeAt(i) === 0x5d) return { spans, end: i + 1 };
  for (;;) {
    const end = valueEnd(text, i);
    if (end < 0) return null;
    spans.push(i, end);
    i = skipWs(text, end);
    const c = text.charCodeAt(i);
    if (c === 0x5d) return { spans, end: i + 1 };
    if (c !== 0x2c) return null;
    i = skipWs(text, i + 1);
  }
}

/**
 * For a text holding one JSON object with a string `kind` ending in "List" and an array
 * `items`: the items, each parsed when the generator reaches it. Null for anything else,
 * or when the text is not valid JSON as far as the scan can tell (the caller then parses
 * it whole, which reports the error). A piece that JSON.parse refuses throws from the
 * generator: the text was not JSON after all.
 */
export function jsonListItems(text: string): Generator<unknown> | null {
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 0x7b) return null;
  // The other members, parsed (small: apiVersion, kind, metadata), for the kind.
  const top: Record<string, unknown> = {};
  let items: number[] | null = null;
  i = skipWs(text, i + 1);
  if (text.charCodeAt(i) === 0x7d) return null;
  for (;;) {
    if (text.charCodeAt(i) !== 0x22) return null;
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return null;
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWs(text, keyEnd);
    if (text.charCodeAt(i) !== 0x3a) return null;
    i = skipWs(text, i + 1);
    if (key === 'items' && text.charCodeAt(i) === 0x5b) {
      const a = arraySpans(text, i);
      if (!a) return null;
      items = a.spans;
      delete top.items; // a later duplicate key wins, as in JSON.parse
      i = a.end;
    } else {
      const end = valueEnd(text, i);
      if (end < 0) return null;
      try {
        Object.defineProperty(top, key, { value: JSON.parse(text.slice(i, end)), enumerable: true, writable: true, configurable: true });
      } catch {
        return null;
      }
      if (key === 'items') items = null;
      i = end;
    }
    i = skipWs(text, i);
    const c = text.charCodeAt(i);
    if (c === 0x7d) break;
    if (c !== 0x2c) return null;
    i = skipWs(text, i + 1);
  }
  if (skipWs(text, i + 1) !== text.length) return null;
  if (!items || typeof top.kind !== 'string' || !top.kind.endsWith('List')) return null;
  return parsePieces(text, items);
}

function* parsePieces(text: string, spans: number[]): Generator<unknown> {
  for (let k = 0; k < spans.length; k += 2) yield JSON.parse(text.slice(spans[k], spans[k + 1]));
}
