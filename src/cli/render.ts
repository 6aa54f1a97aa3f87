// PLACEHOLDER: replaced by the work on `kproxy render`.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('render')
    .description('(not built yet)')
    .action(() => {
      throw new Error('kproxy render is not built yet');
    });
}
