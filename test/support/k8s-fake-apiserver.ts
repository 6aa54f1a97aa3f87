// A small Kubernetes API server for tests: list (with selectors and paging),
// watch (chunked JSON lines, history window, bookmarks, 410 Gone both as an
// HTTP status and as an ERROR event), event creation, and knobs to drop
// connections or go down and come back. No real kube-apiserver can run here.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Resource = 'services' | 'endpointslices' | 'nodes' | 'pods';

const PATHS: Record<string, Resource> = {
  '/api/v1/services': 'services',
  '/apis/discovery.k8s.io/v1/endpointslices': 'endpointslices',
  '/api/v1/nodes': 'nodes',
  '/api/v1/pods': 'pods',
};
const KINDS: Record<Resource, [string, string]> = {
  services: ['Service', 'v1'],
  endpointslices: ['EndpointSlice', 'discovery.k8s.io/v1'],
  nodes: ['Node', 'v1'],
  pods: ['Pod', 'v1'],
};

type Obj = { metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };

interface HistoryEntry {
  rv: number;
  resource: Resource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  obj: Obj;
  prev?: Obj;
}

interface OpenWatch {
  resource: Resource;
  res: http.ServerResponse;
  filter: (o: Obj) => boolean;
  bookmarks: boolean;
}

export interface RequestLog {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization?: string;
}

export interface FakeApiServerOptions {
  /** Serve HTTPS with this key and certificate (the kubeconfig then carries `ca` as certificate-authority-data). */
  tls?: { key: string; cert: string; ca: string };
  /** Refuse requests without this bearer token (401). */
  token?: string;
}

/** Label selector subset: key, !key, key=value, key==value, key!=value (comma = AND). */
export function labelSelectorMatches(selector: string, labels: Record<string, string>): boolean {
  for (const term of selector.split(',').map((t) => t.trim()).filter(Boolean)) {
    let m: RegExpExecArray | null;
    if ((m = /^!([^=!]+)$/.exec(term))) {
      if (m[1]! in labels) return false;
    } else if ((m = /^([^=!]+)!=(.*)$/.exec(term))) {
      if (labels[m[1]!] === m[2]) return false;
    } else if ((m = /^([^=!]+)==?(.*)$/.exec(term))) {
      if (labels[m[1]!] !== m[2]) return false;
    } else if (!(term in labels)) return false;
  }
  return true;
}

function fieldSelectorMatches(selector: string, o: Obj): boolean {
  for (const term of selector.split(',').filter(Boolean)) {
    const [k, v] = term.split('=');
    if (k === 'metadata.name' && o.metadata.name !== v) return false;
    if (k === 'metadata.namespace' && o.metadata.namespace !== v) return false;
  }
  return true;
}

export class FakeApiServer {
  readonly requests: RequestLog[] = [];
  readonly events: Obj[] = [];
  /** Answer event creation with this status (e.g. 403 to test "forbidden"). */
  eventStatus = 201;
  /** How the next watch with a too-old resourceVersion is refused: HTTP 410, or 200 + an ERROR event. */
  goneMode: 'http' | 'event' = 'event';
  private rv = 1;
  private compactedRV = 0;
  private store: Record<Resource, Map<string, Obj>> = { services: new Map(), endpointslices: new Map(), nodes: new Map(), pods: new Map() };
  private history: HistoryEntry[] = [];
  private watches = new Set<OpenWatch>();
  private sockets = new Set<Socket>();
  private server?: http.Server;
  private port = 0;
  /** Watches to refuse with 410 regardless of their resourceVersion (count). */
  private forceGone = 0;

  constructor(private readonly opts: FakeApiServerOptions = {}) {}

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  async start(): Promise<string> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    const server = this.opts.tls ? https.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, handler) : http.createServer(handler);
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this.url;
  }

  /** Stops listening and cuts every connection (the API server going away). Start again with start(): same port. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const w of this.watches) w.res.destroy();
    this.watches.clear();
    for (const sock of this.sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Writes a kubeconfig for this server into a fresh temp dir; returns its path. */
  writeKubeconfig(): string {
    const dir = mkdtempSync(join(tmpdir(), 'kproxy-kubeconfig-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const p = join(dir, 'config');
    writeFileSync(
      p,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        '  cluster:',
        `    server: ${this.url}`,
        this.opts.tls
          ? `    certificate-authority-data: ${Buffer.from(this.opts.tls.ca).toString('base64')}`
          : '    insecure-skip-tls-verify: true',
        'users:',
        '- name: tester',
        '  user:',
        `    token: ${this.opts.token ?? 'test-token'}`,
        'contexts:',
        '- name: fake',
        '  context: {cluster: fake, user: tester}',
        'current-context: fake',
        '',
      ].join('\n'),
    );
    return p;
  }

  private key(o: Obj): string {
    return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
  }

  private record(resource: Resource, type: HistoryEntry['type'], obj: Obj, prev?: Obj): void {
    const entry: HistoryEntry = { rv: this.rv, resource, type, obj, prev };
    this.history.push(entry);
    for (const w of this.watches) if (w.resource === resource) this.send(w, entry);
  }

  /** Adds or replaces an object; returns its new resourceVersion. */
  apply(resource: Resource, obj: Obj): string {
    const o = structuredClone(obj);
    const [kind, apiVersion] = KINDS[resource];
    o.kind = kind;
    o.apiVersion = apiVersion;
    this.rv++;
    o.metadata.resourceVersion = String(this.rv);
    o.metadata.uid ??= `uid-${resource}-${this.key(o)}`;
    const prev = this.store[resource].get(this.key(o));
    this.store[resource].set(this.key(o), o);
    this.record(resource, prev ? 'MODIFIED' : 'ADDED', o, prev);
    return String(this.rv);
  }

  delete(resource: Resource, namespace: string | undefined, name: string): void {
    const k = `${namespace ?? ''}/${name}`;
    const prev = this.store[resource].get(k);
    if (!prev) return;
    this.store[resource].delete(k);
    this.rv++;
    const o = structuredClone(prev);
    o.metadata.resourceVersion = String(this.rv);
    this.record(resource, 'DELETED', o, prev);
  }

  /** Forgets all history: a watch from any earlier resourceVersion now gets 410 Gone. */
  compact(): void {
    this.compactedRV = this.rv;
    this.history = [];
  }

  /** The next `n` watch requests are refused with 410 (as set by goneMode). */
  expireNextWatches(n = 1): void {
    this.forceGone += n;
  }

  /** Cuts open watch connections mid-stream (no clean end of the chunked body). */
  dropWatches(): void {
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
  }

  /** Ends open watches cleanly, as the API server does at timeoutSeconds. */
  endWatches(): void {
    for (const w of this.watches) w.res.end();
    this.watches.clear();
  }

  /** Sends an in-stream 410 ERROR to every open watch and closes it. */
  expireOpenWatches(): void {
    for (const w of this.watches) {
      w.res.write(JSON.stringify(this.goneEvent('1')) + '\n');
      w.res.end();
    }
    this.watches.clear();
  }

  /** Sends an in-stream ERROR event with another code (e.g. 500) to every open watch and closes it. */
  errorOpenWatches(code: number): void {
    for (const w of this.watches) {
      w.res.write(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'internal error', reason: 'InternalError', code } }) + '\n');
      w.res.end();
    }
    this.watches.clear();
  }

  bookmark(): void {
    for (const w of this.watches) {
      if (!w.bookmarks) continue;
      const [kind, apiVersion] = KINDS[w.resource];
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  openWatchCount(resource?: Resource): number {
    return [...this.watches].filter((w) => !resource || w.resource === resource).length;
  }

  private goneEvent(rv: string): unknown {
    return {
      type: 'ERROR',
      object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rv} (${this.compactedRV})`, reason: 'Expired', code: 410 },
    };
  }

  private send(w: OpenWatch, e: HistoryEntry): void {
    const now = w.filter(e.obj);
    const before = e.prev ? w.filter(e.prev) : false;
    let type: string = e.type;
    if (e.type === 'MODIFIED') {
      if (now && !before) type = 'ADDED';
      else if (!now && before) type = 'DELETED';
      else if (!now) return;
    } else if (e.type === 'DELETED') {
      if (!before) return;
    } else if (!now) return;
    w.res.write(JSON.stringify({ type, object: e.obj }) + '\n');
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const authorization = req.headers.authorization;
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query, ...(authorization ? { authorization } : {}) });
    if (this.opts.token && authorization !== `Bearer ${this.opts.token}`) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    const ev = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname);
    if (ev && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (this.eventStatus >= 300) return this.status(res, this.eventStatus, 'Forbidden', 'events is forbidden');
        const o = JSON.parse(body) as Obj;
        this.events.push(o);
        res.writeHead(201, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(o));
      });
      return;
    }
    const resource = PATHS[url.pathname];
    if (!resource || req.method !== 'GET') return this.status(res, 404, 'NotFound', `the server could not find the requested resource ${url.pathname}`);
    const labelSel = query.labelSelector ?? '';
    const fieldSel = query.fieldSelector ?? '';
    const filter = (o: Obj): boolean => labelSelectorMatches(labelSel, o.metadata.labels ?? {}) && fieldSelectorMatches(fieldSel, o);
    if (query.watch === 'true' || query.watch === '1') return this.watch(resource, query, filter, res);
    // List, paginated with limit/continue (the continue token is the offset here).
    const all = [...this.store[resource].values()].filter(filter).sort((a, b) => (this.key(a) < this.key(b) ? -1 : 1));
    const offset = query.continue ? Number(query.continue) : 0;
    const limit = query.limit ? Number(query.limit) : all.length;
    const items = all.slice(offset, offset + limit).map((o) => {
      const c = structuredClone(o);
      delete c.kind; // list items carry no kind/apiVersion, as from the real API server
      delete c.apiVersion;
      return c;
    });
    const [kind, apiVersion] = KINDS[resource];
    const metadata: Record<string, string> = { resourceVersion: String(this.rv) };
    if (offset + limit < all.length) metadata.continue = String(offset + limit);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: `${kind}List`, apiVersion, metadata, items }));
  }

  private watch(resource: Resource, query: Record<string, string>, filter: (o: Obj) => boolean, res: http.ServerResponse): void {
    const from = Number(query.resourceVersion ?? '0');
    const gone = this.forceGone > 0 || (from > 0 && from < this.compactedRV);
    if (gone) {
      if (this.forceGone > 0) this.forceGone--;
      if (this.goneMode === 'http') return this.status(res, 410, 'Expired', `too old resource version: ${from} (${this.compactedRV})`);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.end(JSON.stringify(this.goneEvent(String(from))) + '\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders(); // the client waits for headers before it considers the watch started
    const w: OpenWatch = { resource, res, filter, bookmarks: query.allowWatchBookmarks === 'true' };
    this.watches.add(w);
    res.on('close', () => this.watches.delete(w));
    for (const e of this.history) if (e.resource === resource && e.rv > from) this.send(w, e);
    const timeout = Number(query.timeoutSeconds ?? '0');
    if (timeout > 0) {
      const t = setTimeout(() => {
        this.watches.delete(w);
        res.end();
      }, timeout * 1000);
      res.on('close', () => clearTimeout(t));
    }
  }
}
