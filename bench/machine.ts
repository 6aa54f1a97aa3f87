// What the machine was like during a bench run. These machines are shared and their
// speed swings by 1.5x or more within minutes, so every result is printed next to two
// fixed pieces of work timed at the same moment: a pure CPU loop, and an allocation
// loop (short strings, a window of them kept alive, as a render makes them) that also
// feels the memory system and the garbage collector, which the CPU loop does not.
// Compare figures taken at different times through them, not as they stand.
import { loadavg } from 'node:os';

function loop(n: number): number {
  let x = 0;
  for (let i = 0; i < n; i++) x += i & 7;
  return x;
}

function allocate(n: number): number {
  let keep: string[] = [];
  let chars = 0;
  for (let i = 0; i < n; i++) {
    const s = `-A KUBE-SEP-${i} -s 10.${i & 255}.${(i >> 8) & 255}.1 -j KUBE-MARK-MASQ`;
    chars += s.charCodeAt(s.length - 1);
    keep.push(s);
    if (keep.length > 250_000) keep = [];
  }
  return chars + keep.length;
}

function timed(f: () => number): number {
  const t = performance.now();
  const x = f();
  const ms = Math.round(performance.now() - t);
  if (x === 42) process.stdout.write(''); // the result is used: the work cannot be dropped
  return ms;
}

/**
 * Wall times of the probes, each after a warm-up: a 3e8-step integer loop (~165 ms in a
 * quick moment of a bench machine) and 1e6 strings made and kept in windows of 250k (~260 ms).
 */
export function speedProbes(): { cpuMs: number; allocMs: number } {
  loop(1e7);
  allocate(1e5);
  return { cpuMs: timed(() => loop(3e8)), allocMs: timed(() => allocate(1e6)) };
}

/** "machine: load average …; probes cpu N ms, alloc M ms" (+ what the bench wants to add). */
export function machineLine(extra?: string): string {
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const p = speedProbes();
  return `machine: load average ${load}; probes cpu ${p.cpuMs} ms, alloc ${p.allocMs} ms${extra ? `; ${extra}` : ''}\n`;
}
