// PLACEHOLDER: replaced by the work on `kproxy resolve`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('resolve')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy resolve is not built yet');
    });
}
