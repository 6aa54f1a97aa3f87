// ip_vs_wrr.c: passes over the destination list with a current weight cw that
// starts at the maximum weight and drops by the gcd of the weights each time
// the walk wraps; a destination is taken when its weight ≥ cw.
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
  const self: Scheduler = {
    name: 'wrr',
    update(servers) {
      sig = listSignature(servers);
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
