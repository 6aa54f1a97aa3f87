// Planning a lab cluster from a manifests folder (pure: no kernel). Decides
// which node each pod lives on, its IP, the ports its tiny server answers on,
// the node addresses and pod CIDRs; and rewrites the manifests so kproxy sees
// the pods as the lab created them (status.podIP, spec.nodeName, Ready).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseYamlStream, stringifyYaml } from '../util/yaml.js';
import { parseObject } from '../k8s/validate.js';
import type { Node, Pod, Service } from '../k8s/types.js';
import { formatWarning } from '../k8s/types.js';

export interface ManifestDoc {
  file: string;
  index: number;
  raw: Record<string, unknown>;
}

export interface LabManifests {
  files: string[];
  docs: ManifestDoc[];
  pods: { doc: ManifestDoc; pod: Pod }[];
  nodes: Node[];
  services: Service[];
  warnings: string[];
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** Reads every YAML/JSON file of a folder (or one file), expanding `kind: List`. */
export function loadLabManifests(path: string): LabManifests {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => MANIFEST_EXT.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (e) {
    throw new Error(`cannot read manifests ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const out: LabManifests = { files, docs: [], pods: [], nodes: [], services: [], warnings: [] };
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    parseYamlStream(text).forEach((d, index) => {
      if (d.error) {
        out.warnings.push(`${file}#${index}: line ${d.error.line}, column ${d.error.column}: ${d.error.message}`);
        return;
      }
      const js = d.value;
      const items =
        js && typeof js === 'object' && (js as { kind?: unknown }).kind === 'List' && Array.isArray((js as { items?: unknown }).items)
          ? ((js as { items: unknown[] }).items)
          : [js];
      for (const raw of items) {
        if (!raw || typeof raw !== 'object') continue;
        const doc: ManifestDoc = { file, index, raw: raw as Record<string, unknown> };
        out.docs.push(doc);
        const r = parseObject(raw, { source: file, document: index });
        for (const w of r.warnings) out.warnings.push(formatWarning(w));
        if (!r.object) continue;
        if (r.kind === 'Pod') out.pods.push({ doc, pod: r.object as Pod });
        else if (r.kind === 'Node') out.nodes.push(r.object as Node);
        else if (r.kind === 'Service') out.services.push(r.object as Service);
      }
    });
  }
  return out;
}

export interface PlannedNode {
  name: string;
  /** Underlay address (InternalIP from the Node object, or assigned). */
  ip: string;
  podCIDR: string;
  /** The bridge's address: the first host of podCIDR. */
  gateway: string;
}

export interface PlannedPod {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  tcp: number[];
  udp: number[];
  /** Index into LabManifests.docs, for rewriting. */
  doc: ManifestDoc;
}

export interface LabPlan {
  nodes: PlannedNode[];
  pods: PlannedPod[];
  clusterCIDR: string;
  underlayPrefix: number;
  clientIP: string;
  routerIP: string;
  notes: string[];
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}
function inCIDR(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  if (!ip.includes('.') || !base!.includes('.')) return false;
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipToInt(base!) / size) * size;
  const v = ipToInt(ip);
  return v >= start && v < start + size;
}

/**
 * Places pods on nodes and gives everything an address:
 *  - nodes: the Node objects of the folder (or node1…nodeN); `nodeCount` adds more;
 *  - a pod goes to its spec.nodeName, else to the node whose podCIDR holds its IP, else round-robin;
 *  - a pod keeps its status.podIP, else gets the next free address of its node's pod CIDR;
 *  - its server answers on its containerPorts and on the numeric targetPorts of the Services selecting it.
 */
export function planLab(m: LabManifests, opts: { nodeCount?: number; clusterCIDR?: string } = {}): LabPlan {
  const notes: string[] = [];
  const clusterCIDR = opts.clusterCIDR ?? '10.244.0.0/16';
  const names: string[] = m.nodes.map((n) => n.meta.name);
  for (const { pod } of m.pods) if (pod.nodeName && !names.includes(pod.nodeName)) names.push(pod.nodeName);
  // Pod IPs in /24s that no Node claims imply nodes with those pod CIDRs (unless a node count was given).
  const claimed = m.nodes.flatMap((n) => n.podCIDRs.filter((c) => c.includes('.')));
  const orphanCIDRs: string[] = [];
  for (const { pod } of m.pods) {
    if (pod.nodeName || pod.hostNetwork) continue;
    const ip = pod.podIPs.find((p) => p.includes('.'));
    if (!ip || claimed.some((c) => inCIDR(ip, c))) continue;
    const c = ip.split('.').slice(0, 3).join('.') + '.0/24';
    if (!orphanCIDRs.includes(c)) orphanCIDRs.push(c);
  }
  const want = opts.nodeCount ?? Math.max(names.length + orphanCIDRs.length, 1);
  for (let i = 1; names.length < want; i++) if (!names.includes(`node${i}`)) names.push(`node${i}`);
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const implied = new Map<string, string>();
  for (const name of names) {
    if (m.nodes.some((n) => n.meta.name === name) || m.pods.some(({ pod }) => pod.nodeName === name)) continue;
    const c = orphanCIDRs.shift();
    if (c) implied.set(name, c);
  }

  const usedCIDRs = new Set<string>();
  const reserved = new Set<string>([...claimed, ...implied.values()]);
  const nodes: PlannedNode[] = names.map((name, i) => {
    const obj = m.nodes.find((n) => n.meta.name === name);
    const ipv4CIDR = obj?.podCIDRs.find((c) => c.includes('.'));
    let podCIDR = ipv4CIDR ?? implied.get(name);
    if (!podCIDR) {
      // A pod with an IP on this node tells which /24 it uses.
      const ip = m.pods.find(({ pod }) => pod.nodeName === name && pod.podIPs.some((p) => p.includes('.')))?.pod.podIPs.find((p) => p.includes('.'));
      if (ip) podCIDR = ip.split('.').slice(0, 3).join('.') + '.0/24';
    }
    if (!podCIDR || usedCIDRs.has(podCIDR)) {
      for (let k = i + 1; ; k++) {
        const c = `10.244.${k}.0/24`;
        if (!usedCIDRs.has(c) && !reserved.has(c)) {
          podCIDR = c;
          break;
        }
      }
    }
    usedCIDRs.add(podCIDR);
    const internal = obj?.addresses.find((a) => a.type === 'InternalIP' && a.address.includes('.'))?.address;
    const ip = internal ?? `172.30.0.${11 + i}`;
    return { name, ip, podCIDR, gateway: intToIp(ipToInt(podCIDR.split('/')[0]!) + 1) };
  });

  // A pod without nodeName but with an IP goes to the node whose CIDR holds it.
  const taken = new Map<string, Set<string>>(nodes.map((n) => [n.name, new Set([n.gateway])]));
  const pods: PlannedPod[] = [];
  let rr = 0;
  for (const { doc, pod } of m.pods) {
    if (pod.hostNetwork) {
      notes.push(`pod ${pod.meta.namespace}/${pod.meta.name} uses hostNetwork: not given a namespace`);
      continue;
    }
    const v4 = pod.podIPs.find((p) => p.includes('.'));
    let node = pod.nodeName ? nodes.find((n) => n.name === pod.nodeName) : undefined;
    if (!node && v4) node = nodes.find((n) => inCIDR(v4, n.podCIDR));
    if (!node) node = nodes[rr++ % nodes.length]!;
    let ip = v4;
    if (ip && !inCIDR(ip, node.podCIDR)) {
      notes.push(`pod ${pod.meta.namespace}/${pod.meta.name}: ${ip} is outside ${node.name}'s pod CIDR ${node.podCIDR}; a host route is added`);
    }
    if (!ip) {
      const base = ipToInt(node.podCIDR.split('/')[0]!);
      for (let k = 2; k < 255; k++) {
        const cand = intToIp(base + k);
        if (!taken.get(node.name)!.has(cand) && !m.pods.some(({ pod: p }) => p.podIPs.includes(cand))) {
          ip = cand;
          break;
        }
      }
      if (!ip) throw new Error(`node ${node.name}: pod CIDR ${node.podCIDR} is full`);
    }
    taken.get(node.name)!.add(ip);
    const tcp = new Set<number>();
    const udp = new Set<number>();
    for (const cp of pod.containerPorts) (cp.protocol === 'UDP' ? udp : tcp).add(cp.containerPort);
    for (const svc of m.services) {
      if (svc.meta.namespace !== pod.meta.namespace || !svc.selector || Object.keys(svc.selector).length === 0) continue;
      if (!Object.entries(svc.selector).every(([k, v]) => pod.meta.labels[k] === v)) continue;
      for (const p of svc.ports) {
        if (typeof p.targetPort === 'number') (p.protocol === 'UDP' ? udp : tcp).add(p.targetPort);
      }
    }
    if (tcp.size === 0 && udp.size === 0) tcp.add(8080);
    pods.push({
      namespace: pod.meta.namespace,
      name: pod.meta.name,
      node: node.name,
      ip,
      tcp: [...tcp].sort((a, b) => a - b),
      udp: [...udp].sort((a, b) => a - b),
      doc,
    });
  }
  const underlayPrefix = 24;
  // The client sits in the first node's /24, at .100 (or the next free host).
  const first = nodes[0]!.ip.split('.').slice(0, 3).join('.');
  let clientIP = `${first}.100`;
  for (let h = 100; h < 255 && nodes.some((n) => n.ip === clientIP); h++) clientIP = `${first}.${h}`;
  // The underlay's router (the bridge's own address) gives every node a default route, as real nodes have:
  // without one, a node's own connections to a ClusterIP fail routing before iptables can DNAT them.
  let routerIP = `${first}.1`;
  for (let h = 254; h > 1 && (nodes.some((n) => n.ip === routerIP) || routerIP === clientIP); h--) routerIP = `${first}.${h}`;
  return { nodes, pods, clusterCIDR, underlayPrefix, clientIP, routerIP, notes };
}

/**
 * The manifests as the lab runs them: every Pod gets spec.nodeName, status.podIP(s),
 * phase Running and (when it has no conditions) Ready=True. Returns file name → content.
 */
export function rewriteManifests(m: LabManifests, plan: LabPlan): Map<string, string> {
  const byDoc = new Map(plan.pods.map((p) => [p.doc, p]));
  const perFile = new Map<string, unknown[]>();
  for (const f of m.files) perFile.set(f, []);
  for (const doc of m.docs) {
    const p = byDoc.get(doc);
    let raw: Record<string, unknown> = doc.raw;
    if (p) {
      raw = structuredClone(doc.raw);
      const spec = (raw.spec ??= {}) as Record<string, unknown>;
      spec.nodeName ??= p.node;
      const status = (raw.status ??= {}) as Record<string, unknown>;
      status.podIP = p.ip;
      status.podIPs = [{ ip: p.ip }];
      status.phase ??= 'Running';
      status.conditions ??= [{ type: 'Ready', status: 'True' }];
    }
    perFile.get(doc.file)!.push(raw);
  }
  const out = new Map<string, string>();
  for (const [file, objs] of perFile) {
    const base = file.split('/').pop()!;
    if (/\.json$/i.test(base)) {
      out.set(base, JSON.stringify(objs.length === 1 ? objs[0] : { apiVersion: 'v1', kind: 'List', items: objs }, null, 2) + '\n');
    } else {
      out.set(base, objs.map((o) => stringifyYaml(o)).join('---\n'));
    }
  }
  return out;
}

