// ip_vs_rr.c: a cursor on the last chosen destination; each schedule walks on
// from it (wrapping through the list head) to the next one that is usable.
import { isUsable, type SchedServer, type Scheduler } from './types.js';

export function createRR(): Scheduler {
  let keys: string[] = [];
  // Index of the last chosen destination in `keys`; -1 is the list head.
  let cursor = -1;
  const self: Scheduler = {
    name: 'rr',
    update(servers) {
      const next = servers.map((s) => s.key);
      if (cursor >= 0) {
        // ip_vs_rr_del_dest: when the cursor's destination goes, the cursor steps back
        // to the entry before it (or the head).
        let i = cursor;
        while (i >= 0 && !next.includes(keys[i]!)) i--;
        cursor = i >= 0 ? next.indexOf(keys[i]!) : -1;
      }
      keys = next;
    },
    schedule(servers) {
      if (servers.length !== keys.length || servers.some((s, i) => s.key !== keys[i])) self.update(servers);
      const n = servers.length;
      // From the head the walk covers the list once; from a cursor it wraps once, ending on the cursor itself.
      for (let k = 1; k <= n; k++) {
        const i = cursor < 0 ? k - 1 : (cursor + k) % n;
        const s = servers[i] as SchedServer;
        if (isUsable(s)) {
          cursor = i;
          return s;
        }
      }
      return undefined;
    },
  };
  return self;
}
