// `kproxy trace`: where a packet goes through an iptables dump, and why.
import { COMMANDS } from './commands.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { formatJson, formatMermaid, formatText } from '../netfilter/format.js';
import { loadRuleset, parseIpsetSave, trace, type TraceRequest } from '../netfilter/index.js';
import { isTableName } from '../netfilter/ruleset.js';
import type { Proto } from '../netfilter/simulate.js';
import { splitHostPort } from '../util/ip.js';
import { withIpvs } from '../netfilter/ipvs.js';

interface TraceOpts {
  rules: string;
  dst: string;
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
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${path === '-' ? 'stdin' : path}: ${(e as Error).message}`);
  }
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
    .requiredOption('--rules <file>', 'iptables-save / ip6tables-save output or an `iptables -n -v -L` listing ("-" for stdin)')
    .requiredOption('--dst <ip:port>', 'destination (IP:PORT, or IP for icmp)')
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
    .action((o: TraceOpts) => {
      if (!['text', 'json', 'mermaid'].includes(o.format)) throw new Error(`--format must be text, json or mermaid, not "${o.format}"`);
      const proto = o.proto.toLowerCase();
      if (!['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'].includes(proto)) throw new Error(`--proto must be tcp, udp, sctp or icmp, not "${o.proto}"`);
      if (o.table !== undefined && !isTableName(o.table)) throw new Error(`--table must be raw, mangle, nat, filter or security, not "${o.table}"`);
      const text = readInput(o.rules);
      const source = o.rules === '-' ? 'stdin' : o.rules;
      const rs = loadRuleset(text, { source, table: o.table as never });
      const dst = hostAndPort(o.dst, '--dst');
      const src = o.src ? hostAndPort(o.src, '--src') : undefined;
      const recent: [string, string][] = o.recent.map((r) => {
        const eq = r.indexOf('=');
        if (eq <= 0) throw new Error(`--recent "${r}": expected NAME=IP`);
        return [r.slice(0, eq), r.slice(eq + 1)];
      });
      const req: TraceRequest = {
        proto: proto as Proto,
        dst: dst.host,
        dport: dst.port,
        src: src?.host,
        sport: src?.port,
        from: o.from,
        localIps: o.localIp,
        routes: o.route,
        ipsets: o.ipset ? parseIpsetSave(readInput(o.ipset), o.ipset) : null,
        recent,
        reply: !!o.reply,
      };
      const ipvsNotes = o.ipvs ? withIpvs(req, rs, readInput(o.ipvs), o.ipvs) : undefined;
      const result = trace(rs, req);
      if (ipvsNotes) result.notes.push(...ipvsNotes());
      for (const w of rs.warnings) process.stderr.write(`kproxy trace: warning: ${source}:${w.line}: ${w.message}\n`);
      const out = o.format === 'json' ? formatJson(result) : o.format === 'mermaid' ? formatMermaid(result) : formatText(result);
      process.stdout.write(out);
    });
}
