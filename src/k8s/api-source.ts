// A Kubernetes API server as a ClusterSource, through @kubernetes/client-node
// 1.4's ListWatch informer, with what that informer lacks added around it:
//  - it stops for good after any watch error other than 410: we restart it with
//    capped exponential backoff (1 s → 30 s), as client-go's reflector does;
//  - it re-watches at once when a watch ends cleanly and relists at once on a
//    410: both are spaced out here when they repeat, so a misbehaving server
//    cannot make us spin;
//  - its watch has no timeout (the 30 s abort in 1.4.0 is dead code) and cannot
//    be aborted while connecting: our Watch subclass asks the server to end
//    watches (timeoutSeconds, as client-go does), requests bookmarks, aborts a
//    silent connection, and aborts everything on stop();
//  - list responses through the generated API clients are class instances
//    with Date fields: lists are fetched raw here (paginated), so every object
//    reaches parseObject as the API server's JSON.
// Services and EndpointSlices are filtered with kube-proxy's label selector,
// the Node with metadata.name=<node>; Pods only when asked (for DNS).
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { KubeConfig, ListWatch, Watch, type KubernetesObject, type KubernetesListObject } from '@kubernetes/client-node';
import { log as defaultLog, type Logger } from '../util/log.js';
import { isDNS1123Label, isDNS1123Subdomain, parseObject } from './validate.js';
import { StateStore } from './state-store.js';
import type { ClusterSource, SourceEvents } from './source.js';
import { formatWarning, type ClusterState, type EndpointSlice, type InputWarning, type Node, type Pod, type Service } from './types.js';

/** kube-proxy's selector for Services and EndpointSlices (cmd/kube-proxy/app/server.go). */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

export interface ApiSourceOptions {
  /** --kubeconfig: path to a kubeconfig file. */
  kubeconfig?: string;
  /** --master: API server URL, overriding the kubeconfig's. */
  master?: string;
  /** A ready KubeConfig (tests, embedding); wins over kubeconfig/master. */
  kubeConfig?: KubeConfig;
  /** This node's name: its Node object is watched. */
  nodeName: string;
  /** Also watch all Pods (for DNS pod records). */
  pods?: boolean;
  /**
   * Label selector for Services and EndpointSlices (default PROXY_LABEL_SELECTOR, as kube-proxy).
   * "" watches everything, as CoreDNS does: DNS needs headless services and their slices.
   */
  labelSelector?: string;
  /** Record a Kubernetes Event for each rejected object (default true). */
  events?: boolean;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Server-side watch timeout; client-go picks 5–10 min at random (default: 300–600 s). */
  watchTimeoutSeconds?: number;
  /** Abort a watch that has received nothing for this long (default: watch timeout + 30 s). */
  idleTimeoutMs?: number;
  /** Page size of list requests (default 500, as client-go). */
  pageSize?: number;
  logger?: Logger;
}

/** Builds the client configuration the way kube-proxy does: --kubeconfig, --master overriding it, in-cluster when neither. */
export function buildKubeConfig(opts: { kubeconfig?: string; master?: string }): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else if (!opts.master) kc.loadFromCluster();
  if (opts.master) {
    const server = opts.master.replace(/\/+$/, '');
    const current = opts.kubeconfig ? kc.getCurrentCluster() : null;
    const user = opts.kubeconfig ? kc.getCurrentUser() : null;
    // Plain http needs skipTLSVerify in client-node (there is no TLS to verify anyway).
    const cluster = { ...(current ?? {}), name: current?.name ?? 'master', server, skipTLSVerify: current?.skipTLSVerify || server.startsWith('http:') };
    const userObj = user ?? { name: 'master-user' };
    kc.loadFromOptions({
      clusters: [cluster],
      users: [userObj],
      contexts: [{ name: 'master', cluster: cluster.name, user: userObj.name }],
      currentContext: 'master',
    });
  }
  return kc;
}

class HttpStatusError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

function abortError(): Error {
  const e = new Error('aborted');
  e.name = 'AbortError';
  return e;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError());
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** One HTTP request to the API server with the kubeconfig's TLS and credentials. */
async function apiRequest(
  kc: KubeConfig,
  method: string,
  path: string,
  query: Record<string, string | undefined>,
  signal: AbortSignal,
  body?: unknown,
): Promise<http.IncomingMessage> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { headers: {} };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: http.OutgoingHttpHeaders = { ...(opts.headers as http.OutgoingHttpHeaders), Accept: 'application/json', 'User-Agent': 'kproxy' };
  if (payload) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = payload.length;
  }
  const mod = url.protocol === 'http:' ? http : https;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, agent: opts.agent, headers, auth: opts.auth, signal }, resolve);
    req.on('error', reject);
    req.end(payload);
  });
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function statusMessage(text: string, code: number): string {
  try {
    const s = JSON.parse(text) as { message?: string };
    if (s.message) return `${code}: ${s.message}`;
  } catch {
    /* not a Status object */
  }
  return `${code} ${http.STATUS_CODES[code] ?? ''}`.trim();
}

interface ResourceDef {
  kind: 'Service' | 'EndpointSlice' | 'Node' | 'Pod';
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

type AnyObject = Service | EndpointSlice | Node | Pod;

/** One resource's informer plus the restart/backoff logic around it. */
class Reflector {
  listed = false;
  private lw: ListWatch<KubernetesObject>;
  private failures = 0;
  private lastListAt = 0;
  private restartTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    readonly src: ApiSource,
    readonly def: ResourceDef,
    private readonly signal: AbortSignal,
  ) {
    const watch = new SpacedWatch(src.kc, this, signal);
    this.lw = new ListWatch<KubernetesObject>(def.path, watch, () => this.list(), false, def.labelSelector, def.fieldSelector);
    this.lw.on('add', (o) => this.upsert(o));
    this.lw.on('update', (o) => this.upsert(o));
    this.lw.on('delete', (o) => this.remove(o));
    this.lw.on('error', (err) => this.onError(err));
  }

  start(): void {
    void this.lw.start();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    void this.lw.stop();
  }

  delay(): number {
    if (this.failures === 0) return 0;
    return Math.min(this.src.backoffMaxMs, this.src.backoffInitialMs * 2 ** (this.failures - 1));
  }

  /** A failed attempt: the next one waits longer. */
  failed(): void {
    this.failures++;
  }

  /** The connection proved healthy: start again from the shortest delay. */
  healthy(): void {
    this.failures = 0;
  }

  private async list(): Promise<KubernetesListObject<KubernetesObject>> {
    // Relists in quick succession (a server answering 410 again and again) are spaced out.
    if (Date.now() - this.lastListAt < this.src.backoffInitialMs) {
      this.failed();
      await sleep(this.delay(), this.signal);
    }
    this.lastListAt = Date.now();
    const items: KubernetesObject[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      const res = await apiRequest(
        this.src.kc,
        'GET',
        this.def.path,
        { labelSelector: this.def.labelSelector, fieldSelector: this.def.fieldSelector, limit: String(this.src.pageSize), continue: cont },
        this.signal,
      );
      const text = await readBody(res);
      if (res.statusCode !== 200) throw new HttpStatusError(`list ${this.def.path}: ${statusMessage(text, res.statusCode ?? 0)}`, res.statusCode ?? 0);
      const body = JSON.parse(text) as { items?: KubernetesObject[]; metadata?: { resourceVersion?: string; continue?: string } };
      for (const it of body.items ?? []) items.push(it);
      resourceVersion = body.metadata?.resourceVersion ?? '';
      cont = body.metadata?.continue || undefined;
    } while (cont);
    if (this.stopped) throw abortError();
    this.listed = true;
    this.src.onListed(this);
    return { metadata: { resourceVersion }, items };
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    this.failed();
    const delay = this.delay();
    this.src.onReflectorError(this, err, delay);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.stopped) void this.lw.start();
    }, delay);
  }

  /** Each watch event changes one object in the source's store: O(that object), whatever the cluster's size. */
  private upsert(o: KubernetesObject): void {
    const raw = { ...o, kind: this.def.kind } as KubernetesObject;
    const res = parseObject(raw, { source: 'api' });
    for (const w of res.warnings) this.src.onWarning(w, this.def.kind, o);
    this.src.store.set(this.def.kind, o.metadata?.namespace ?? '', o.metadata?.name ?? '', res.object as AnyObject | undefined as never);
    this.src.scheduleEmit();
  }

  private remove(o: KubernetesObject): void {
    const store = this.src.store;
    const ns = o.metadata?.namespace ?? '';
    const name = o.metadata?.name ?? '';
    if (!store.get(this.def.kind, ns, name)) return;
    store.set(this.def.kind, ns, name, undefined);
    this.src.scheduleEmit();
  }
}

/**
 * client-node's Watch, reimplemented on node:http so that it can be aborted at
 * any point, times out when silent, asks for bookmarks and a server-side
 * timeout, and spaces out reconnects that end at once.
 */
class SpacedWatch extends Watch {
  private lastEnd = 0;
  private lastWasQuick = false;

  constructor(
    kc: KubeConfig,
    private readonly reflector: Reflector,
    private readonly signal: AbortSignal,
  ) {
    super(kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    const controller = new AbortController();
    const src = this.reflector.src;
    let doneCalled = false;
    let idle: NodeJS.Timeout | undefined;
    let startedAt = Date.now();
    let events = 0;
    const finish = (err: unknown): void => {
      if (doneCalled) return;
      doneCalled = true;
      clearTimeout(idle);
      this.signal.removeEventListener('abort', onStop);
      controller.abort();
      const lasted = Date.now() - startedAt;
      this.lastEnd = Date.now();
      // A watch that stayed up a while or delivered events proves the connection healthy.
      if (lasted >= 10_000 || events > 0) this.reflector.healthy();
      this.lastWasQuick = !err && events === 0 && lasted < src.backoffInitialMs;
      if (this.signal.aborted) return;
      done(err);
    };
    const onStop = (): void => finish(abortError());
    if (this.signal.aborted) {
      // stop() raced with the informer's re-watch: start nothing.
      controller.abort();
      return controller;
    }
    this.signal.addEventListener('abort', onStop, { once: true });
    try {
      // A watch that ended cleanly at once, again: wait before the next one.
      if (this.lastWasQuick && Date.now() - this.lastEnd < src.backoffInitialMs) {
        this.reflector.failed();
        await sleep(this.reflector.delay(), controller.signal);
      }
      startedAt = Date.now();
      const query: Record<string, string | undefined> = { watch: 'true', allowWatchBookmarks: 'true', timeoutSeconds: String(src.watchTimeoutSeconds()) };
      for (const [k, v] of Object.entries(queryParams)) if (v !== undefined) query[k] = String(v);
      const res = await apiRequest(src.kc, 'GET', path, query, controller.signal);
      if (res.statusCode !== 200) {
        const text = await readBody(res).catch(() => '');
        throw new HttpStatusError(`watch ${path}: ${statusMessage(text, res.statusCode ?? 0)}`, res.statusCode ?? 0);
      }
      src.onWatchConnected();
      const armIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => finish(new Error(`watch ${path}: no data for ${src.idleTimeoutMs()} ms`)), src.idleTimeoutMs());
      };
      armIdle();
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        armIdle();
        buf += chunk;
        let nl: number;
        while (!doneCalled && (nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line === '') continue;
          let ev: { type?: string; object?: any };
          try {
            ev = JSON.parse(line);
          } catch {
            finish(new Error(`watch ${path}: unparseable event`));
            return;
          }
          if (ev.type === 'ERROR') {
            const code = typeof ev.object?.code === 'number' ? ev.object.code : 0;
            callback('ERROR', ev.object ?? {}, ev);
            const err = new HttpStatusError(`watch ${path}: ${ev.object?.message ?? 'error event'}`, code);
            (err as unknown as { code: number }).code = code;
            finish(err);
            return;
          }
          events++;
          if (ev.type && ev.object) callback(ev.type, ev.object, ev);
        }
      });
      res.on('end', () => finish(null));
      res.on('aborted', () => finish(new Error(`watch ${path}: connection lost`)));
      res.on('error', (err) => finish(err));
      res.on('close', () => finish(res.complete ? null : new Error(`watch ${path}: connection lost`)));
    } catch (err) {
      finish(err);
    }
    return controller;
  }
}

export class ApiSource extends EventEmitter<SourceEvents> implements ClusterSource {
  readonly kc: KubeConfig;
  readonly nodeName: string;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly pageSize: number;
  private readonly opts: ApiSourceOptions;
  private readonly log: Logger;
  private reflectors: Reflector[] = [];
  private stopController = new AbortController();
  /** @internal The objects of every resource, kept per watch event. */
  readonly store = new StateStore();
  private state: ClusterState = this.store.snapshot();
  private _synced = false;
  private connected?: boolean;
  private emitPending = false;
  private syncedResolve?: () => void;
  private eventsSent = new Set<string>();
  private eventsForbiddenLogged = false;
  /** Events being posted (tests wait on them). */
  readonly pendingEvents = new Set<Promise<void>>();

  constructor(opts: ApiSourceOptions) {
    super();
    this.opts = opts;
    this.kc = opts.kubeConfig ?? buildKubeConfig(opts);
    this.nodeName = opts.nodeName;
    this.backoffInitialMs = opts.backoffInitialMs ?? 1000;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.pageSize = opts.pageSize ?? 500;
    this.log = opts.logger ?? defaultLog.child({ source: 'api' });
  }

  get synced(): boolean {
    return this._synced;
  }

  current(): ClusterState {
    return this.state;
  }

  watchTimeoutSeconds(): number {
    return this.opts.watchTimeoutSeconds ?? Math.floor(300 * (1 + Math.random()));
  }

  idleTimeoutMs(): number {
    return this.opts.idleTimeoutMs ?? ((this.opts.watchTimeoutSeconds ?? 600) + 30) * 1000;
  }

  /** Resolves once every resource has been listed (retrying, with backoff, until it can). */
  async start(): Promise<void> {
    if (this.reflectors.length > 0) throw new Error('ApiSource already started');
    this.stopController = new AbortController();
    const defs: ResourceDef[] = [
      { kind: 'Service', path: '/api/v1/services', labelSelector: this.opts.labelSelector === '' ? undefined : (this.opts.labelSelector ?? PROXY_LABEL_SELECTOR) },
      { kind: 'EndpointSlice', path: '/apis/discovery.k8s.io/v1/endpointslices', labelSelector: this.opts.labelSelector === '' ? undefined : (this.opts.labelSelector ?? PROXY_LABEL_SELECTOR) },
      { kind: 'Node', path: '/api/v1/nodes', fieldSelector: `metadata.name=${this.nodeName}` },
    ];
    if (this.opts.pods) defs.push({ kind: 'Pod', path: '/api/v1/pods' });
    const synced = new Promise<void>((resolve, reject) => {
      this.syncedResolve = resolve;
      this.stopController.signal.addEventListener('abort', () => reject(new Error('ApiSource stopped before its first sync')), { once: true });
    });
    this.reflectors = defs.map((d) => new Reflector(this, d, this.stopController.signal));
    for (const r of this.reflectors) r.start();
    await synced;
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    for (const r of this.reflectors) r.stop();
    this.reflectors = [];
    await Promise.allSettled([...this.pendingEvents]);
  }

  /** @internal */
  onListed(_r: Reflector): void {
    this.setConnected(true);
    if (!this._synced && this.reflectors.every((x) => x.listed)) {
      // The informer applies the list right after this returns: emit the first snapshot after that.
      setImmediate(() => {
        if (this._synced || this.stopController.signal.aborted) return;
        this._synced = true;
        this.state = this.store.snapshot();
        this.emit('change', this.state);
        this.syncedResolve?.();
      });
    }
  }

  /** @internal */
  onWatchConnected(): void {
    this.setConnected(true);
  }

  /** @internal */
  onReflectorError(r: Reflector, err: unknown, delay: number): void {
    this.setConnected(false);
    const e = err as { message?: string; statusCode?: number };
    this.log.warn(`${r.def.kind} list/watch failed; retrying in ${delay} ms`, { err: e?.message ?? String(err), status: e?.statusCode });
  }

  private setConnected(ok: boolean): void {
    if (this.connected === ok) return;
    this.connected = ok;
    this.emit('connected', ok);
  }

  /** @internal */
  onWarning(w: InputWarning, kind: string, raw: KubernetesObject): void {
    this.log.warn(formatWarning(w), { kind: w.kind, object: w.object, field: w.field });
    this.emit('warning', w);
    if (this.opts.events !== false && /skipped$/.test(w.message)) this.recordEvent(kind, raw, w);
  }

  /** @internal */
  scheduleEmit(): void {
    if (!this._synced || this.emitPending) return;
    this.emitPending = true;
    // Coalesce a burst (a relist, a watch chunk with many events) into one snapshot.
    setImmediate(() => {
      this.emitPending = false;
      if (this.stopController.signal.aborted) return;
      this.state = this.store.snapshot();
      this.emit('change', this.state);
    });
  }

  /** Best effort: an events.k8s.io/v1 Event about a rejected object, once per object version and message. */
  private recordEvent(kind: string, raw: KubernetesObject, w: InputWarning): void {
    const md = raw.metadata ?? {};
    const name = typeof md.name === 'string' ? md.name : '';
    const namespace = kind === 'Node' ? 'default' : typeof md.namespace === 'string' ? md.namespace : 'default';
    if (!isDNS1123Label(namespace)) return; // nowhere valid to put it
    const dedup = `${kind}/${namespace}/${name}/${md.resourceVersion ?? ''}/${w.field ?? ''}/${w.message}`;
    if (this.eventsSent.has(dedup)) return;
    this.eventsSent.add(dedup);
    const base = isDNS1123Subdomain(name) && name.length < 230 ? name : 'kproxy';
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${base}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: now,
      reportingController: 'kproxy',
      reportingInstance: `kproxy-${this.nodeName}`,
      action: 'Validate',
      reason: 'InvalidObject',
      type: 'Warning',
      note: `${w.field ? w.field + ': ' : ''}${w.message}`.slice(0, 1024),
      regarding: {
        kind,
        apiVersion: raw.apiVersion ?? (kind === 'EndpointSlice' ? 'discovery.k8s.io/v1' : 'v1'),
        namespace: kind === 'Node' ? undefined : namespace,
        name,
        uid: md.uid,
        resourceVersion: md.resourceVersion,
      },
    };
    const p = (async () => {
      try {
        const res = await apiRequest(this.kc, 'POST', `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, {}, this.stopController.signal, event);
        const text = await readBody(res);
        if ((res.statusCode ?? 0) >= 300) {
          if (!this.eventsForbiddenLogged) this.log.warn('cannot record a Kubernetes Event', { status: statusMessage(text, res.statusCode ?? 0) });
          this.eventsForbiddenLogged = true;
        }
      } catch (err) {
        this.log.debug('cannot record a Kubernetes Event', { err: (err as Error).message });
      }
    })();
    this.pendingEvents.add(p);
    void p.finally(() => this.pendingEvents.delete(p));
  }
}
