#!/usr/bin/env node
// The `kproxy` command: one file per subcommand in this folder, each exporting
// register(), listed in commands.ts.
import { Command, CommanderError } from './commander.js';
import { pflagBooleans } from './pflag.js';
import { COMMANDS } from './commands.js';

// `kproxy … | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const program = new Command('kproxy')
  .description('Kubernetes service networking: kube-proxy-identical rules, a netfilter tracer, cluster DNS and a namespace lab')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

// Only the command being run (or asked about: `kproxy help X`, `kproxy X --help`) is
// loaded; the others are listed by name and description for the top-level help.
const words = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const wanted = words[0] === 'help' ? words[1] : words[0];
for (const [name, c] of Object.entries(COMMANDS)) {
  if (name === wanted) (await c.load()).register(program);
  else program.command(name).description(c.description);
}

try {
  await program.parseAsync(pflagBooleans(program, process.argv));
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  process.stderr.write(`kproxy: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
