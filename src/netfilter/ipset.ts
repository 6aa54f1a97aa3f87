// `ipset save` output → sets the `-m set --match-set` match can test.
// Supported types: hash:ip, hash:net, hash:ip,port, hash:net,port, hash:ip,port,ip,
// hash:ip,port,net, hash:ip,mark? (no), bitmap:ip, bitmap:port, list:set.
import { cidrHas, parseCidr, type Addr, type Cidr } from './addr.js';
import { RulesetParseError } from './ruleset.js';

type Dim = 'ip' | 'net' | 'port';

interface PortPart {
  proto: string;
  from: number;
  to: number;
}

type Part = { kind: 'addr'; cidr: Cidr } | { kind: 'port'; port: PortPart };

export interface IpSet {
  name: string;
  type: string;
  dims: Dim[];
  entries: Part[][];
  /** list:set members. */
  members: string[];
  line: number;
}

export interface IpsetStore {
  sets: Map<string, IpSet>;
}

const DIMS: Record<string, Dim> = { ip: 'ip', net: 'net', port: 'port' };

export function parseIpsetSave(text: string, source = 'ipset'): IpsetStore {
  const sets = new Map<string, IpSet>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line || line.startsWith('#')) continue;
    const w = line.split(/\s+/);
    const err = (m: string): never => {
      throw new RulesetParseError(i + 1, m, source);
    };
    if (w[0] === 'create' || w[0] === '-N' || w[0] === '-exist') {
      const [, name, type] = w;
      if (!name || !type) err('create needs a name and a type');
      const [kind, dimsText] = type!.split(':');
      let dims: Dim[] = [];
      if (kind === 'list') dims = [];
      else dims = (dimsText ?? '').split(',').map((d) => DIMS[d] ?? err(`unsupported ipset type ${type}`));
      sets.set(name!, { name: name!, type: type!, dims, entries: [], members: [], line: i + 1 });
    } else if (w[0] === 'add' || w[0] === '-A') {
      const set = sets.get(w[1] ?? '') ?? err(`add to unknown set "${w[1]}"`);
      const elem = w[2] ?? err('add needs an element');
      if (set.type.startsWith('list:')) {
        set.members.push(elem);
        continue;
      }
      if (w.includes('nomatch')) continue;
      const parts = elem.split(',');
      if (parts.length !== set.dims.length) err(`element "${elem}" does not fit ${set.type}`);
      set.entries.push(
        parts.map((p, k): Part => {
          if (set.dims[k] === 'port') {
            const m = /^(?:(\w+):)?(\d+)(?:-(\d+))?$/.exec(p) ?? err(`bad port "${p}"`);
            const from = Number(m[2]);
            // bitmap:port stores bare ports: any protocol with ports matches ('*').
            const proto = m[1] ?? (set.type.startsWith('bitmap:') ? '*' : 'tcp');
            return { kind: 'port', port: { proto, from, to: m[3] ? Number(m[3]) : from } };
          }
          if (p.includes('-') && !p.includes('/')) err(`address ranges in sets are not supported: "${p}"`);
          return { kind: 'addr', cidr: parseCidr(p) ?? err(`bad address "${p}"`) };
        }),
      );
    } else err(`unknown ipset command "${w[0]}"`);
  }
  return { sets };
}

export interface SetQuery {
  src: Addr;
  dst: Addr;
  sport?: number;
  dport?: number;
  proto: string;
}

/** Whether the packet is in the set; undefined when the set is unknown. */
export function setHas(store: IpsetStore, name: string, flags: ('src' | 'dst')[], q: SetQuery, depth = 0): boolean | undefined {
  const set = store.sets.get(name);
  if (!set || depth > 8) return undefined;
  if (set.type.startsWith('list:')) {
    for (const m of set.members) if (setHas(store, m, flags, q, depth + 1)) return true;
    return false;
  }
  return set.entries.some((e) =>
    e.every((part, k) => {
      const side = flags[k] ?? flags[flags.length - 1] ?? 'src';
      if (part.kind === 'addr') return cidrHas(part.cidr, side === 'src' ? q.src : q.dst);
      const port = side === 'src' ? q.sport : q.dport;
      return port !== undefined && (part.port.proto === q.proto || part.port.proto === '*') && port >= part.port.from && port <= part.port.to;
    }),
  );
}
