// ProxySettings (defaults ← --config ← flags) → the renderer's options. One
// place, so `render`, `run` and `doctor` render the same rules for the same flags.
import type { ProxySettings } from '../../proxy/config.js';
import type { RenderOptions } from './render.js';

export function renderOptionsFromSettings(s: ProxySettings, extra: Partial<RenderOptions> = {}): RenderOptions {
  return {
    nodeName: s.hostname,
    nodeIPs: s.nodeIPs,
    clusterCIDRs: s.clusterCIDRs,
    detectLocalMode: s.detectLocalMode,
    ...(s.bridgeInterface ? { bridgeInterface: s.bridgeInterface } : {}),
    ...(s.interfaceNamePrefix ? { interfaceNamePrefix: s.interfaceNamePrefix } : {}),
    masqueradeAll: s.masqueradeAll,
    masqueradeBit: s.masqueradeBit,
    nodePortAddresses: s.nodePortAddresses,
    localhostNodePorts: s.localhostNodePorts,
    conntrackTCPBeLiberal: s.conntrackTCPBeLiberal,
    ...extra,
  };
}
