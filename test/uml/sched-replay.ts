// Replays what the kernel did in the scheduler differential test (kernel.json from
// sched-guest.ts) through kproxy's scheduler models. Also a small CLI for a saved
// record: node dist/test/uml/sched-replay.js FILE.
import { readFileSync } from 'node:fs';
import { createScheduler, type SchedServer } from '../../src/dataplane/schedulers/index.js';
import { cases, type KCase, type KDest, RS_PORT } from './sched-guest.js';

const key = (ip: string): string => `${ip}:${RS_PORT}`;

export interface Replay {
  compared: number;
  diffs: string[];
  counters?: string;
}

/** Runs one case's recorded events through a fresh model; counters follow the kernel's choices so one miss does not cascade. */
export function replay(name: string, k: KCase): Replay {
  const c = cases.find((x) => x.name === name)!;
  const sched = createScheduler(c.scheduler, c.flags);
  let servers: SchedServer[] = [];
  const connKey = new Map<number, string>();
  const counters = new Map<string, { a: number; i: number }>();
  const diffs: string[] = [];
  let compared = 0;
  let why = 'initial';
  for (const ev of k.events) {
    if (ev.t === 'dests') {
      why = ev.why;
      servers = ev.list.map((d) => {
        const cnt = counters.get(key(d.ip)) ?? { a: 0, i: 0 };
        counters.set(key(d.ip), cnt);
        return { key: key(d.ip), ip: d.ip, port: d.port, weight: d.weight, activeConns: cnt.a, inactiveConns: cnt.i };
      });
    } else if (ev.t === 'conn') {
      for (const s of servers) {
        const cnt = counters.get(s.key)!;
        s.activeConns = cnt.a;
        s.inactiveConns = cnt.i;
      }
      const want = sched.schedule(servers, { srcIP: ev.src, srcPort: ev.sport ?? 0, dstIP: ev.dst });
      compared++;
      const got = ev.got ?? '-';
      if ((want?.ip ?? '-') !== got) {
        const state = servers.map((s) => `${s.ip}/w${s.weight}/a${s.activeConns}/i${s.inactiveConns}`).join(' ');
        diffs.push(`${name} conn #${ev.id} (${ev.src}${ev.sport ? ':' + ev.sport : ''} → ${ev.dst}; after ${why}): kernel ${got}${ev.err ? ` (${ev.err})` : ''}, model ${want?.ip ?? '-'}; list [${state}]`);
      }
      if (ev.got) {
        connKey.set(ev.id, key(ev.got));
        counters.get(key(ev.got))!.a++;
      }
    } else {
      const kk = connKey.get(ev.id);
      if (kk) {
        const cnt = counters.get(kk)!;
        cnt.a--;
        cnt.i++;
      }
    }
  }
  const fmt = (l: { k: string; a: number; i: number }[]): string => l.map((x) => `${x.k} ${x.a}/${x.i}`).join(', ');
  const kernelCounters = fmt(k.final.map((d: KDest) => ({ k: key(d.ip), a: d.active, i: d.inactive })));
  const modelCounters = fmt(k.final.map((d: KDest) => ({ k: key(d.ip), a: counters.get(key(d.ip))?.a ?? 0, i: counters.get(key(d.ip))?.i ?? 0 })));
  return { compared, diffs, counters: kernelCounters === modelCounters ? undefined : `${name}: kernel active/inactive ${kernelCounters}; replay ${modelCounters}` };
}

if (process.argv[1]?.endsWith('sched-replay.js') && process.argv[2]) {
  const kernel = JSON.parse(readFileSync(process.argv[2], 'utf8')) as KCase[];
  for (const k of kernel) {
    const r = replay(k.name, k);
    console.log(`${k.name}: ${r.compared} compared, ${r.diffs.length} differ${r.counters ? '; ' + r.counters : ''}`);
    for (const d of r.diffs.slice(0, 3)) console.log('  ' + d);
  }
}
