// A folder of manifests as a ClusterSource: `kproxy run --manifests DIR`.
// fs.watch on Linux is per directory (recursive mode is not dependable on Node
// 20), so every directory is watched on its own, and a periodic stat-only
// rescan catches whatever the watches miss (editors that rename over files,
// network filesystems). Changes are debounced, then the changed files are
// re-parsed and a fresh ClusterState is emitted.
//
// A file that is mid-write (syntax error, an object that fails validation, or
// empty) keeps its last good objects until it parses again, so a half-saved
// file never removes services from the node.
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { log as defaultLog, type Logger } from '../util/log.js';
import { buildState, emptyState, listManifestFiles, parseManifestText, type ParsedObject } from './load.js';
import type { ClusterSource, SourceEvents } from './source.js';
import { formatWarning, type ClusterState, type InputWarning } from './types.js';

export interface ManifestSourceOptions {
  dir: string;
  /** Quiet time after a filesystem event before rescanning (default 100 ms). */
  debounceMs?: number;
  /** Period of the stat-only fallback rescan (default 1000 ms). */
  rescanMs?: number;
  logger?: Logger;
}

interface FileEntry {
  /** stat fingerprint of the version last read. */
  fingerprint: string;
  /** Objects in use for this file: the last version that parsed cleanly (or the first version read). */
  objects: ParsedObject[];
  /** True while the file's current content is not usable and `objects` are from an older version. */
  stale: boolean;
}

export class ManifestSource extends EventEmitter<SourceEvents> implements ClusterSource {
  readonly dir: string;
  private readonly debounceMs: number;
  private readonly rescanMs: number;
  private readonly log: Logger;
  private files = new Map<string, FileEntry>();
  private watchers = new Map<string, FSWatcher>();
  /** Files named by watch events since the last scan: re-read even if their stat looks unchanged. */
  private touched = new Set<string>();
  private state: ClusterState = emptyState();
  private _synced = false;
  private running = false;
  private connected = true;
  private debounceTimer?: NodeJS.Timeout;
  private rescanTimer?: NodeJS.Timeout;
  private scanning?: Promise<void>;
  private rescanAgain = false;
  private crossFileWarnings = new Set<string>();

  constructor(opts: ManifestSourceOptions) {
    super();
    // listManifestFiles builds paths with join(): normalize so watch events name the same paths.
    this.dir = normalize(opts.dir).replace(/(.)\/+$/, '$1');
    this.debounceMs = opts.debounceMs ?? 100;
    this.rescanMs = opts.rescanMs ?? 1000;
    this.log = opts.logger ?? defaultLog.child({ source: 'manifests', dir: opts.dir });
  }

  get synced(): boolean {
    return this._synced;
  }

  current(): ClusterState {
    return this.state;
  }

  async start(): Promise<void> {
    const st = await stat(this.dir).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot read manifests folder ${this.dir}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
    });
    if (!st.isDirectory()) throw new Error(`manifests folder ${this.dir} is not a directory`);
    this.running = true;
    await this.scan(true);
    this._synced = true;
    this.emit('connected', true);
    this.emit('change', this.state);
    this.rescanTimer = setInterval(() => this.requestScan(), this.rescanMs);
    this.rescanTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.debounceTimer);
    clearInterval(this.rescanTimer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.scanning;
  }

  /** Schedules a rescan after the debounce delay (coalescing bursts of events). */
  private requestScan(): void {
    if (!this.running) return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.runScan(), this.debounceMs);
  }

  private async runScan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanAgain = false;
          await this.scan(false);
        } while (this.rescanAgain && this.running);
      } catch (err) {
        this.log.error('manifests rescan failed', { err: err as Error });
      }
    })();
    await this.scanning;
    this.scanning = undefined;
  }

  private warn(w: InputWarning): void {
    this.log.warn(formatWarning(w), { kind: w.kind, object: w.object, field: w.field });
    this.emit('warning', w);
  }

  private setConnected(ok: boolean): void {
    if (ok === this.connected) return;
    this.connected = ok;
    this.emit('connected', ok);
  }

  private async scan(initial: boolean): Promise<void> {
    let paths: string[];
    let dirs: string[];
    try {
      dirs = [];
      paths = await listManifestFiles(this.dir, dirs);
    } catch (err) {
      if (initial) throw new Error(`cannot read manifests folder ${this.dir}: ${(err as Error).message}`);
      // The folder went away (or became unreadable): keep the last state, report it.
      if (this.connected) this.log.warn('manifests folder unreadable; keeping the last state', { err: err as Error });
      this.setConnected(false);
      return;
    }
    this.setConnected(true);
    this.syncWatchers(dirs);
    const touched = this.touched;
    this.touched = new Set();
    let changed = false;
    const present = new Set(paths);
    for (const p of [...this.files.keys()]) {
      if (!present.has(p)) {
        this.files.delete(p);
        changed = true;
      }
    }
    for (const p of paths) {
      let fp: string;
      try {
        const st = await stat(p);
        fp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch {
        continue; // removed between listing and stat; the next scan drops it
      }
      const prev = this.files.get(p);
      if (prev && prev.fingerprint === fp && !touched.has(p) && !touched.has(dirname(p))) continue;
      let text: string;
      try {
        text = await readFile(p, 'utf8');
      } catch {
        continue;
      }
      const parsed = parseManifestText(text, p);
      const unusable = parsed.syntaxErrors > 0 || parsed.rejected > 0 || text.trim() === '';
      if (prev && unusable) {
        // Half-written (or broken) file: keep what it held before, say why once per version.
        if (prev.fingerprint !== fp) {
          for (const w of parsed.warnings) this.warn(w);
          if (text.trim() === '') this.warn({ source: p, message: 'file is empty (being written?); keeping its last good objects' });
          else this.warn({ source: p, message: 'file does not parse or validate; keeping its last good objects until it does' });
        }
        prev.fingerprint = fp;
        prev.stale = true;
        continue;
      }
      if (prev && !prev.stale && prev.fingerprint !== fp && sameObjects(prev.objects, parsed.objects)) {
        prev.fingerprint = fp;
        continue; // touched but unchanged content
      }
      for (const w of parsed.warnings) this.warn(w);
      this.files.set(p, { fingerprint: fp, objects: parsed.objects, stale: false });
      changed = true;
    }
    if (!changed && !initial) return;
    const warnings: InputWarning[] = [];
    const groups = [...this.files.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([source, e]) => ({ source, objects: e.objects }));
    this.state = buildState(groups, warnings);
    // Cross-file warnings (an object defined twice) come back on every rebuild: report each once.
    const seen = new Set<string>();
    for (const w of warnings) {
      const k = formatWarning(w);
      seen.add(k);
      if (!this.crossFileWarnings.has(k)) this.warn(w);
    }
    this.crossFileWarnings = seen;
    if (!initial && this.running) this.emit('change', this.state);
  }

  /** One fs.watch per directory under the root; closed when the directory goes. */
  private syncWatchers(dirList: string[]): void {
    const dirs = new Set(dirList);
    for (const [d, w] of this.watchers) {
      if (!dirs.has(d)) {
        w.close();
        this.watchers.delete(d);
      }
    }
    for (const d of dirs) {
      if (this.watchers.has(d)) continue;
      try {
        const w = watch(d, { persistent: false }, (_event, name) => {
          this.touched.add(name ? join(d, name.toString()) : d);
          this.requestScan();
        });
        w.on('error', () => {
          w.close();
          this.watchers.delete(d);
        });
        this.watchers.set(d, w);
      } catch {
        // The periodic rescan still covers this directory.
      }
    }
  }
}

function sameObjects(a: ParsedObject[], b: ParsedObject[]): boolean {
  return a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
}
