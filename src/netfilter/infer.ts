// Node addresses, when the user does not give them: the dump names them where
// kube-proxy limits NodePorts to node IPs (`-d IP -j KUBE-NODEPORTS`), and
// where SNAT rewrites to a fixed source (that address must be the node's).
import { parseAddr, type Addr } from './addr.js';
import type { Ruleset } from './ruleset.js';

export interface InferredLocal {
  addr: Addr;
  /** "line 42: -A KUBE-SERVICES … -d 192.168.0.2/32 … -j KUBE-NODEPORTS" */
  evidence: string;
}

export function inferLocalAddresses(rs: Ruleset): InferredLocal[] {
  const out = new Map<string, InferredLocal>();
  const add = (a: Addr | undefined, line: number, why: string): void => {
    if (a && !out.has(a.text)) out.set(a.text, { addr: a, evidence: `line ${line} (${why})` });
  };
  for (const t of rs.tables.values())
    for (const c of t.chains.values()) {
      // A chain of a dump not read yet says whether it holds such rules: the others stay unread.
      if (c.mayNameNodeAddresses === false) continue;
      for (const r of c.rules) {
        const tg = r.target;
        if (!tg) continue;
        if (tg.kind === 'jump' && tg.chain === 'KUBE-NODEPORTS') {
          for (const m of r.matches)
            if (m.kind === 'addr' && m.dir === 'dst' && !m.neg && m.cidr.prefix === (m.cidr.family === 4 ? 32 : 128))
              add(parseAddr(m.cidr.text.split('/')[0]!) ?? undefined, r.line, 'NodePorts limited to this node address');
        }
        if (tg.kind === 'SNAT') for (const to of tg.to) add(to.from, r.line, 'SNAT source');
      }
    }
  return [...out.values()];
}
