// The connection-counting schedulers (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c,
// ip_vs_nq.c). They keep no state: each choice reads the live counters.
// Ratios are compared by cross-multiplication, as the kernel does, so there
// is no rounding; ties keep the earlier destination.
import { isUsable, type SchedServer, type Scheduler } from './types.js';

/** ip_vs_dest_conn_overhead(): active connections weigh 256 times an inactive one. */
export function connOverhead(s: SchedServer): number {
  return s.activeConns * 256 + s.inactiveConns;
}

function stateless(name: Scheduler['name'], pick: (servers: readonly SchedServer[]) => SchedServer | undefined): Scheduler {
  return { name, update() {}, schedule: (servers) => pick(servers) };
}

export function createLC(): Scheduler {
  return stateless('lc', (servers) => {
    let least: SchedServer | undefined;
    let loh = 0;
    for (const s of servers) {
      if (!isUsable(s)) continue;
      const doh = connOverhead(s);
      if (!least || doh < loh) {
        least = s;
        loh = doh;
      }
    }
    return least;
  });
}

/** wlc and sed share a shape: the first usable destination, then any whose overhead/weight is strictly lower. */
function weighted(name: 'wlc' | 'sed', overhead: (s: SchedServer) => number): Scheduler {
  return stateless(name, (servers) => {
    const first = servers.findIndex(isUsable);
    if (first < 0) return undefined;
    let least = servers[first] as SchedServer;
    let loh = overhead(least);
    for (let i = first + 1; i < servers.length; i++) {
      const s = servers[i] as SchedServer;
      if (s.available === false) continue;
      const doh = overhead(s);
      // Weight 0 never wins: loh*0 > doh*w is false.
      if (loh * s.weight > doh * least.weight) {
        least = s;
        loh = doh;
      }
    }
    return least;
  });
}

export const createWLC = (): Scheduler => weighted('wlc', connOverhead);
/** Shortest expected delay: (active + 1) / weight. */
export const createSED = (): Scheduler => weighted('sed', (s) => s.activeConns + 1);

/** Never queue: the first idle destination (no active connections); otherwise sed. */
export function createNQ(): Scheduler {
  return stateless('nq', (servers) => {
    let least: SchedServer | undefined;
    let loh = 0;
    for (const s of servers) {
      if (!isUsable(s)) continue;
      const doh = s.activeConns + 1;
      if (s.activeConns === 0) return s;
      if (!least || loh * s.weight > doh * least.weight) {
        least = s;
        loh = doh;
      }
    }
    return least;
  });
}
