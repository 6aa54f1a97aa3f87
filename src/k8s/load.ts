// Manifests → ClusterState: files, folders (recursive) and stdin; YAML
// multi-document streams and JSON; `kind: List` (and any *List with items).
// A syntax error skips its document with a warning naming file, document and
// line; everything else in the input is still used.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeText } from '../util/text.js';
import { parseYamlStream } from '../util/yaml.js';
import { endpointSlicesFromPods } from './endpoints-from-pods.js';
import { jsonListItems } from './json-list.js';
import { parseObject } from './validate.js';
import type { ClusterState, EndpointSlice, InputWarning, Node, Pod, Service } from './types.js';

export type ParsedObject =
  | { kind: 'Service'; object: Service }
  | { kind: 'EndpointSlice'; object: EndpointSlice }
  | { kind: 'Node'; object: Node }
  | { kind: 'Pod'; object: Pod };

export interface ParsedText {
  objects: ParsedObject[];
  warnings: InputWarning[];
  /** Documents that did not parse as YAML/JSON. */
  syntaxErrors: number;
  /** Objects of a kind kproxy reads that failed validation and were skipped. */
  rejected: number;
}

export interface LoadResult {
  state: ClusterState;
  warnings: InputWarning[];
}

export const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** JSON texts from this size up are read item by item when they are a List. */
const ITEM_BY_ITEM_CHARS = 256 * 1024;

export function emptyState(): ClusterState {
  return { services: [], endpointSlices: [], nodes: [], pods: [] };
}

function prefixField(w: InputWarning, prefix: string): InputWarning {
  return { ...w, field: w.field ? `${prefix}.${w.field}` : prefix };
}

function addRaw(out: ParsedText, raw: unknown, source: string, document: number): void {
  if (raw === null || raw === undefined) return; // an empty document ("---" alone, comments only)
  const r = raw as Record<string, unknown>;
  if (typeof raw === 'object' && !Array.isArray(raw) && typeof r.kind === 'string' && r.kind.endsWith('List') && Array.isArray(r.items)) {
    r.items.forEach((item, i) => addOne(out, item, source, document, `items[${i}]`));
    return;
  }
  addOne(out, raw, source, document);
}

function addOne(out: ParsedText, raw: unknown, source: string, document: number, prefix?: string): void {
  const res = parseObject(raw, { source, document });
  out.warnings.push(...(prefix ? res.warnings.map((w) => prefixField(w, prefix)) : res.warnings));
  if (res.object) out.objects.push({ kind: res.kind, object: res.object } as ParsedObject);
  else if (res.kind === 'Service' || res.kind === 'EndpointSlice' || res.kind === 'Node' || res.kind === 'Pod') out.rejected++;
}

/** The first non-whitespace character is { or [ (\S is trimStart's set, without its copy of a 30 MB text). */
function looksLikeJSON(text: string): boolean {
  const first = /\S/.exec(text);
  return first !== null && (first[0] === '{' || first[0] === '[');
}

/** A manifest file's text (decodeText: ASCII files are read with one copy). */
export async function readManifestFile(path: string): Promise<string> {
  return decodeText(await readFile(path));
}

/** Parses one file's (or stdin's) text into validated objects. Never throws on bad input. */
export function parseManifestText(text: string, source: string): ParsedText {
  const out: ParsedText = { objects: [], warnings: [], syntaxErrors: 0, rejected: 0 };
  // JSON first: much faster than the YAML parser on large inputs. On failure the
  // YAML parser (a JSON superset) reports the error with a line number.
  if (looksLikeJSON(text)) {
    // A large List, item by item (json-list.ts: each raw item is dropped before the next is
    // parsed). A small text is parsed whole: the scan would read it twice, 10,000 times over
    // in a folder of one file per object.
    const items = text.length >= ITEM_BY_ITEM_CHARS ? jsonListItems(text) : null;
    if (items) {
      const list: ParsedText = { objects: [], warnings: [], syntaxErrors: 0, rejected: 0 };
      let i = 0;
      let ok = true;
      try {
        for (const item of items) addOne(list, item, source, 0, `items[${i++}]`);
      } catch {
        ok = false; // not JSON after all: parsed whole below, which reports the error
      }
      if (ok) return list;
    }
    let parsed: unknown;
    let ok = true;
    try {
      parsed = JSON.parse(text);
    } catch {
      ok = false;
    }
    if (ok) {
      if (Array.isArray(parsed)) parsed.forEach((item, i) => addRaw(out, item, source, i));
      else addRaw(out, parsed, source, 0);
      return out;
    }
  }
  parseYamlStream(text).forEach((doc, i) => {
    if (doc.error) {
      out.syntaxErrors++;
      const { line, column, message } = doc.error;
      out.warnings.push({
        source,
        document: i,
        message: `${looksLikeJSON(text) ? 'JSON/YAML' : 'YAML'} syntax error at line ${line}, column ${column}: ${message}; document skipped`,
      });
      return;
    }
    const raw = doc.value;
    // A YAML document holding a JSON-style array of objects is read like a List.
    if (Array.isArray(raw)) raw.forEach((item, j) => addOne(out, item, source, i, `[${j}]`));
    else addRaw(out, raw, source, i);
  });
  return out;
}

function key(kind: string, ns: string, name: string): string {
  return `${kind}\u0000${ns}\u0000${name}`;
}

/**
 * Puts parsed objects together into one state: a later definition of the same
 * object replaces an earlier one (as a later `kubectl apply` would), with a warning.
 * Then derives EndpointSlices from Pods for selector Services that have none.
 */
export function buildState(groups: { source: string; objects: ParsedObject[] }[], warnings: InputWarning[]): ClusterState {
  const seen = new Map<string, { source: string; index: number }>();
  const ordered: (ParsedObject | undefined)[] = [];
  for (const g of groups) {
    for (const o of g.objects) {
      const k = key(o.kind, o.object.meta.namespace, o.object.meta.name);
      const prev = seen.get(k);
      if (prev) {
        const name = o.object.meta.namespace ? `${o.object.meta.namespace}/${o.object.meta.name}` : o.object.meta.name;
        warnings.push({
          source: g.source,
          kind: o.kind,
          object: name,
          message: `defined again (first in ${prev.source}); the later definition is used`,
        });
        ordered[prev.index] = undefined;
      }
      seen.set(k, { source: g.source, index: ordered.length });
      ordered.push(o);
    }
  }
  const state = emptyState();
  for (const o of ordered) {
    if (!o) continue;
    switch (o.kind) {
      case 'Service':
        state.services.push(o.object);
        break;
      case 'EndpointSlice':
        state.endpointSlices.push(o.object);
        break;
      case 'Node':
        state.nodes.push(o.object);
        break;
      case 'Pod':
        state.pods.push(o.object);
        break;
    }
  }
  if (state.pods.length > 0) state.endpointSlices.push(...endpointSlicesFromPods(state));
  return state;
}

/** One text (a file's content, stdin) → state. For tests and the folder watcher. */
export function loadManifestText(text: string, source: string): LoadResult {
  const parsed = parseManifestText(text, source);
  const warnings = [...parsed.warnings];
  const state = buildState([{ source, objects: parsed.objects }], warnings);
  return { state, warnings };
}

/** Every manifest file under `dir`, recursively, sorted by path; hidden entries (".git", "..data", editor swap files) skipped. */
export async function listManifestFiles(dir: string, dirs?: string[]): Promise<string[]> {
  const out: string[] = [];
  dirs?.push(dir);
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    // The entry's own type saves a stat per file (10,000 of them in a large folder); symlinks
    // (ConfigMap volumes are made of them) and unknown types are followed with stat.
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (!isDir && !isFile) {
      try {
        const st = await stat(p);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        continue; // a dangling symlink or a file removed meanwhile
      }
    }
    if (isDir) out.push(...(await listManifestFiles(p, dirs)));
    else if (isFile && MANIFEST_EXT.test(e.name)) out.push(p);
  }
  return out;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Loads files, folders and "-" (stdin). A path that cannot be read is an
 * error (thrown, naming the path); bad content inside a file is a warning.
 */
export async function loadManifests(paths: string[]): Promise<LoadResult> {
  const warnings: InputWarning[] = [];
  const groups: { source: string; objects: ParsedObject[] }[] = [];
  const addText = (text: string, source: string): void => {
    const parsed = parseManifestText(text, source);
    warnings.push(...parsed.warnings);
    groups.push({ source, objects: parsed.objects });
  };
  for (const p of paths) {
    if (p === '-') {
      addText(await readStdin(), '-');
      continue;
    }
    let st;
    try {
      st = await stat(p);
    } catch (err) {
      throw new Error(`cannot read ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
    }
    if (st.isDirectory()) {
      const files = await listManifestFiles(p);
      if (files.length === 0) warnings.push({ source: p, message: 'folder holds no *.yaml, *.yml or *.json files' });
      for (const f of files) addText(await readManifestFile(f), f);
    } else {
      let text: string;
      try {
        text = await readManifestFile(p);
      } catch (err) {
        throw new Error(`cannot read ${p}: ${(err as Error).message}`);
      }
      addText(text, p);
    }
  }
  const state = buildState(groups, warnings);
  return { state, warnings };
}
