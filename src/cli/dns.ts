// PLACEHOLDER: replaced by the work on `kproxy dns`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('dns')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy dns is not built yet');
    });
}
