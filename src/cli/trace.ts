// `kproxy trace`: where a packet goes through an iptables dump, and why.
import { COMMANDS } from './commands.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { formatJson, formatMermaid, formatText } from '../netfilter/format.js';
import { loadRuleset, parseIpsetSave, trace, type TraceRequest } from '../netfilter/index.js';
import { isTableName } from '../netfilter/ruleset.js';
import type { Proto, TraceResult } from '../netfilter/simulate.js';
import { splitHostPort } from '../util/ip.js';
import { formatNftText, looksLikeNft, parseNft, traceNft, type NftTraceResult } from '../netfilter/nft-trace.js';
import { decodeText } from '../util/text.js';

interface TraceOpts {
  rules: string;
  dst?: string;
  packets?: string;
  src?: string;
  proto: string;
  from: string;
  localIp: string[];
  ipset?: string;
  recent: string[];
  route: string[];
  table?: string;
  reply?: boolean;
  format: string;
  ipvs?: string;
}

const collect = (v: string, prev: string[]): string[] => [...prev, ...v.split(',').filter(Boolean)];
const collectOne = (v: string, prev: string[]): string[] => [...prev, v];

function readInput(path: string): string {
  try {
    return decodeText(readFileSync(path === '-' ? 0 : path));
  } catch (e) {
    throw new Error(`cannot read ${path === '-' ? 'stdin' : path}: ${(e as Error).message}`);
  }
}

/** One packet of --packets (or of --dst/--src/--proto/--from/--reply). */
interface PacketSpec {
  dst: string;
  src?: string;
  proto?: string;
  from?: string;
  reply?: boolean;
}

const PACKET_KEYS = new Set(['dst', 'src', 'proto', 'from', 'reply']);

function parsePacket(line: string): PacketSpec {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new Error(`not a JSON object: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!PACKET_KEYS.has(k)) throw new Error(`unknown key "${k}" (known: ${[...PACKET_KEYS].join(', ')})`);
  if (typeof o.dst !== 'string') throw new Error('"dst" (a string, IP:PORT) is required');
  for (const k of ['src', 'proto', 'from'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') throw new Error(`"${k}" must be a string`);
  if (o.reply !== undefined && typeof o.reply !== 'boolean') throw new Error('"reply" must be true or false');
  return o as unknown as PacketSpec;
}

function hostAndPort(s: string, what: string): { host: string; port?: number } {
  const hp = splitHostPort(s);
  if (hp.port !== undefined && (!Number.isInteger(hp.port) || hp.port < 0 || hp.port > 65535)) throw new Error(`${what} "${s}": bad port`);
  return hp;
}

export function register(program: Command): void {
  program
    .command('trace')
    .description(COMMANDS.trace.description)
    .requiredOption('--rules <file>', 'iptables-save / ip6tables-save output, an `iptables -n -v -L` listing, or `nft list ruleset` output of kproxy or kube-proxy nftables tables ("-" for stdin)')
    .option('--dst <ip:port>', 'destination (IP:PORT, or IP for icmp)')
    .option('--packets <file>', 'many packets, one JSON object a line ({"dst":…,"src":…,"proto":…,"from":…,"reply":…}; "-" for stdin): one JSON result a line, the dump loaded once')
    .option('--src <ip[:port]>', 'source (default: 203.0.113.2 for arriving packets, the node address for local ones)')
    .option('--proto <proto>', 'tcp, udp, sctp or icmp', 'tcp')
    .option('--from <where>', 'external (arrives on eth0), local (a process on the node), or an interface name', 'external')
    .option('--local-ip <ip[@iface],…>', "the node's addresses (default: inferred from the dump)", collect, [])
    .option('--ipset <file>', '`ipset save` output for -m set matches')
    .option('--recent <name=ip>', 'seed a -m recent list (repeatable)', collectOne, [])
    .option('--route <cidr=iface[,via=ip][,src=ip]>', 'a route, for the outgoing interface and MASQUERADE address (repeatable)', collectOne, [])
    .option('--table <table>', 'the table a listing shows, when it does not say')
    .option('--reply', 'also trace the answer packet, un-NATed by conntrack')
    .option('--format <format>', 'text, json or mermaid', 'text')
    .option('--ipvs <file>', '`ipvsadm -Sn` (or -Ln) dump: packets delivered to a virtual service go to the real server(s) its scheduler picks')
    .action(async (o: TraceOpts) => {
      if (!['text', 'json', 'mermaid'].includes(o.format)) throw new Error(`--format must be text, json or mermaid, not "${o.format}"`);
      if (o.table !== undefined && !isTableName(o.table)) throw new Error(`--table must be raw, mangle, nat, filter or security, not "${o.table}"`);
      if (o.packets === undefined && o.dst === undefined) throw new Error('give --dst (one packet) or --packets FILE (many)');
      if (o.packets !== undefined && o.dst !== undefined) throw new Error('--dst and --packets exclude each other');
      if (o.packets === '-' && o.rules === '-') throw new Error('--rules and --packets cannot both be stdin');
      const text = readInput(o.rules);
      const source = o.rules === '-' ? 'stdin' : o.rules;
      if (looksLikeNft(text)) {
        traceNftDump(text, o);
        return;
      }
      const rs = loadRuleset(text, { source, table: o.table as never });
      for (const w of rs.warnings) process.stderr.write(`kproxy trace: warning: ${source}:${w.line}: ${w.message}\n`);
      const recent: [string, string][] = o.recent.map((r) => {
        const eq = r.indexOf('=');
        if (eq <= 0) throw new Error(`--recent "${r}": expected NAME=IP`);
        return [r.slice(0, eq), r.slice(eq + 1)];
      });
      const ipsets = o.ipset ? parseIpsetSave(readInput(o.ipset), o.ipset) : null;
      const ipvsText = o.ipvs ? readInput(o.ipvs) : undefined;
      // The IPVS model (and the schedulers) only when asked for: a dozen modules fewer to load on start.
      const withIpvs = ipvsText !== undefined ? (await import('../netfilter/ipvs.js')).withIpvs : undefined;
      const traceOne = (p: PacketSpec): TraceResult => {
        const proto = (p.proto ?? 'tcp').toLowerCase();
        if (!['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'].includes(proto)) throw new Error(`proto must be tcp, udp, sctp or icmp, not "${p.proto}"`);
        const dst = hostAndPort(p.dst, 'dst');
        const src = p.src ? hostAndPort(p.src, 'src') : undefined;
        const req: TraceRequest = {
          proto: proto as Proto,
          dst: dst.host,
          dport: dst.port,
          src: src?.host,
          sport: src?.port,
          from: p.from ?? 'external',
          localIps: o.localIp,
          routes: o.route,
          ipsets,
          recent,
          reply: !!p.reply,
        };
        const ipvsNotes = withIpvs && ipvsText !== undefined ? withIpvs(req, rs, ipvsText, o.ipvs!) : undefined;
        const result = trace(rs, req);
        if (ipvsNotes) result.notes.push(...ipvsNotes());
        return result;
      };
      if (o.packets === undefined) {
        const result = traceOne({ dst: o.dst!, src: o.src, proto: o.proto, from: o.from, reply: o.reply });
        const out = o.format === 'json' ? formatJson(result) : o.format === 'mermaid' ? formatMermaid(result) : formatText(result);
        process.stdout.write(out);
        return;
      }
      writePacketLines(o, traceOne);
    });
}

/** An nftables dump (`nft list ruleset`, or an `nft -f` text): kproxy's table or kube-proxy's, traced by nft-trace. */
function traceNftDump(text: string, o: TraceOpts): void {
  const rs = parseNft(text);
  const localIps = o.localIp.flatMap((x) => x.split(',')).map((x) => x.split('@')[0]!).filter(Boolean);
  const one = (p: PacketSpec): NftTraceResult => {
    const proto = (p.proto ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new Error(`proto must be tcp, udp or sctp for an nftables dump, not "${p.proto}"`);
    if (p.reply) throw new Error('--reply is not traced for nftables dumps');
    const dst = hostAndPort(p.dst, 'dst');
    if (dst.port === undefined) throw new Error('--dst needs a port (IP:PORT)');
    const src = p.src ? hostAndPort(p.src, 'src').host : p.from === 'local' ? (localIps[0] ?? '') : '203.0.113.2';
    if (!src) throw new Error('--from local needs --local-ip (the node address the packet leaves from)');
    const from = p.from ?? 'external';
    const iif = from === 'external' ? 'eth0' : from === 'local' ? '' : from;
    return traceNft(rs, { proto: proto as 'tcp' | 'udp' | 'sctp', src, dst: dst.host, dport: dst.port, localIps, iif });
  };
  if (o.packets === undefined) {
    const r = one({ dst: o.dst!, src: o.src, proto: o.proto, from: o.from, reply: o.reply });
    process.stdout.write(o.format === 'json' ? JSON.stringify({ version: 1, ...r }, null, 2) + '\n' : formatNftText(r));
    return;
  }
  writePacketLines(o, one);
}

/** --packets: one JSON result a line (or {"line","error"}), exit 1 when any line failed. */
function writePacketLines(o: TraceOpts, traceOne: (p: PacketSpec) => object): void {
  if (o.format !== 'json') throw new Error('--packets writes JSON lines: use --format json');
  const where = o.packets === '-' ? 'stdin' : o.packets!;
  const lines = readInput(o.packets!).split('\n');
  let failed = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line || line.startsWith('#')) continue;
    let out: object;
    try {
      out = { version: 1, line: i + 1, ...traceOne(parsePacket(line)) };
    } catch (e) {
      failed++;
      out = { version: 1, line: i + 1, error: `${where}:${i + 1}: ${(e as Error).message}` };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  }
  if (failed) {
    process.stderr.write(`kproxy trace: ${failed} packet line(s) of ${where} could not be traced (see their "error")\n`);
    process.exitCode = 1;
  }
}
