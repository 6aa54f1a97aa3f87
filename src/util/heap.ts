// V8's heap growth for a long-running agent. By default V8 lets the old space
// grow to a multiple of what survived the last major GC before it collects
// again; the agent's steady work (a periodic full sync re-rendering every
// service, the drift check's listing) is garbage, so at 10k services the heap
// climbed from ~100 MiB live to ~350 MiB, and RSS past 400 MiB, with nothing
// of it kept. A growing factor of 1.2 keeps RSS near what is live, at the
// price of more frequent major GCs (at 10k, two per periodic full sync, each
// pausing 4–20 ms at its end after incremental steps of up to ~17 ms; measured
// with --trace-gc). It is set once the first sync is done, so the start-up burst
// runs at V8's default (0.2–0.4 s faster to the first sync at 10k), followed
// by one major GC (~70 ms at 10k): V8 computes the next limit at a major GC,
// and without one the start-up limit (and its garbage) would stay.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const AGENT_HEAP_GROWING_PERCENT = 20;

/**
 * Sets V8's heap growing factor and collects once, unless the user gave node
 * a growing factor of their own; true when set.
 */
export function tightenHeapGrowth(percent = AGENT_HEAP_GROWING_PERCENT, execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return false;
  setFlagsFromString(`--heap-growing-percent=${percent}`);
  // The documented way to a gc() is node --expose-gc; set at run time, the
  // function appears in contexts created after it (jest's leak detector does the same).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  gc?.();
  return true;
}
