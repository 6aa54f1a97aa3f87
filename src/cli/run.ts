// PLACEHOLDER: replaced by the work on `kproxy run`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('run')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy run is not built yet');
    });
}
