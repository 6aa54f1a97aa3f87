// A test-only packet tracer with exactly the semantics of upstream
// proxier_test.go's iptablesTracer/tracePacket, so upstream's packetFlowTest
// tables can be run against our payloads. (The real tracer is `kproxy trace`.)
import assert from 'node:assert/strict';
import { cidrContains, splitHostPort } from '../../src/util/ip.js';

interface Rule {
  raw: string;
  fields: Map<string, { value: string; negated: boolean }>;
}

type Tables = Map<string, Map<string, Rule[]>>;

const VALUE_FLAGS = new Set([
  '-p', '-s', '-d', '--src-type', '--dst-type', '--sport', '--dport', '--match-set', '-j', '--probability',
  '--to-destination', '--mark', '--ctstate', '--name', '--seconds', '--mode', '--comment', '-m', '-i', '-o',
]);
const BOOL_FLAGS = new Set(['--rcheck', '--set', '--reap', '--random-fully']);

function words(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) out.push(m[1] ?? m[2]!);
  return out;
}

function parseRule(line: string): { chain: string; rule: Rule } {
  const w = words(line);
  const chain = w[1]!;
  const fields = new Map<string, { value: string; negated: boolean }>();
  let neg = false;
  for (let i = 2; i < w.length; i++) {
    const t = w[i]!;
    if (t === '!') {
      neg = true;
      continue;
    }
    if (t === '-m') {
      i++; // module name
      continue;
    }
    if (VALUE_FLAGS.has(t)) {
      fields.set(t, { value: w[i + 1] ?? '', negated: neg });
      i++;
    } else if (BOOL_FLAGS.has(t)) {
      fields.set(t, { value: '', negated: neg });
    } else if (t.startsWith('-') && w[i + 1] !== undefined && !w[i + 1]!.startsWith('-')) {
      i++; // unknown option with a value (e.g. --nfacct-name x)
    }
    neg = false;
  }
  return { chain, rule: { raw: line, fields } };
}

export function parseTables(text: string): Tables {
  const tables: Tables = new Map();
  let cur: Map<string, Rule[]> | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      cur = new Map();
      tables.set(line.slice(1), cur);
    } else if (line.startsWith(':') && cur) {
      const name = line.slice(1).split(' ')[0]!;
      if (!cur.has(name)) cur.set(name, []);
    } else if (line.startsWith('-A ') && cur) {
      const { chain, rule } = parseRule(line);
      if (!cur.has(chain)) cur.set(chain, []);
      cur.get(chain)!.push(rule);
    }
  }
  return tables;
}

export interface PacketFlowTest {
  name: string;
  sourceIP: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  destIP: string;
  destPort: number;
  output: string;
  masq?: boolean;
}

class Tracer {
  outputs: string[] = [];
  masq = false;
  constructor(
    private tables: Tables,
    private localIPs: Set<string>,
  ) {}

  private addrMatch(spec: { value: string; negated: boolean } | undefined, ip: string): boolean {
    if (!spec) return true;
    const hit = spec.value.includes('/') ? cidrContains(spec.value, ip) : spec.value === ip;
    return hit !== spec.negated;
  }

  private typeMatch(spec: { value: string; negated: boolean } | undefined, ip: string): boolean {
    if (!spec) return true;
    const t = this.localIPs.has(ip) ? 'LOCAL' : 'not-matched';
    return (t === spec.value) !== spec.negated;
  }

  private matches(r: Rule, src: string, proto: string, dst: string, port: number): boolean {
    const f = r.fields;
    if (f.has('--rcheck') || f.has('--mark') || f.has('--ctstate')) return false;
    if (!this.addrMatch(f.get('-s'), src)) return false;
    if (!this.addrMatch(f.get('-d'), dst)) return false;
    if (!this.typeMatch(f.get('--src-type'), src)) return false;
    if (!this.typeMatch(f.get('--dst-type'), dst)) return false;
    const p = f.get('-p');
    if (p && (p.value === proto) === p.negated) return false;
    const dp = f.get('--dport');
    if (dp && (dp.value === String(port)) === dp.negated) return false;
    return true;
  }

  /** Returns true when the chain terminated the packet. */
  runChain(table: string, chain: string, src: string, proto: string, dst: string, port: number): boolean {
    const rules = this.tables.get(table)?.get(chain) ?? [];
    for (const r of rules) {
      if (!this.matches(r, src, proto, dst, port)) continue;
      const j = r.fields.get('-j')?.value;
      if (!j) continue;
      if (j === 'KUBE-MARK-MASQ') {
        this.masq = true;
        continue;
      }
      if (j === 'ACCEPT' || j === 'REJECT' || j === 'DROP') {
        this.outputs.push(j);
        return true;
      }
      if (j === 'DNAT') {
        this.outputs.push(r.fields.get('--to-destination')!.value);
        return true;
      }
      const terminated = this.runChain(table, j, src, proto, dst, port);
      if (terminated && !r.fields.has('--probability')) return true;
    }
    return false;
  }
}

/** tracePacket: nat PREROUTING (here: its only kube-proxy jump, KUBE-SERVICES), then the filter chains. */
export function tracePacket(
  text: string,
  localIPs: string[],
  t: Omit<PacketFlowTest, 'name' | 'output' | 'masq'>,
): { output: string; masq: boolean } {
  const tables = parseTables(text);
  const tr = new Tracer(tables, new Set(localIPs));
  const proto = (t.protocol ?? 'TCP').toLowerCase();
  let dst = t.destIP;
  tr.runChain('nat', 'KUBE-SERVICES', t.sourceIP, proto, dst, t.destPort);
  if (tr.outputs.length > 0) dst = splitHostPort(tr.outputs[0]!).host;
  for (const c of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL']) {
    tr.runChain('filter', c, t.sourceIP, proto, dst, t.destPort);
  }
  return { output: tr.outputs.join(', '), masq: tr.masq };
}

export const tracerLocalIPs = ['192.168.0.2', '192.168.1.2', '192.168.99.11', '2001:db8::1', '2001:db8:1::2', '127.0.0.1', '::1'];

export function runPacketFlowTests(text: string, tests: PacketFlowTest[], localIPs = tracerLocalIPs): void {
  for (const t of tests) {
    const r = tracePacket(text, localIPs, t);
    assert.equal(r.output, t.output, `${t.name}: output`);
    assert.equal(r.masq, t.masq ?? false, `${t.name}: masq`);
  }
}
