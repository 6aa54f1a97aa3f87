// ip_vs_wrr.c: passes over the destination list with a current weight cw that
// drops by the gcd of the weights each time the walk wraps (back to the maximum
// after the cw = 1 pass); a destination is taken when its weight ≥ cw. A service
// built by adding its destinations one by one starts on the cw = 1 pass.
import { listSignature, type SchedServer, type Scheduler } from './types.js';

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export function createWRR(): Scheduler {
  let sig: string | undefined;
  let cl = -1; // current destination index, -1 = list head
  let cw = 0;
  let mw = 0;
  let di = 1;
  /** ip_vs_wrr_dest_changed(): the hook every add, delete and update of a destination runs. */
  const changed = (servers: readonly SchedServer[]): void => {
    let g = 0;
    let max = 0;
    for (const s of servers) {
      if (s.weight > 0) g = g > 0 ? gcd(s.weight, g) : s.weight;
      if (s.weight > max) max = s.weight;
    }
    di = g || 1;
    // The kernel lowers mw by (di - 1) so the last pass runs with cw = 1.
    mw = max - (di - 1);
    cl = -1;
    if (cw > mw || !cw) cw = mw;
    else if (di > 1) cw = Math.trunc(cw / di) * di + 1;
  };
  const self: Scheduler = {
    name: 'wrr',
    update(servers) {
      const fresh = sig === undefined;
      sig = listSignature(servers);
      if (fresh) {
        // A service starts empty (cw = mw = 0) and gets its destinations one add at a
        // time, each add_dest hook adjusting cw; the list is newest first, so the adds
        // went from the tail to the head. Replaying them gives the kernel's cw, which is
        // history-dependent: the first add sets cw = mw = w - (w - 1) = 1 and later adds
        // keep it, so a fresh service's first pass takes every destination in list
        // order (seen on Linux 6.1 by the UML differential test), not the heaviest.
        for (let k = servers.length - 1; k > 0; k--) changed(servers.slice(k));
      }
      changed(servers);
    },
    schedule(servers) {
      if (sig !== listSignature(servers)) self.update(servers);
      if (mw <= 0) return undefined;
      const n = servers.length;
      const last = cl;
      let stop = -2;
      let lastPass = false;
      let restarted = false;
      let i = cl;
      // Bounded: every wrap lowers cw, and two full descents end in err_over.
      for (let guard = 0; guard < 2 * (mw / di + 2) * (n + 1) + 8; guard++) {
        for (i = i + 1; i < n; i++) {
          const s = servers[i] as SchedServer;
          if (s.available !== false && s.weight >= cw) {
            cl = i;
            return s;
          }
          if (i === stop) {
            cl = i;
            return undefined;
          }
        }
        i = -1;
        cw -= di;
        if (cw <= 0) {
          cw = mw;
          if (lastPass || last === -1) {
            cl = -1;
            return undefined;
          }
          restarted = true;
        }
        lastPass = cw <= di;
        if (lastPass && restarted && last !== -1) stop = last;
      }
      cl = -1;
      return undefined;
    },
  };
  return self;
}
