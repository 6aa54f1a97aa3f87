// One long-lived `nft -i` for the small transactions of partial syncs. Starting a
// process costs ~6 ms of this machine's time (fork + exec, whatever the parent's size)
// and nft's start more: a one-element change took 15-20 ms through `nft -f -`, and about
// 1 ms through a running nft. In interactive mode nft runs each input line as one batch,
// so a transaction written as one line (its statements joined by ";") stays atomic: a
// failing statement fails the line and nothing of it is applied.
//
// nft -i says nothing on success. After each transaction the session sends a command that
// must fail (listing a table that does not exist, named with a sequence number); nft writes
// errors to stderr in order, so the transaction's errors are what arrives before that one.
import { spawn, type ChildProcess } from 'node:child_process';
import { NftError, numberedLine } from './apply.js';

/** Transactions above this size go through `nft -f -` (line numbers in errors; no huge single line). */
export const SESSION_MAX_CHARS = 256 * 1024;

interface Pending {
  mark: string;
  text: string;
  line: string;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** What nft said about one transaction line: null when it was applied. */
export function sessionError(stderr: string, line: string, text: string): NftError | null {
  if (!/^Error:/m.test(stderr)) return null;
  const lines = stderr.split('\n');
  const first = lines.find((l) => l.startsWith('Error:')) ?? lines[0]!;
  // nft echoes the line with carets under the part it refused: name the statement there.
  const stmts = text.split('\n').filter((l) => l.trim() !== '');
  const failing: string[] = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    if (lines[i] !== line) continue;
    const col = lines[i + 1]!.search(/\^/);
    if (col < 0) continue;
    let start = 0;
    for (let s = 0; s < stmts.length; s++) {
      const end = start + stmts[s]!.length;
      if (col < end + 3) {
        const entry = numberedLine(s + 1, stmts[s]!);
        if (!failing.includes(entry)) failing.push(entry);
        break;
      }
      start = end + 3; // " ; "
    }
    if (failing.length >= 5) break;
  }
  return new NftError(`nft failed: ${first.replace(/^Error:\s*/, '')}`, failing);
}

export class NftSession {
  private child: ChildProcess | undefined;
  private stderr = '';
  private queue: Pending[] = [];
  private seq = 0;

  constructor(
    /** The command that runs nft (tests prefix `ip netns exec NS`). */
    private readonly command: string[] = ['nft'],
    private readonly timeoutMs = 30_000,
  ) {}

  private start(): ChildProcess {
    const child = spawn(this.command[0]!, [...this.command.slice(1), '-i'], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      this.stderr += d;
      this.settle();
    });
    const gone = (why: string): void => {
      if (this.child !== child) return;
      this.child = undefined;
      const q = this.queue;
      this.queue = [];
      for (const p of q) {
        clearTimeout(p.timer);
        p.reject(new Error(`nft -i ${why}`));
      }
    };
    child.on('error', (e) => gone(`failed: ${e.message}`));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    child.stdin!.on('error', () => {}); // a dead nft shows up as 'exit'
    return child;
  }

  /** Hands each queued transaction the stderr that arrived before its marker. */
  private settle(): void {
    while (this.queue.length > 0) {
      const p = this.queue[0]!;
      const at = this.stderr.indexOf(`\n${p.mark}\n`);
      if (at < 0) return;
      // The marker's own error block: "Error: …" just before its echoed line, carets after it.
      const errAt = this.stderr.lastIndexOf('Error:', at);
      const caretsEnd = this.stderr.indexOf('\n', at + p.mark.length + 2);
      if (caretsEnd < 0) return;
      const mine = this.stderr.slice(0, errAt < 0 ? at : errAt);
      this.stderr = this.stderr.slice(caretsEnd + 1);
      this.queue.shift();
      clearTimeout(p.timer);
      const err = sessionError(mine, p.line, p.text);
      if (err) p.reject(err);
      else p.resolve();
    }
  }

  /**
   * Starts nft ahead of the first change (its start and first cache fill cost ~50 ms at
   * 10k services) with a statement that changes nothing, e.g. `add table` of the table as
   * it is. Not a listing: `list` makes nft read every element (3 s at 10k services).
   */
  warm(noop: string): Promise<void> {
    if (this.child) return Promise.resolve();
    return this.run(noop);
  }

  /** Runs one transaction (nft -f syntax, one statement per line); rejects with NftError when nft refused it. */
  run(text: string): Promise<void> {
    if (text.trim() === '') return Promise.resolve();
    this.child ??= this.start();
    const child = this.child;
    const mark = `list table ip kproxy-session-mark-${++this.seq}`;
    const line = text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .join(' ; ');
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A stuck nft: kill it (the queue is rejected on exit) and start afresh next time.
        child.kill('SIGKILL');
      }, this.timeoutMs);
      timer.unref();
      this.queue.push({ mark, text, line, resolve, reject, timer });
      child.stdin!.write(`${line}\n${mark}\n`);
    });
  }

  /** The running nft's pid, if one is running. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  close(): void {
    const c = this.child;
    this.child = undefined;
    if (!c) return;
    c.stdin!.end();
    c.kill('SIGTERM');
  }
}
