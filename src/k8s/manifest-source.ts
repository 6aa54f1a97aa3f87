// A folder of manifests as a ClusterSource: `kproxy run --manifests DIR`.
// fs.watch on Linux is per directory (recursive mode is not dependable on Node
// 20), so every directory is watched on its own, and a periodic stat-only
// rescan catches whatever the watches miss (network filesystems, lost events).
//
// That rescan lists and stats every file: about 0.4 s at 10,000 files, and a
// change arriving meanwhile waits for it. While every directory has a watch it
// is only a safety net, so it runs rarely enough that its cost stays a small
// share of the time (RESCAN_COST_SHARE: every 50 times its last duration,
// between the base period and maxRescanMs); a directory that cannot be watched
// brings the base period (1 s) back, since then the rescan is how changes arrive.
//
// A change costs work in proportion to the files it touches: a watch event
// names a file, only that file is re-read and re-parsed, its objects replace
// the ones it held before in a StateStore (state-store.ts), and the snapshot
// emitted carries the store's per-service index and the services that changed.
//
// When a file is read (docs/manifests.md, "When a change is read"): a file
// renamed into place (how editors, kubectl cp, ConfigMap volumes and most tools
// replace a file) is complete, so a rename event is read at once (after a
// couple of milliseconds that fold a burst of renames into one scan). A write
// in place is read once the file has been quiet for the debounce (100 ms), as
// writes may come in several chunks. Like upstream's informers, nothing else
// waits: the sync runner's minSyncPeriod does the batching.
//
// A file that is mid-write (syntax error, an object that fails validation, or
// empty) keeps its last good objects until it parses again, so a half-saved
// file never removes services from the node; a file that changed while it was
// being read is read again.
import { EventEmitter } from 'node:events';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { basename, join, normalize, relative, sep } from 'node:path';
import { log as defaultLog, type Logger } from '../util/log.js';
import { listManifestFiles, MANIFEST_EXT, parseManifestText, type ParsedObject } from './load.js';
import type { ClusterSource, SourceEvents } from './source.js';
import { StateStore, type StoreKind } from './state-store.js';
import { formatWarning, type ClusterState, type InputWarning } from './types.js';

export interface ManifestSourceOptions {
  dir: string;
  /** Quiet time after an in-place write before the file is read (default 100 ms). */
  debounceMs?: number;
  /** Delay after a rename/create/delete event, folding a burst into one scan (default 2 ms). */
  renameDelayMs?: number;
  /** Period of the stat-only fallback rescan (default 1000 ms); longer for large folders while every directory is watched. */
  rescanMs?: number;
  /** Longest period of the fallback rescan while every directory is watched (default 60 s, never below rescanMs). */
  maxRescanMs?: number;
  logger?: Logger;
}

/** A file as read: its stat fingerprint and text; `rewritten` when it changed while being read. */
interface FetchedFile {
  fp: string;
  text: string;
  rewritten: boolean;
}

interface FileEntry {
  /** stat fingerprint of the version last read. */
  fingerprint: string;
  /** Objects in use for this file: the last version that parsed cleanly (or the first version read). */
  objects: ParsedObject[];
  /** True while the file's current content is not usable and `objects` are from an older version. */
  stale: boolean;
}

/** One definition of an object: the file and position it comes from. */
interface Def {
  path: string;
  index: number;
  object: ParsedObject;
}

interface ScanStats {
  /** Files stat'ed. */
  stats: number;
  /** Files read and parsed. */
  parsed: number;
  /** Everything was listed and stat'ed (first scan, periodic rescan, a swapped symlink). */
  full: boolean;
}

function objectKey(o: ParsedObject): string {
  return `${o.kind}\u0000${o.object.meta.namespace}\u0000${o.object.meta.name}`;
}

/** Later file (by path), then later in the file: the definition in use (buildState's "later replaces earlier"). */
function laterDef(a: Def, b: Def): boolean {
  return a.path !== b.path ? a.path > b.path : a.index > b.index;
}

function winner(list: Def[]): Def {
  let win = list[0]!;
  for (const d of list) if (laterDef(d, win)) win = d;
  return win;
}

/** While every directory is watched, the fallback rescan waits this many times its last duration. */
const RESCAN_COST_SHARE = 50;
/** How much more a first scan (every file read and parsed) costs than a stat-only rescan. */
const FIRST_SCAN_COST_RATIO = 10;
/** Files read between two turns of the event loop in a scan. */
const READ_BATCH = 64;

function fingerprintOf(st: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export class ManifestSource extends EventEmitter<SourceEvents> implements ClusterSource {
  readonly dir: string;
  private readonly debounceMs: number;
  private readonly renameDelayMs: number;
  private readonly rescanMs: number;
  private readonly maxRescanMs: number;
  /** How long the last full scan took (ms): the fallback rescan's cost at this folder's size. */
  private lastFullScanMs = 0;
  /** Every directory under the root, as the last full scan listed them. */
  private dirs = new Set<string>();
  private readonly log: Logger;
  private files = new Map<string, FileEntry>();
  /** Paths of `files`, sorted (the order arrays are built in); null when it must be rebuilt. */
  private sortedPaths: string[] | null = [];
  /** Object key → its definitions across files; the one in use is the latest (laterDef). */
  private defs = new Map<string, Def[]>();
  private readonly store: StateStore;
  private watchers = new Map<string, FSWatcher>();
  /** Paths named by watch events since the last scan → when an in-place write was last seen (0: renamed/created/deleted). */
  private touched = new Map<string, number>();
  /** A full (stat everything) scan is due: periodic rescan, or an event that names no usable path. */
  private fullScanDue = false;
  private state: ClusterState;
  private _synced = false;
  private running = false;
  private connected = true;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
  private rescanTimer?: NodeJS.Timeout;
  /** Period the fallback rescan is armed with (tests, benchmarks). */
  rescanPeriodMs = 0;
  private scanning?: Promise<void>;
  private rescanAgain = false;
  /** Objects defined more than once, already warned about (by key and the two files). */
  private duplicateWarned = new Set<string>();
  /** Work done by the last scan that changed something or was full (tests, benchmarks). */
  lastScan: ScanStats = { stats: 0, parsed: 0, full: false };

  constructor(opts: ManifestSourceOptions) {
    super();
    // listManifestFiles builds paths with join(): normalize so watch events name the same paths.
    this.dir = normalize(opts.dir).replace(/(.)\/+$/, '$1');
    this.debounceMs = opts.debounceMs ?? 100;
    this.renameDelayMs = opts.renameDelayMs ?? 2;
    this.rescanMs = opts.rescanMs ?? 1000;
    this.maxRescanMs = Math.max(this.rescanMs, opts.maxRescanMs ?? 60_000);
    this.log = opts.logger ?? defaultLog.child({ source: 'manifests', dir: opts.dir });
    this.store = new StateStore((kind) => this.inFileOrder(kind));
    this.state = this.store.snapshot();
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
    this.armRescan();
  }

  /**
   * The fallback rescan's period: the base period while some directory has no watch;
   * else long enough that the rescan takes at most 1/RESCAN_COST_SHARE of the time.
   */
  private rescanPeriod(): number {
    for (const d of this.dirs) if (!this.watchers.has(d)) return this.rescanMs;
    return Math.min(this.maxRescanMs, Math.max(this.rescanMs, RESCAN_COST_SHARE * this.lastFullScanMs));
  }

  /** (Re)arms the fallback rescan, a period from now: after any full scan, and when a watch is lost. */
  private armRescan(): void {
    if (!this.running) return;
    clearTimeout(this.rescanTimer);
    this.rescanPeriodMs = this.rescanPeriod();
    this.rescanTimer = setTimeout(() => {
      this.fullScanDue = true;
      this.schedule(0);
      // Armed again now as well as after the scan, so a scan that fails still leaves one coming.
      this.armRescan();
    }, this.rescanPeriodMs);
    this.rescanTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.clearTimer();
    clearTimeout(this.rescanTimer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.scanning;
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /** Arms the scan timer for `delay` ms from now unless it is armed for earlier. */
  private schedule(delay: number): void {
    if (!this.running) return;
    const at = Date.now() + delay;
    if (this.timer && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.runScan();
    }, delay);
  }

  /** A watch event: `write` for an in-place modification (read once quiet), else a rename/create/delete (read now). */
  private onEvent(path: string, write: boolean): void {
    if (write) this.touched.set(path, Date.now());
    else if (!this.touched.has(path)) this.touched.set(path, 0);
    // The scan itself holds back files written to within the debounce.
    this.schedule(write ? this.debounceMs : this.renameDelayMs);
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

  /** True for a path under the root that listManifestFiles would skip (a hidden component). */
  private hidden(path: string): boolean {
    return relative(this.dir, path)
      .split(sep)
      .some((c) => c.startsWith('.'));
  }

  private async scan(initial: boolean): Promise<void> {
    const started = performance.now();
    const stats: ScanStats = { stats: 0, parsed: 0, full: false };
    let changed = false;
    const paths = await this.takeTouched(initial);
    if (initial || this.fullScanDue) {
      this.fullScanDue = false;
      stats.full = true;
      let all: string[];
      const dirs: string[] = [];
      try {
        all = await listManifestFiles(this.dir, dirs);
      } catch (err) {
        if (initial) throw new Error(`cannot read manifests folder ${this.dir}: ${(err as Error).message}`);
        // The folder went away (or became unreadable): keep the last state, report it.
        if (this.connected) this.log.warn('manifests folder unreadable; keeping the last state', { err: err as Error });
        this.setConnected(false);
        return;
      }
      this.setConnected(true);
      this.dirs = new Set(dirs);
      this.syncWatchers(dirs, true);
      const present = new Set(all);
      for (const p of [...this.files.keys()]) if (!present.has(p)) changed = this.dropFile(p) || changed;
      // A watch event that arrives meanwhile is served between two batches, not after the
      // whole rescan (10,000 stats): a change waits for a batch, never for the safety net.
      const between = initial ? undefined : () => this.serveEvents(stats);
      changed = (await this.readFiles(all, (p) => paths.has(p), stats, between)) || changed;
      // The first scan reads every file; a rescan mostly stats them, at about a tenth of the
      // cost. Until a rescan has been timed, that tenth stands in for it, so that a large
      // folder's first rescan does not land in the middle of the first sync (at 10,000 files
      // the default 1 s did, and its stats competed with nft for the CPU).
      const ms = performance.now() - started;
      this.lastFullScanMs = initial ? ms / FIRST_SCAN_COST_RATIO : ms;
      this.armRescan();
    } else {
      for (const p of paths) changed = (await this.touchedPath(p, stats)) || changed;
    }
    if (changed || stats.full) this.lastScan = stats;
    if (!changed && !initial) return;
    this.state = this.store.snapshot();
    if (!initial && this.running) this.emit('change', this.state);
  }

  /**
   * The paths watch events named that are ready to read (files written in place wait out the
   * debounce; the timer is armed for them). An event for a hidden name matters only when it
   * is a directory or a symlink being swapped (ConfigMap volumes rename "..data" over): then
   * any file behind the symlinks may have changed, so a full scan is due.
   */
  private async takeTouched(initial: boolean): Promise<Set<string>> {
    const now = Date.now();
    const touched: string[] = [];
    let wait = Infinity;
    for (const [p, t] of this.touched) {
      if (!initial && t > 0 && now - t < this.debounceMs) wait = Math.min(wait, this.debounceMs - (now - t));
      else touched.push(p);
    }
    for (const p of touched) this.touched.delete(p);
    if (wait !== Infinity) this.schedule(Math.ceil(wait));
    const paths = new Set<string>();
    for (const p of touched) {
      if (p === this.dir) this.fullScanDue = true;
      else if (this.hidden(p)) {
        const st = await lstat(p).catch(() => null);
        if (st && (st.isSymbolicLink() || st.isDirectory())) this.fullScanDue = true;
      } else paths.add(p);
    }
    return paths;
  }

  /** During a full rescan: reads the paths watch events named since it began, and publishes them at once. */
  private async serveEvents(stats: ScanStats): Promise<void> {
    if (this.touched.size === 0) return;
    let changed = false;
    for (const p of await this.takeTouched(false)) changed = (await this.touchedPath(p, stats)) || changed;
    if (!changed || !this.running) return;
    this.state = this.store.snapshot();
    this.emit('change', this.state);
  }

  /** A path named by a watch event: a file (re-read), a directory (read what it holds), or gone. */
  private async touchedPath(p: string, stats: ScanStats): Promise<boolean> {
    stats.stats++;
    const st = await stat(p).catch(() => null);
    if (!st) {
      // Gone: the file, or a directory and everything under it.
      let changed = this.dropFile(p);
      if (this.watchers.has(p)) {
        const prefix = p + sep;
        for (const f of [...this.files.keys()]) if (f.startsWith(prefix)) changed = this.dropFile(f) || changed;
        for (const [d, w] of this.watchers) {
          if (d === p || d.startsWith(prefix)) {
            w.close();
            this.watchers.delete(d);
          }
        }
        for (const d of this.dirs) if (d === p || d.startsWith(prefix)) this.dirs.delete(d);
      }
      return changed;
    }
    if (st.isDirectory()) {
      const dirs: string[] = [];
      let files: string[];
      try {
        files = await listManifestFiles(p, dirs);
      } catch {
        return false; // the periodic rescan sees it later
      }
      this.syncWatchers(dirs, false);
      let changed = false;
      return (await this.readFiles(files, () => true, stats)) || changed;
    }
    if (!st.isFile() || !MANIFEST_EXT.test(basename(p))) return false;
    return this.readFileAt(p, true, stats, st);
  }

  /**
   * readFileAt for many files, in order. The reads are synchronous, READ_BATCH files
   * between two turns of the event loop: a promise-based stat or read costs some 20 µs
   * of this thread plus a thread-pool round trip, a synchronous one a few µs (a first
   * scan of 10,000 files: 0.3 s against 1.0 s with 32 promise reads in flight, here).
   */
  private async readFiles(paths: string[], force: (p: string) => boolean, stats: ScanStats, between?: () => Promise<void>): Promise<boolean> {
    let changed = false;
    for (let i = 0; i < paths.length; i++) {
      if (i > 0 && i % READ_BATCH === 0) {
        await new Promise(setImmediate);
        if (between) await between();
      }
      const p = paths[i]!;
      changed = this.applyFile(p, this.fetchFile(p, force(p), stats), stats) || changed;
    }
    return changed;
  }

  /**
   * Reads one file if its stat changed (or `force`: a watch event named it)
   * and applies its objects. Returns whether the state changed.
   */
  private readFileAt(p: string, force: boolean, stats: ScanStats, known?: Parameters<typeof fingerprintOf>[0]): boolean {
    return this.applyFile(p, this.fetchFile(p, force, stats, known), stats);
  }

  /** The I/O half of readFileAt: the file's text and stat fingerprint, or null when there is nothing to apply. */
  private fetchFile(p: string, force: boolean, stats: ScanStats, known?: Parameters<typeof fingerprintOf>[0]): FetchedFile | null {
    let st = known;
    if (!st) {
      stats.stats++;
      st = statSync(p, { throwIfNoEntry: false });
      if (!st) return null; // removed between listing and stat; the next scan drops it
    }
    const fp = fingerprintOf(st);
    const prev = this.files.get(p);
    if (prev && prev.fingerprint === fp && !force) return null;
    let text: string;
    try {
      text = readFileSync(p, 'utf8');
    } catch {
      return null;
    }
    // Written to while we read it: read it again once the writer is done.
    stats.stats++;
    const after = statSync(p, { throwIfNoEntry: false });
    return { fp, text, rewritten: after !== undefined && fingerprintOf(after) !== fp };
  }

  /** The state half of readFileAt. */
  private applyFile(p: string, got: FetchedFile | null, stats: ScanStats): boolean {
    if (!got) return false;
    const { fp, text } = got;
    if (got.rewritten) {
      this.onEvent(p, true);
      return false;
    }
    const prev = this.files.get(p);
    stats.parsed++;
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
      return false;
    }
    if (prev && !prev.stale && sameObjects(prev.objects, parsed.objects)) {
      prev.fingerprint = fp;
      return false; // touched but unchanged content
    }
    for (const w of parsed.warnings) this.warn(w);
    this.setFile(p, { fingerprint: fp, objects: parsed.objects, stale: false });
    return true;
  }

  private dropFile(p: string): boolean {
    if (!this.files.has(p)) return false;
    this.setFile(p, undefined);
    return true;
  }

  /** Replaces one file's objects (undefined: the file is gone), updating only the objects it defines or defined. */
  private setFile(p: string, entry: FileEntry | undefined): void {
    const before = this.files.get(p);
    if (!before !== !entry) this.sortedPaths = null;
    if (entry) this.files.set(p, entry);
    else this.files.delete(p);
    const keys = new Set<string>();
    for (const o of before?.objects ?? []) {
      const k = objectKey(o);
      if (keys.has(k)) continue;
      keys.add(k);
      const rest = (this.defs.get(k) ?? []).filter((d) => d.path !== p);
      if (rest.length) this.defs.set(k, rest);
      else this.defs.delete(k);
    }
    entry?.objects.forEach((o, index) => {
      const k = objectKey(o);
      keys.add(k);
      const list = this.defs.get(k) ?? [];
      list.push({ path: p, index, object: o });
      this.defs.set(k, list);
    });
    for (const k of keys) {
      const list = this.defs.get(k);
      const win = list ? winner(list) : undefined;
      if (list && list.length > 1) this.warnDuplicates(list);
      const [kind, ns, name] = k.split('\u0000') as [StoreKind, string, string];
      this.store.set(kind, ns, name, win?.object.object as never);
    }
  }

  /** An object defined in more than one place: the later definition is used (warned once per pair of places). */
  private warnDuplicates(list: Def[]): void {
    const sorted = [...list].sort((a, b) => (laterDef(a, b) ? 1 : -1));
    for (let i = 1; i < sorted.length; i++) {
      const first = sorted[i - 1]!;
      const later = sorted[i]!;
      const o = later.object;
      const dedup = `${objectKey(o)}\u0000${first.path}#${first.index}\u0000${later.path}#${later.index}`;
      if (this.duplicateWarned.has(dedup)) continue;
      this.duplicateWarned.add(dedup);
      const name = o.object.meta.namespace ? `${o.object.meta.namespace}/${o.object.meta.name}` : o.object.meta.name;
      this.warn({ source: later.path, kind: o.kind, object: name, message: `defined again (first in ${first.path}); the later definition is used` });
    }
  }

  /** The objects of one kind in use, in file order then position (the order buildState gives). */
  private *inFileOrder(kind: StoreKind): Generator<never> {
    this.sortedPaths ??= [...this.files.keys()].sort();
    for (const p of this.sortedPaths) {
      const e = this.files.get(p)!;
      for (let i = 0; i < e.objects.length; i++) {
        const o = e.objects[i]!;
        if (o.kind !== kind) continue;
        const list = this.defs.get(objectKey(o));
        if (list && list.length > 1) {
          const win = winner(list);
          if (win.path !== p || win.index !== i) continue;
        }
        yield o.object as never;
      }
    }
  }

  /** One fs.watch per directory under the root; with `all` the list is complete, and watchers of other directories close. */
  private syncWatchers(dirList: string[], all: boolean): void {
    const dirs = new Set(dirList);
    if (all) {
      for (const [d, w] of this.watchers) {
        if (!dirs.has(d)) {
          w.close();
          this.watchers.delete(d);
        }
      }
    }
    let unwatched = false;
    for (const d of dirs) {
      this.dirs.add(d);
      if (this.watchers.has(d)) continue;
      try {
        const w = watch(d, { persistent: false }, (event, name) => this.onEvent(name ? join(d, name.toString()) : d, event === 'change'));
        w.on('error', () => {
          w.close();
          this.watchers.delete(d);
          this.armRescan(); // the base period again: the rescan is how this directory's changes arrive now
        });
        this.watchers.set(d, w);
      } catch {
        // The periodic rescan still covers this directory, at its base period.
        unwatched = true;
      }
    }
    if (unwatched && !all) this.armRescan();
  }
}

function sameObjects(a: ParsedObject[], b: ParsedObject[]): boolean {
  return a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
}
