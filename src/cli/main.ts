#!/usr/bin/env node
// The `kproxy` command: one file per subcommand in this folder, each exporting register().
import { Command, CommanderError } from 'commander';
import { register as render } from './render.js';
import { register as trace } from './trace.js';
import { register as run } from './run.js';
import { register as dns } from './dns.js';
import { register as resolve } from './resolve.js';
import { register as doctor } from './doctor.js';
import { register as lab } from './lab.js';
import { register as demo } from './demo.js';
import { pflagBooleans } from './pflag.js';

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

for (const reg of [render, trace, run, dns, resolve, doctor, lab, demo]) reg(program);

try {
  await program.parseAsync(pflagBooleans(program, process.argv));
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  process.stderr.write(`kproxy: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
