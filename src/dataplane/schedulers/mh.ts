// ip_vs_mh.c: Maglev hashing. Each destination gets an offset and a skip from
// two keyed hashes of its address and port; the 4093-entry lookup table is
// filled by letting the destinations take turns (weight/gcd turns each, shifted
// down so the largest fits in 6 bits) claiming their next preferred free slot.
// The source address (and port with mh-port) picks a slot. A quiesced server
// (weight 0) keeps its slots — it is remembered by its last non-zero weight —
// so its clients are dropped or, with mh-fallback, moved, but nobody else's are.
import { addrFold, MH_KEY1, MH_KEY2, mhHashkey } from './hash.js';
import { isUsable, listSignature, type SchedServer, type Scheduler, type SchedulerFlags } from './types.js';

/** primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with the default index 12. */
export const MH_TAB_SIZE = 4093;
/** IP_VS_MH_TAB_BITS = CONFIG_IP_VS_MH_TAB_INDEX / 2. */
const MH_TAB_BITS = 6;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** fls(): the 1-based index of the highest set bit, 0 for 0. */
function fls(x: number): number {
  return x === 0 ? 0 : 32 - Math.clz32(x);
}

/**
 * Builds the lookup table for destinations with their last non-zero weights
 * (ip_vs_mh_permutate + ip_vs_mh_populate). Returns indexes into `servers`, -1 for empty.
 */
export function buildMaglevTable(servers: readonly SchedServer[], lastWeight: (s: SchedServer) => number): Int32Array {
  const lookup = new Int32Array(MH_TAB_SIZE).fill(-1);
  let g = 0;
  let maxW = 0;
  for (const s of servers) {
    const w = lastWeight(s);
    if (w > 0) g = g > 0 ? gcd(w, g) : w;
    if (w > maxW) maxW = w;
  }
  if (g < 1) return lookup;
  const shift = Math.max(0, fls(Math.trunc(maxW / g)) - MH_TAB_BITS);
  const setup = servers.map((s) => {
    const addr = addrFold(s.ip);
    const offset = mhHashkey(addr, s.port, MH_KEY1, 0) % MH_TAB_SIZE;
    const skip = (mhHashkey(addr, s.port, MH_KEY2, 0) % (MH_TAB_SIZE - 1)) + 1;
    const lw = lastWeight(s);
    const turns = Math.trunc(lw / g) >> shift || (lw !== 0 ? 1 : 0);
    return { perm: offset, skip, turns };
  });
  const taken = new Uint8Array(MH_TAB_SIZE);
  let n = 0;
  let dtCount = 0;
  // Each outer round gives every destination its turns; at least one has turns ≥ 1 (g ≥ 1).
  while (n < MH_TAB_SIZE) {
    for (let d = 0; d < servers.length; ) {
      const ds = setup[d]!;
      if (ds.turns < 1) {
        d++;
        continue;
      }
      let c = ds.perm;
      while (taken[c]) {
        ds.perm += ds.skip;
        if (ds.perm >= MH_TAB_SIZE) ds.perm -= MH_TAB_SIZE;
        c = ds.perm;
      }
      taken[c] = 1;
      lookup[c] = d;
      if (++n === MH_TAB_SIZE) return lookup;
      if (++dtCount >= ds.turns) {
        dtCount = 0;
        d++;
      }
    }
  }
  return lookup;
}

export function createMH(flags: SchedulerFlags): Scheduler {
  let sig: string | undefined;
  let lookup: Int32Array = new Int32Array(0);
  let built: SchedServer[] = [];
  // The kernel keeps dest->last_weight: the weight before a server was quiesced.
  const lastWeights = new Map<string, number>();
  const self: Scheduler = {
    name: 'mh',
    update(servers) {
      sig = listSignature(servers);
      const present = new Set(servers.map((s) => s.key));
      for (const k of [...lastWeights.keys()]) if (!present.has(k)) lastWeights.delete(k);
      for (const s of servers) {
        // ip_vs_ctl: last_weight follows weight on add and on any non-zero update.
        if (!lastWeights.has(s.key) || s.weight !== 0) lastWeights.set(s.key, s.weight);
      }
      built = [...servers];
      lookup = buildMaglevTable(built, (s) => lastWeights.get(s.key) ?? s.weight);
    },
    schedule(servers, client) {
      if (sig !== listSignature(servers)) self.update(servers);
      const addr = addrFold(client.srcIP);
      const port = flags.port ? client.srcPort ?? 0 : 0;
      const at = (slot: number): SchedServer | undefined => {
        const i = lookup[slot]!;
        return i >= 0 ? servers[i] ?? built[i] : undefined;
      };
      const ihash = mhHashkey(addr, port, MH_KEY1, 0) % MH_TAB_SIZE;
      const first = at(ihash);
      if (!first) return undefined;
      if (isUsable(first)) return first;
      if (!flags.fallback) return undefined;
      for (let offset = 0; offset < MH_TAB_SIZE; offset++) {
        const roffset = (offset + ihash) % MH_TAB_SIZE;
        const s = at(mhHashkey(addr, port, MH_KEY1, roffset) % MH_TAB_SIZE);
        if (!s) break;
        if (isUsable(s)) return s;
      }
      return undefined;
    },
  };
  return self;
}
