// The IPVS schedulers, shared by userspace mode (choosing an endpoint for each
// new connection) and ipvs mode (modelling what the kernel will choose).
import { createDH, createSH } from './hashing.js';
import { createLC, createNQ, createSED, createWLC } from './leastconn.js';
import { createMH } from './mh.js';
import { createRR } from './rr.js';
import { createWRR } from './wrr.js';
import {
  schedulerFlagNames,
  schedulerNames,
  type Scheduler,
  type SchedulerFlag,
  type SchedulerFlags,
  type SchedulerName,
} from './types.js';

export * from './types.js';
export { connOverhead } from './leastconn.js';
export { buildHashTable, HASH_TAB_SIZE } from './hashing.js';
export { buildMaglevTable, MH_TAB_SIZE } from './mh.js';

export function isSchedulerName(name: string): name is SchedulerName {
  return (schedulerNames as readonly string[]).includes(name);
}

/** Accepts ipvsadm's flag names or a comma-separated string of them ("sh-fallback,sh-port"). */
export function parseSchedulerFlags(flags: string | readonly string[] | undefined): SchedulerFlags {
  const list = typeof flags === 'string' ? flags.split(',') : flags ?? [];
  const out: SchedulerFlags = { fallback: false, port: false };
  for (const raw of list) {
    const f = raw.trim();
    if (!f) continue;
    if (!(schedulerFlagNames as readonly string[]).includes(f)) {
      throw new Error(`unknown scheduler flag ${JSON.stringify(f)}; valid flags: ${schedulerFlagNames.join(', ')}`);
    }
    switch (f as SchedulerFlag) {
      case 'sh-fallback':
      case 'mh-fallback':
      case 'flag-1':
        out.fallback = true;
        break;
      case 'sh-port':
      case 'mh-port':
      case 'flag-2':
        out.port = true;
        break;
      case 'flag-3':
        break;
    }
  }
  return out;
}

/** A fresh scheduler (one per virtual service: rr/wrr/sh/mh keep state). */
export function createScheduler(name: string, flags?: string | readonly string[] | SchedulerFlags): Scheduler {
  const f = flags && typeof flags === 'object' && !Array.isArray(flags) ? (flags as SchedulerFlags) : parseSchedulerFlags(flags as string | string[] | undefined);
  switch (name) {
    case 'rr':
      return createRR();
    case 'wrr':
      return createWRR();
    case 'lc':
      return createLC();
    case 'wlc':
      return createWLC();
    case 'sed':
      return createSED();
    case 'nq':
      return createNQ();
    case 'dh':
      return createDH();
    case 'sh':
      return createSH(f);
    case 'mh':
      return createMH(f);
    default:
      throw new Error(`unknown IPVS scheduler ${JSON.stringify(name)}; valid schedulers: ${schedulerNames.join(', ')}`);
  }
}
