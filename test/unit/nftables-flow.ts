// The differential test's view of kproxy's nftables tracer (src/netfilter/nft-trace.ts):
// the same question and answer shape as iptables-flow.ts's tracePacket — the
// endpoints a new connection can be DNATed to, or REJECT / DROP / ACCEPT, and
// whether it is masqueraded. Not a test file itself.
import { parseNft, traceNft as trace } from '../../src/netfilter/nft-trace.js';

export interface NftPacket {
  sourceIP: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  destIP: string;
  destPort: number;
}

export function traceNft(text: string, localIPs: string[], t: NftPacket): { output: string; masq: boolean } {
  const r = trace(parseNft(text), {
    proto: (t.protocol ?? 'TCP').toLowerCase() as 'tcp' | 'udp' | 'sctp',
    src: t.sourceIP,
    dst: t.destIP,
    dport: t.destPort,
    localIps: localIPs,
  });
  const outputs = r.outcomes.map((o) => (o.dnat ? o.destination : o.verdict === 'ACCEPT' ? '' : o.verdict)).filter(Boolean);
  // iptables' tracer lists a DNAT's endpoints, then any filter verdict once.
  const verdicts = r.outcomes.filter((o) => o.dnat && o.verdict !== 'ACCEPT').map((o) => o.verdict);
  const hc = r.path.some((p) => p.includes('@hc-nodeports')) ? ['ACCEPT'] : [];
  return { output: [...new Set([...outputs, ...verdicts, ...hc])].join(', '), masq: r.outcomes.some((o) => o.masquerade) };
}
