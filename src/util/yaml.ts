// YAML through js-yaml 4, the parser @kubernetes/client-node already brings. It is one ESM
// file: loading it and reading a small folder costs ~17 ms here, against ~60 ms for the
// `yaml` package (70-odd CommonJS files, then a slow first parse), which was most of a
// small `kproxy render`.
//
// The YAML 1.2 core schema, as the API machinery reads manifests closely enough:
// "yes"/"on" stay strings, no timestamps, duplicate keys are errors.
import { CORE_SCHEMA, dump, load, YAMLException } from 'js-yaml';

export interface YamlDocument {
  /** The document's value (null for an empty document); undefined when it failed to parse. */
  value: unknown;
  /** A syntax error: the message and where (1-based line and column in the whole text). */
  error?: { message: string; line: number; column: number };
}

/** Aliases per document beyond this are refused, as the yaml package's maxAliasCount did. */
const MAX_ALIASES = 100;

// A document marker: "---" or "..." at column 0, alone or followed by a blank. YAML forbids
// these at column 0 inside any content (c-forbidden), block scalars included, so cutting the
// stream at them is exact; it lets a syntax error skip its own document only.
const MARKER = /^(?:---|\.\.\.)(?=[ \t\r\n]|$)/gm;
const ONLY_COMMENTS = /^(?:[ \t]*(?:#.*|%.*)?(?:\r?\n|$))*$/;

function countLines(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Aliases ("*name" outside quotes) in a document, counted only when it defines an anchor. */
function aliasCount(doc: string): number {
  if (!doc.includes('&')) return 0;
  return doc.match(/(?:^|[\s,[{:-])\*[^\s,[\]{}]/g)?.length ?? 0;
}

/**
 * Every document of a YAML stream (JSON is YAML), each parsed on its own so that a syntax
 * error costs only its document. Numbering follows the stream: text before the first
 * "---" counts as a document only when it holds more than comments and directives.
 */
export function parseYamlStream(text: string): YamlDocument[] {
  const cuts: { start: number; marker: boolean }[] = [{ start: 0, marker: false }];
  for (const m of text.matchAll(MARKER)) {
    if (m[0] === '---') cuts.push({ start: m.index, marker: true });
    else {
      // "..." ends a document: what follows up to the next "---" is comments and directives.
      const eol = text.indexOf('\n', m.index);
      cuts.push({ start: eol === -1 ? text.length : eol + 1, marker: false });
    }
  }
  const out: YamlDocument[] = [];
  let line = 1;
  let counted = 0;
  for (let i = 0; i < cuts.length; i++) {
    const { start, marker } = cuts[i]!;
    const end = i + 1 < cuts.length ? cuts[i + 1]!.start : text.length;
    const doc = text.slice(start, end);
    line += countLines(text, counted, start);
    counted = start;
    if (!marker && ONLY_COMMENTS.test(doc)) continue;
    if (aliasCount(doc) > MAX_ALIASES) {
      out.push({ value: undefined, error: { message: `more than ${MAX_ALIASES} aliases in one document`, line, column: 1 } });
      continue;
    }
    try {
      const value = load(doc, { schema: CORE_SCHEMA });
      out.push({ value: value === undefined ? null : value });
    } catch (e) {
      if (!(e instanceof YAMLException)) throw e;
      const mark = e.mark as { line?: number; column?: number } | undefined;
      out.push({
        value: undefined,
        error: { message: e.reason || e.message.split('\n')[0]!, line: line + (mark?.line ?? 0), column: (mark?.column ?? 0) + 1 },
      });
    }
  }
  return out;
}

/** One YAML (or JSON) document, e.g. a config file; throws on a syntax error or a stream of several. */
export function parseYaml(text: string): unknown {
  return load(text, { schema: CORE_SCHEMA });
}

/** An object as a YAML document (no anchors, no line folding). */
export function stringifyYaml(value: unknown): string {
  return dump(value, { schema: CORE_SCHEMA, noRefs: true, lineWidth: -1 });
}
