// Where cluster state comes from: a Kubernetes API server (informers) or a
// folder of manifests. `run`, `dns` and `doctor` consume a ClusterSource and
// never care which one it is.
import type { EventEmitter } from 'node:events';
import type { ClusterState, InputWarning } from './types.js';

export interface SourceEvents {
  /** A new consistent snapshot. Emitted after the first full sync, then on every change. */
  change: [state: ClusterState];
  /** An object was rejected (logged by the source too; the API source also records a Kubernetes Event). */
  warning: [w: InputWarning];
  /** Connection state for health reporting: false while the API server or folder cannot be read. */
  connected: [ok: boolean];
}

export interface ClusterSource extends EventEmitter<SourceEvents> {
  /** Starts watching; resolves after the first full sync (every list done / folder read once). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The latest snapshot (empty before the first sync). */
  current(): ClusterState;
  /** True once the first full sync has completed. */
  readonly synced: boolean;
}
