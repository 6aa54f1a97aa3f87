// commander's values for the commands' modules. commander is CommonJS: require() loads it
// in about half the time an ESM import takes (the import first scans its source for the
// names it exports), and every command pays for it at start-up. Types still come from
// `import type … from 'commander'`.
import { createRequire } from 'node:module';

const commander = createRequire(import.meta.url)('commander') as typeof import('commander');

export const { Command, CommanderError, InvalidArgumentError } = commander;
