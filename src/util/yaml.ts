// The yaml package, loaded on first use: it is 70-odd CommonJS files (about 30 ms to load
// here), and most runs never read YAML (JSON manifests, `kproxy trace`, the agent with
// JSON input). require() keeps the callers synchronous.
import { createRequire } from 'node:module';

type Yaml = typeof import('yaml');

let loaded: Yaml | undefined;

export function yaml(): Yaml {
  return (loaded ??= createRequire(import.meta.url)('yaml') as Yaml);
}
