// PLACEHOLDER: replaced by the work on `kproxy trace`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('trace')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy trace is not built yet');
    });
}
