// What `kproxy run` needs from a proxy mode. Each mode lives in its own
// module and exports `createBackend(opts)`; the map below names the module
// per --proxy-mode, so adding a mode is one line here plus its own folder.
import type { ClusterState, IPFamily } from '../k8s/types.js';
import type { PendingChanges } from '../proxy/change-tracker.js';
import type { ProxySettings } from '../proxy/config.js';
import type { ProxyMetrics } from '../server/metrics.js';
import type { Logger } from '../util/log.js';

export interface BackendOptions {
  settings: ProxySettings;
  /** --iptables-backend: auto | nft | legacy. */
  iptablesBackend: 'auto' | 'nft' | 'legacy';
  /** Families to program (those of the node IPs, else IPv4). */
  families: IPFamily[];
  metrics: ProxyMetrics;
  log: Logger;
}

export interface FamilySyncReport {
  family: IPFamily;
  ok: boolean;
  full: boolean;
  /** Free-form numbers for the info log line (restores, lines, chains…). */
  detail: Record<string, unknown>;
  error?: Error;
}

export interface ProxyBackend {
  readonly mode: string;
  /** Prepares the host (canary chains, modules); `requestFullSync` is called when the rules were lost. */
  start(requestFullSync: () => void): Promise<void>;
  /**
   * Programs the kernel for `state`. `full`: recompute everything against the
   * kernel; otherwise `changes` says which service ports changed. Rejects when
   * any family failed (after trying all of them); the runner retries with a full sync.
   */
  sync(state: ClusterState, full: boolean, changes: PendingChanges): Promise<FamilySyncReport[]>;
  /** Removes everything this mode ever created on the host (`--cleanup`). */
  cleanup(): Promise<void>;
  /** Stops background work; leaves the rules in place. */
  stop(): Promise<void>;
}

/** --proxy-mode → the module (relative to this file) exporting `createBackend`. */
export const BACKEND_MODULES: Record<string, string> = {
  iptables: './iptables/sync-backend.js',
  ipvs: './ipvs/index.js',
  nftables: './nftables/index.js',
  userspace: './userspace/index.js',
};

/** Modes kube-proxy has that kproxy does not build yet: named in the error instead of "unknown". */
const NOT_BUILT: Record<string, string> = {
  kernelspace: 'kernelspace is the Windows mode',
};

export async function loadBackend(mode: string, opts: BackendOptions): Promise<ProxyBackend> {
  const mod = BACKEND_MODULES[mode];
  const known = Object.keys(BACKEND_MODULES).join(', ');
  if (!mod && NOT_BUILT[mode]) throw new Error(`--proxy-mode ${mode}: ${NOT_BUILT[mode]} (its modes: ${known})`);
  if (!mod) throw new Error(`--proxy-mode ${JSON.stringify(mode)}: unknown mode (known: ${known})`);
  let m: { createBackend?: (o: BackendOptions) => Promise<ProxyBackend> | ProxyBackend };
  try {
    m = (await import(mod)) as typeof m;
  } catch (e) {
    throw new Error(`--proxy-mode ${mode} is not available in this build: ${(e as Error).message}`);
  }
  if (typeof m.createBackend !== 'function') throw new Error(`--proxy-mode ${mode}: ${mod} does not export createBackend`);
  return m.createBackend(opts);
}
