// Network namespaces, veth pairs and bridges: the building blocks of the lab,
// of `npm start` and of every kernel test. A Topology records everything it
// creates and removes it all in destroy(), so callers put destroy() in a
// `finally` and nothing outlives a run even when a test fails.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { exec, type ExecOptions, type ExecResult } from '../util/exec.js';

/** A short prefix unique to this run: namespaces and interface names stay under the kernel's 15-character limit. */
export function runPrefix(tag = 'kp'): string {
  return `${tag}${randomBytes(3).toString('hex')}`;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export class Netns {
  constructor(readonly name: string) {}

  /** Runs a command inside the namespace. */
  exec(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    return exec('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Starts a long-running process inside the namespace. */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  }

  /** Runs `node` with the same binary as the caller inside the namespace. */
  spawnNode(script: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return this.spawn(process.execPath, [script, ...args], opts);
  }

  ip(...args: string[]): Promise<ExecResult> {
    return this.exec('ip', args);
  }

  sysctl(key: string, value: string): Promise<ExecResult> {
    return this.exec('sysctl', ['-qw', `${key}=${value}`]);
  }
}

export class Topology {
  readonly namespaces: Netns[] = [];
  private readonly children: ChildProcess[] = [];

  constructor(readonly prefix: string = runPrefix()) {}

  /** Creates `<prefix>-<name>` with loopback up. */
  async netns(name: string): Promise<Netns> {
    const ns = new Netns(`${this.prefix}-${name}`);
    await exec('ip', ['netns', 'add', ns.name]);
    this.namespaces.push(ns);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /**
   * A veth pair between two namespaces, with optional addresses (CIDR form).
   * Interface names are given by the caller and must be ≤ 15 characters.
   */
  async veth(a: Netns, ifA: string, b: Netns, ifB: string, addrA?: string, addrB?: string): Promise<void> {
    const tmp = `v${randomBytes(5).toString('hex')}`;
    await a.ip('link', 'add', ifA, 'type', 'veth', 'peer', 'name', tmp);
    await a.ip('link', 'set', tmp, 'netns', b.name);
    await b.ip('link', 'set', tmp, 'name', ifB);
    if (addrA) await a.ip('addr', 'add', addrA, 'dev', ifA);
    if (addrB) await b.ip('addr', 'add', addrB, 'dev', ifB);
    await a.ip('link', 'set', ifA, 'up');
    await b.ip('link', 'set', ifB, 'up');
  }

  /** A bridge inside a namespace, with an optional address. */
  async bridge(ns: Netns, name: string, addr?: string): Promise<void> {
    await ns.ip('link', 'add', name, 'type', 'bridge');
    if (addr) await ns.ip('addr', 'add', addr, 'dev', name);
    await ns.ip('link', 'set', name, 'up');
  }

  /** Tracks a child process so destroy() kills it. */
  track<T extends ChildProcess>(child: T): T {
    this.children.push(child);
    return child;
  }

  async destroy(): Promise<void> {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        try {
          // `ip netns exec` runs the command in the same process (exec), so the pid is the command's.
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const ns of this.namespaces.reverse()) {
      // Processes still inside keep the namespace alive; kill them first.
      await exec('ip', ['netns', 'pids', ns.name], { allowFail: true }).then(async (r) => {
        for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      });
      await exec('ip', ['netns', 'delete', ns.name], { allowFail: true });
    }
    this.namespaces.length = 0;
  }
}

/** Waits until `probe` resolves true, polling every `intervalMs`, for at most `timeoutMs`. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
