// What the machine was like during a bench run. These machines are shared and their
// speed swings by 1.5x or more within minutes, so every result is printed next to a
// fixed amount of pure CPU work timed at the same moment: compare figures taken at
// different times through it, not as they stand.
import { loadavg } from 'node:os';

function loop(n: number): number {
  let x = 0;
  for (let i = 0; i < n; i++) x += i & 7;
  return x;
}

/** Wall time of a fixed integer loop (3e8 iterations, after a warm-up): ~165 ms in a quick moment of a bench machine. */
export function speedProbeMs(): number {
  loop(1e7); // optimized before it is timed
  const t = performance.now();
  const x = loop(3e8);
  const ms = Math.round(performance.now() - t);
  if (x === 42) process.stdout.write(''); // the result is used: the loop cannot be dropped
  return ms;
}

/** "machine: load average …; speed probe N ms" (+ what the bench wants to add). */
export function machineLine(extra?: string): string {
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  return `machine: load average ${load}; speed probe ${speedProbeMs()} ms (3e8-step loop)${extra ? `; ${extra}` : ''}\n`;
}
