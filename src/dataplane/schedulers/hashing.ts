// ip_vs_sh.c and ip_vs_dh.c: a 256-bucket table filled round-robin from the
// destination list, indexed by a multiplicative hash of the source (sh) or
// destination (dh) address. A bucket whose server is unusable drops the
// connection, unless sh's fallback flag walks the table for another.
import { addrFold, dhHashkey, shHashkey } from './hash.js';
import { isUsable, listSignature, type SchedServer, type Scheduler, type SchedulerFlags } from './types.js';

export const HASH_TAB_SIZE = 256;

/**
 * ip_vs_sh_reassign(): each destination takes `weight` consecutive buckets (at
 * least one, so quiesced servers keep a bucket and their clients are dropped,
 * not moved). With `weighted` false it is ip_vs_dh_reassign(): one bucket each.
 */
export function buildHashTable(servers: readonly SchedServer[], weighted: boolean): (SchedServer | undefined)[] {
  const table: (SchedServer | undefined)[] = new Array(HASH_TAB_SIZE).fill(undefined);
  if (servers.length === 0) return table;
  let p = 0;
  let count = 0;
  for (let i = 0; i < HASH_TAB_SIZE; i++) {
    const s = servers[p] as SchedServer;
    table[i] = s;
    if (!weighted || ++count >= s.weight) {
      p = (p + 1) % servers.length;
      count = 0;
    }
  }
  return table;
}

export function createSH(flags: SchedulerFlags): Scheduler {
  let sig: string | undefined;
  let table: (SchedServer | undefined)[] = [];
  let byKey = new Map<string, SchedServer>();
  const self: Scheduler = {
    name: 'sh',
    update(servers) {
      sig = listSignature(servers);
      table = buildHashTable(servers, true);
    },
    schedule(servers, client) {
      if (sig !== listSignature(servers)) self.update(servers);
      // Read live counters/flags through the caller's objects, not the ones the table was built from.
      byKey = new Map(servers.map((s) => [s.key, s]));
      const live = (s: SchedServer | undefined): SchedServer | undefined => (s ? byKey.get(s.key) ?? s : undefined);
      const addr = addrFold(client.srcIP);
      const port = flags.port ? client.srcPort ?? 0 : 0;
      const ihash = shHashkey(addr, port, 0);
      const first = live(table[ihash]);
      if (!first) return undefined;
      if (isUsable(first)) return first;
      if (!flags.fallback) return undefined;
      for (let offset = 0; offset < HASH_TAB_SIZE; offset++) {
        const roffset = (offset + ihash) % HASH_TAB_SIZE;
        const s = live(table[shHashkey(addr, port, roffset)]);
        if (!s) break;
        if (isUsable(s)) return s;
      }
      return undefined;
    },
  };
  return self;
}

export function createDH(): Scheduler {
  let sig: string | undefined;
  let table: (SchedServer | undefined)[] = [];
  const self: Scheduler = {
    name: 'dh',
    update(servers) {
      sig = listSignature(servers);
      table = buildHashTable(servers, false);
    },
    schedule(servers, client) {
      if (sig !== listSignature(servers)) self.update(servers);
      const chosen = table[dhHashkey(addrFold(client.dstIP ?? client.srcIP))];
      if (!chosen) return undefined;
      const live = servers.find((s) => s.key === chosen.key) ?? chosen;
      // The kernel's dh has no fallback flag: an unusable bucket drops.
      return isUsable(live) ? live : undefined;
    },
  };
  return self;
}
