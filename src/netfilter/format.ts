// Presenting a TraceResult: the annotated walk-through (text), the stable JSON
// object, and a mermaid flowchart of the chains the packet visits.
import type { Outcome, ReplyOutcome, TraceResult } from './simulate.js';
import type { Step } from './state.js';

function pct(p: number): string {
  const v = p * 100;
  return `${v >= 10 ? v.toFixed(2) : v.toPrecision(3)}%`;
}

function stepLine(s: Step): string {
  if (s.table) {
    const where = `${s.table}/${s.chain}${s.line !== null ? `:${s.line}` : ''}`;
    if (s.kind === 'policy') return `  ${where}  ${s.rule}`;
    if (s.kind === 'not-taken') return `  ${where}  ${s.rule}  ⇒ ${s.effect}`;
    if (s.kind === 'nat') return `  ${s.rule}`;
    return `  ${where}  ${s.rule}${s.effect ? `  ⇒ ${s.effect}` : ''}`;
  }
  return `  ${s.kind === 'note' ? 'note: ' : ''}${s.rule}`;
}

function sameStep(a: Step, b: Step): boolean {
  return a === b || (a.kind === b.kind && a.line === b.line && a.rule === b.rule && a.effect === b.effect && a.table === b.table && a.chain === b.chain);
}

function commonPrefix(paths: Step[][]): number {
  if (paths.length < 2) return 0;
  let n = Math.min(...paths.map((p) => p.length));
  for (let i = 0; i < n; i++) {
    const s = paths[0]![i]!;
    if (!paths.every((p) => sameStep(p[i]!, s))) return i;
  }
  return n;
}

function summary(o: Outcome): string {
  const parts: string[] = [o.verdict];
  if (o.verdict === 'ACCEPT') {
    parts.push(o.delivery === 'local' ? `delivered locally to ${o.destination}` : `forwarded to ${o.destination}${o.outInterface ? ` via ${o.outInterface}` : ''}`);
  } else if (o.verdict === 'REJECT') parts.push(`(${o.rejectWith ?? 'icmp-port-unreachable'}) at ${o.destination}`);
  else if (o.verdict === 'LOOP') parts.push('(the rules loop: the trace stopped)');
  else parts.push(`at ${o.destination}`);
  parts[parts.length - 1] += o.dnat ? ' (DNAT)' : ' (no DNAT)';
  if (o.verdict === 'ACCEPT') parts.push(o.masquerade ? `masqueraded: source ${o.source}` : o.snat ? `SNAT: source ${o.source}` : `source ${o.source} kept`);
  parts.push(`mark ${o.mark}`);
  if (o.ctmark !== '0x0') parts.push(`ctmark ${o.ctmark}`);
  return parts.join(', ');
}

function replyText(r: ReplyOutcome[], out: string[]): void {
  for (const x of r) {
    out.push('  reply:');
    for (const s of x.path) out.push('  ' + stepLine(s));
    out.push(`    ⇒ reply ${x.verdict}${x.verdict === 'ACCEPT' ? `: the client gets ${x.source} → ${x.destination}` : ''}`);
    for (const u of x.uncertainties) out.push(`    UNCERTAIN: ${u.line !== null ? `line ${u.line}: ` : ''}${u.reason}`);
  }
}

export function formatText(r: TraceResult): string {
  const out: string[] = [];
  const p = r.packet;
  out.push(`Packet: ${p.proto} ${p.src} → ${p.dst}, ${p.from === 'local' ? 'from a local process' : `arriving on ${p.inInterface}${p.from === 'external' ? ' (from outside)' : ''}`}`);
  const la = r.localAddresses;
  if (la.source === 'given') out.push(`Node addresses (given): ${la.addresses.join(', ')}`);
  else if (la.source === 'inferred') {
    out.push(`Node addresses (inferred from the dump; give --local-ip to be sure): ${la.addresses.join(', ')}`);
    for (const e of la.evidence) out.push(`  ${e}`);
  } else out.push('Node addresses: none given and none found in the dump (only loopback is known to be local; give --local-ip)');
  for (const n of r.notes) out.push(`Note: ${n}`);
  const paths = r.outcomes.map((o) => o.path);
  const k = commonPrefix(paths);
  if (k > 0) {
    out.push('');
    out.push(r.outcomes.length > 1 ? 'Every outcome starts with:' : 'Path:');
    for (const s of paths[0]!.slice(0, k)) out.push(stepLine(s));
  }
  r.outcomes.forEach((o, i) => {
    out.push('');
    out.push(`Outcome ${i + 1} of ${r.outcomes.length}: probability ${pct(o.probability)} (${o.probability})${o.uncertain ? ' — UNCERTAIN' : ''}`);
    for (const s of o.path.slice(k)) out.push(stepLine(s));
    out.push(`  ⇒ ${summary(o)}`);
    if (o.conntrack) out.push(`  conntrack: ${o.conntrack}`);
    for (const u of o.uncertainties) out.push(`  UNCERTAIN: ${u.line !== null ? `line ${u.line} (${u.table}/${u.chain}): ` : ''}${u.reason}`);
    for (const n of o.notes) out.push(`  note: ${n}`);
    if (o.reply) replyText(o.reply, out);
  });
  out.push('');
  out.push(`Summary (${r.outcomes.length} outcome${r.outcomes.length === 1 ? '' : 's'}):`);
  for (const o of r.outcomes)
    out.push(`  ${pct(o.probability).padStart(7)}  ${o.verdict.padEnd(6)}  ${o.destination.padEnd(22)} ${o.masquerade ? `masquerade → ${o.source}` : o.snat ? `SNAT → ${o.source}` : ''}${o.uncertain ? '  (uncertain)' : ''}`);
  if (r.outcomes.some((o) => o.uncertain)) out.push('  Uncertain outcomes depend on an assumption (shown above); their probabilities are given that assumption.');
  return out.join('\n') + '\n';
}

/** The documented JSON object (docs/trace.md). */
export function formatJson(r: TraceResult): string {
  return JSON.stringify({ version: 1, ...r }, null, 2) + '\n';
}

function mmId(s: string): string {
  return s.replace(/[^A-Za-z0-9_]/g, '_');
}

function mmLabel(s: string): string {
  return s.replace(/"/g, "'");
}

export function formatMermaid(r: TraceResult): string {
  const lines: string[] = ['flowchart TD'];
  const nodes = new Map<string, string>();
  const edges = new Map<string, Set<string>>();
  const node = (id: string, label: string): string => {
    if (!nodes.has(id)) nodes.set(id, label);
    return id;
  };
  const edge = (a: string, b: string, label = ''): void => {
    const key = `${a}>${b}`;
    if (!edges.has(key)) edges.set(key, new Set());
    if (label) edges.get(key)!.add(label);
  };
  const start = node('pkt', `${r.packet.proto} ${r.packet.src} → ${r.packet.dst}`);
  r.outcomes.forEach((o, i) => {
    // The packet enters each hook's base chain from wherever it last was (the start, or its last rewrite).
    let anchor = start;
    let hook = '';
    for (const s of o.path) {
      if (!s.table || (s.kind !== 'rule' && s.kind !== 'policy')) continue;
      const id = node(mmId(`${s.table}_${s.chain}`), `${s.table} ${s.chain}`);
      if (s.hook && s.hook !== hook && s.chain === s.hook) {
        edge(anchor, id);
        hook = s.hook;
      }
      const eff = s.effect ?? '';
      if (/^(jump|goto) /.test(eff)) {
        const target = eff.split(' ')[1]!;
        const pm = /\(p=([\d.e-]+)\)/.exec(eff);
        edge(id, node(mmId(`${s.table}_${target}`), `${s.table} ${target}`), pm ? `p=${pm[1]}` : '');
      } else if (/^(DNAT|MASQUERADE|SNAT|REDIRECT|MARK|CONNMARK|DROP|REJECT|ACCEPT|policy)/.test(eff) || s.kind === 'policy') {
        const label = s.kind === 'policy' ? `${s.chain} policy ${eff}` : eff.replace(/ \(.*\)$/, '');
        const aid = node(mmId(`${s.table}_${s.chain}_${s.line ?? 'policy'}_${label}`), label);
        edge(id, aid);
        if (/^(DNAT|MASQUERADE|SNAT|REDIRECT)/.test(eff)) anchor = aid;
        else if (s.kind === 'policy' || /^(DROP|REJECT|ACCEPT)/.test(eff)) anchor = aid;
      }
    }
    const oid = node(`out${i + 1}`, `${pct(o.probability)} ${o.verdict} ${o.destination}${o.masquerade ? ` masquerade → ${o.source}` : ''}${o.uncertain ? ' (uncertain)' : ''}`);
    edge(anchor, oid);
  });
  for (const [id, label] of nodes) lines.push(`    ${id}["${mmLabel(label)}"]`);
  for (const [key, labels] of edges) {
    const [a, b] = key.split('>');
    const l = [...labels].join(', ');
    lines.push(`    ${a} -->${l ? `|${mmLabel(l)}|` : ''} ${b}`);
  }
  return lines.join('\n') + '\n';
}
