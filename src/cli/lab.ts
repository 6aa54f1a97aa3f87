// PLACEHOLDER: replaced by the work on `kproxy lab`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('lab')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy lab is not built yet');
    });
}
