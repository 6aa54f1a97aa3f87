// The routing decision the simulator needs: is the (possibly DNAT'd)
// destination a local address, and if not, which interface does it leave by.
// Routes come from `--route CIDR=IFACE[,via=IP][,src=IP]`; longest prefix wins.
import { cidrHas, parseAddr, parseCidr, type Addr } from './addr.js';
import type { LocalAddr, Route, Env } from './state.js';

export function findRoute(env: Env, dst: Addr): Route | undefined {
  let best: Route | undefined;
  for (const r of env.routes) if (cidrHas(r.cidr, dst) && (!best || r.cidr.prefix > best.cidr.prefix)) best = r;
  return best;
}

/** "CIDR=IFACE[,via=IP|,IP][,src=IP]" */
export function parseRouteSpec(spec: string): Route {
  const eq = spec.indexOf('=');
  if (eq < 0) throw new Error(`--route "${spec}": expected CIDR=IFACE[,via]`);
  const cidr = parseCidr(spec.slice(0, eq));
  if (!cidr) throw new Error(`--route "${spec}": bad CIDR`);
  const [iface, ...rest] = spec.slice(eq + 1).split(',');
  if (!iface) throw new Error(`--route "${spec}": missing interface`);
  const r: Route = { cidr, iface };
  for (const part of rest) {
    const [k, v] = part.includes('=') ? part.split('=') : ['via', part];
    const a = parseAddr(v ?? '');
    if (!a) throw new Error(`--route "${spec}": bad address "${v}"`);
    if (k === 'via') r.via = a;
    else if (k === 'src') r.src = a;
    else throw new Error(`--route "${spec}": unknown key "${k}" (via, src)`);
  }
  return r;
}

/** "IP[@IFACE]" */
export function parseLocalSpec(spec: string): LocalAddr {
  const [ip, iface] = spec.split('@');
  const addr = parseAddr((ip ?? '').replace(/\/\d+$/, ''));
  if (!addr) throw new Error(`--local-ip "${spec}": not an IP address`);
  return iface ? { addr, iface } : { addr };
}
