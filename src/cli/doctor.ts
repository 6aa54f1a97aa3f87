// PLACEHOLDER: replaced by the work on `kproxy doctor`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('doctor')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy doctor is not built yet');
    });
}
