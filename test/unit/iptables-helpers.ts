// Builders mirroring upstream proxier_test.go's makeTestService /
// makeTestEndpointSlice / NewFakeProxier conventions, so upstream scenarios
// read the same here. Not a test file itself.
import { readFileSync } from 'node:fs';
import type { ClusterState, Endpoint, EndpointSlice, IPFamily, Node, Service } from '../../src/k8s/types.js';
import type { RenderOptions } from '../../src/dataplane/iptables/render.js';
import { renderIptables } from '../../src/dataplane/iptables/render.js';
import { canonicalPayload, canonicalRuleset } from '../../src/dataplane/iptables/payload.js';
import { makeService as buildService } from '../../src/k8s/build.js';

export const testNodeName = 'test-node';
export const testNodeIP = '192.168.0.2';
export const testNodeIPs = ['192.168.0.2', '192.168.1.2', '192.168.99.11', '2001:db8::1', '2001:db8:1::2'];

import { objectMeta as meta } from '../../src/k8s/build.js';
export { meta };

export function makeService(ns: string, name: string, fn: (s: Service) => void = () => {}): Service {
  const s = buildService(ns, name);
  fn(s);
  return s;
}

export function tcpPort(name: string, port: number, nodePort = 0) {
  return { name, protocol: 'TCP' as const, port, targetPort: port, nodePort };
}

export function ep(ip: string, more: Partial<Endpoint> & { ready?: boolean; serving?: boolean; terminating?: boolean } = {}): Endpoint {
  const ready = more.ready ?? true;
  const out: Endpoint = {
    addresses: [ip],
    conditions: { ready, serving: more.serving ?? ready, terminating: more.terminating ?? false },
  };
  if (more.nodeName) out.nodeName = more.nodeName;
  if (more.zone) out.zone = more.zone;
  if (more.hints) out.hints = more.hints;
  return out;
}

export function makeSlice(
  ns: string,
  svcName: string,
  n: number,
  endpoints: Endpoint[],
  ports: { name: string; port: number | null; protocol?: 'TCP' | 'UDP' | 'SCTP' }[],
  addressType: IPFamily = 'IPv4',
): EndpointSlice {
  return {
    meta: meta(ns, `${svcName}-${n}`, { 'kubernetes.io/service-name': svcName }),
    serviceName: svcName,
    addressType,
    endpoints,
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
  };
}

export function makeNode(name: string, ips: string[], labels: Record<string, string> = {}, podCIDRs: string[] = []): Node {
  return {
    meta: meta('', name, labels),
    addresses: ips.map((address) => ({ type: 'InternalIP', address })),
    podCIDRs,
    taints: [],
  };
}

export function state(services: Service[], endpointSlices: EndpointSlice[] = [], nodes: Node[] = []): ClusterState {
  return { services, endpointSlices, nodes, pods: [] };
}

/** NewFakeProxier's settings (IPv4 unless told otherwise). */
export function fakeProxierOptions(family: IPFamily = 'IPv4', over: Partial<RenderOptions> = {}): RenderOptions {
  return {
    nodeName: testNodeName,
    nodeIPs: testNodeIPs,
    clusterCIDRs: [family === 'IPv4' ? '10.0.0.0/8' : 'fd00:10::/64'],
    detectLocalMode: 'ClusterCIDR',
    masqueradeMark: '0x4000',
    localhostNodePorts: true,
    nfacct: { ctStateInvalid: true, localhostNodePorts: true },
    families: [family],
    ...over,
  };
}

/** Renders one family and returns the canonical text. */
export function renderCanonical(st: ClusterState, opts: RenderOptions): string {
  const rs = renderIptables(st, opts);
  if (rs.length !== 1) throw new Error(`expected one ruleset, got ${rs.length}`);
  return canonicalRuleset(rs[0]!);
}

const fixtures = new URL('../../../test/fixtures/iptables/', import.meta.url);

export function fixture(name: string): string {
  return readFileSync(new URL(name, fixtures), 'utf8');
}

/** The expected text from a fixture, put through the same canonical sort (as upstream's assertIPTablesRulesEqual does). */
export function expected(name: string): string {
  return canonicalPayload(fixture(name));
}

/** Strips the common indentation of a template literal (like Go's dedent). */
export function dedent(s: string): string {
  const lines = s.replace(/^\n/, '').split('\n');
  const ind = Math.min(...lines.filter((l) => l.trim()).map((l) => /^\s*/.exec(l)![0].length));
  return lines.map((l) => l.slice(ind)).join('\n');
}
