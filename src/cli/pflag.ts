// kube-proxy's flags are pflag flags: a boolean flag never takes the next
// word as its value (`--masquerade-all manifests.yaml` is the flag, then a
// positional), and `--flag=true|false` sets it explicitly. Commander's
// optional-value options (`[bool]`) would swallow the next word, and its plain
// switches refuse `=value`, so argv is rewritten to commander's forms before
// parsing: bare `[bool]` flags get `=true`; plain switches given `=true` lose
// it, given `=false` are dropped (they default to off).
import type { Command, Option } from 'commander';

function isBoolValued(o: Option): boolean {
  return o.optional && o.flags.includes('[bool]');
}

function isSwitch(o: Option): boolean {
  return !o.required && !o.optional && !o.negate;
}

function commandFor(program: Command, args: string[]): Command {
  let cmd = program;
  for (const a of args) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    cmd = sub;
  }
  return cmd;
}

/** argv (with node and script) rewritten so boolean flags behave as pflag's do. */
export function pflagBooleans(program: Command, argv: string[]): string[] {
  const head = argv.slice(0, 2);
  const args = argv.slice(2);
  const cmd = commandFor(program, args);
  const opts = [...cmd.options, ...program.options];
  const boolValued = new Set(opts.filter(isBoolValued).map((o) => o.long));
  const switches = new Set(opts.filter(isSwitch).map((o) => o.long));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const eq = a.indexOf('=');
    const name = eq < 0 ? a : a.slice(0, eq);
    if (eq < 0 && boolValued.has(a)) out.push(`${a}=true`);
    else if (eq > 0 && switches.has(name)) {
      const v = a.slice(eq + 1);
      if (v === 'true') out.push(name);
      else if (v !== 'false') throw new Error(`${name} takes true or false, not ${JSON.stringify(v)}`);
    } else out.push(a);
  }
  return [...head, ...out];
}
