// `kproxy render [options] PATH...`: the rules kube-proxy would write on one
// node for the given manifests, printed as iptables-restore input in the
// canonical order upstream's tests compare (or upstream's write order, --raw).
import { once } from 'node:events';
import { COMMANDS } from './commands.js';
import type { Command } from 'commander';
import { loadManifests } from '../k8s/load.js';
import { formatWarning, type ClusterState, type IPFamily } from '../k8s/types.js';
import { canonicalChunks, restorePayload } from '../dataplane/iptables/payload.js';
import { renderIptables } from '../dataplane/iptables/render.js';
import { renderOptionsFromSettings } from '../dataplane/iptables/render-options.js';
import { loadProxyConfig, mergeProxySettings, type ProxyConfig, type ProxySettings } from '../proxy/config.js';
import { addProxyFlags, proxyFlagsFrom, type ProxyCliOptions } from './proxy-flags.js';

export interface RenderCliOptions extends ProxyCliOptions {
  strict?: boolean;
  raw?: boolean;
  randomFully?: string;
  nfacct?: boolean;
  ipFamily?: string;
  ipvsScheduler?: string;
}

/** What a proxy mode gets to render from. */
export interface RenderContext {
  state: ClusterState;
  settings: ProxySettings;
  config: ProxyConfig | undefined;
  options: RenderCliOptions;
}

export interface RenderOutput {
  /** The output, whole or in pieces made as they are read (a 10k-service ruleset is 33 MB). */
  text: string | Iterable<string>;
  warnings: string[];
}

export type ModeRenderer = (ctx: RenderContext) => Promise<RenderOutput>;

function familyHeader(f: IPFamily): string {
  return `# ${f}`;
}

async function renderIptablesMode(ctx: RenderContext): Promise<RenderOutput> {
  const { state, settings, options } = ctx;
  const rf = options.randomFully ?? 'auto';
  // Detection runs `iptables --version`; child_process is loaded only then.
  const randomFully = rf === 'auto' ? await (await import('../dataplane/iptables/detect.js')).detectRandomFully() : rf === 'true';
  let families: IPFamily[] | undefined;
  if (options.ipFamily) families = options.ipFamily.split(',').map((f) => f.trim()) as IPFamily[];
  const rulesets = renderIptables(
    state,
    renderOptionsFromSettings(settings, {
      randomFully,
      nfacct: { ctStateInvalid: options.nfacct ?? false, localhostNodePorts: options.nfacct ?? false },
      ...(families ? { families } : {}),
    }),
  );
  const warnings: string[] = [];
  for (const rs of rulesets) {
    for (const s of rs.skipped) warnings.push(`${rs.family}: service port ${JSON.stringify(s.key)} skipped: ${s.reason}`);
  }
  function* text(): Generator<string> {
    for (const [i, rs] of rulesets.entries()) {
      if (i > 0) yield '\n';
      if (rulesets.length > 1) yield `${familyHeader(rs.family)}\n`;
      if (options.raw) yield restorePayload(rs);
      else yield* canonicalChunks(rs);
    }
  }
  return { text: text(), warnings };
}

/** Proxy modes `render` knows; other modes register here (e.g. modeRenderers.ipvs = …). */
export const modeRenderers: Record<string, ModeRenderer> = {
  iptables: renderIptablesMode,
  // Loaded only for their mode (ipvs brings the IPVS model and the schedulers).
  ipvs: async (ctx) => (await import('../dataplane/ipvs/render-mode.js')).renderIpvsMode(ctx),
  nftables: async (ctx) => (await import('../dataplane/nftables/text.js')).renderNftablesMode(ctx),
};

export interface PreparedRender {
  /** The warnings, formatted, to print before the output. */
  stderr: string;
  code: number;
  /** The output, in pieces (none when code is not 0). */
  chunks: Iterable<string>;
}

/** Everything `kproxy render` prints: stdout, stderr and the exit code. */
export async function runRender(paths: string[], o: RenderCliOptions): Promise<{ stdout: string; stderr: string; code: number }> {
  const r = await prepareRender(paths, o);
  return { stdout: [...r.chunks].join(''), stderr: r.stderr, code: r.code };
}

/** Loads, validates and renders; the (large) output text is produced only when written. */
export async function prepareRender(paths: string[], o: RenderCliOptions): Promise<PreparedRender> {
  let config: ProxyConfig | undefined;
  const warnings: string[] = [];
  if (o.config) {
    const loaded = await loadProxyConfig(o.config);
    config = loaded.config;
    warnings.push(...loaded.warnings);
  }
  const loaded = await loadManifests(paths);
  warnings.push(...loaded.warnings.map(formatWarning));
  const flags = proxyFlagsFrom(o);
  const settings = mergeProxySettings(config, flags, loaded.state.nodes);
  const renderer = modeRenderers[settings.mode];
  if (!renderer) {
    throw new Error(
      `--proxy-mode ${settings.mode}: kproxy render supports ${Object.keys(modeRenderers).join(', ')}; ${settings.mode} is not available`,
    );
  }
  if (settings.nodeIPs.length === 0) {
    warnings.push(
      `no node IPs: no Node named ${JSON.stringify(settings.hostname)} in the input and no --node-ip; rendering without them (set --hostname-override or --node-ip)`,
    );
  }
  const out = await renderer({ state: loaded.state, settings, config, options: o });
  warnings.push(...out.warnings);
  const stderr = warnings.map((w) => `kproxy: warning: ${w}\n`).join('');
  if (o.strict && warnings.length > 0) {
    return { stderr: stderr + `kproxy: --strict: ${warnings.length} warning(s), nothing rendered\n`, code: 1, chunks: [] };
  }
  return { stderr, code: 0, chunks: typeof out.text === 'string' ? [out.text] : out.text };
}

export function register(program: Command): void {
  const cmd = program
    .command('render')
    .description(COMMANDS.render.description)
    .argument('<paths...>', 'manifest files or folders (YAML/JSON, multi-document, kind: List); "-" for stdin')
    .option('--ipvs-scheduler <name>', 'IPVS scheduler for --proxy-mode ipvs: rr (default), wrr, lc, wlc, sed, nq, dh, sh, mh')
    .option('--random-fully <auto|true|false>', 'MASQUERADE --random-fully (auto: when the installed iptables is >= 1.6.2)', 'auto')
    .option('--nfacct', 'write the nfacct counter matches (as kube-proxy does when the kernel has nfacct)')
    .option('--ip-family <IPv4|IPv6[,..]>', 'families to render (default: those of the node IPs)')
    .option('--raw', "upstream's write order instead of the canonical sorted order")
    .option('--strict', 'exit 1 when any input object was skipped with a warning');
  addProxyFlags(cmd)
    .action(async (paths: string[], o: RenderCliOptions) => {
      if (o.randomFully && !['auto', 'true', 'false'].includes(o.randomFully)) {
        throw new Error(`--random-fully takes auto, true or false, not ${JSON.stringify(o.randomFully)}`);
      }
      if (o.ipFamily && o.ipFamily.split(',').some((f) => !['IPv4', 'IPv6'].includes(f.trim()))) {
        throw new Error(`--ip-family takes IPv4, IPv6 or IPv4,IPv6, not ${JSON.stringify(o.ipFamily)}`);
      }
      const r = await prepareRender(paths, o);
      process.stderr.write(r.stderr);
      // Piece by piece, waiting for a slow reader (a pipe) rather than queueing the whole text.
      for (const chunk of r.chunks) if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
      if (r.code !== 0) process.exitCode = r.code;
    });
}
