// The commands and their one-line descriptions, with no dependencies: `kproxy`
// loads only the module of the command it runs (a command's module pulls in
// rendering, the tracer, the API client …), so `--help` and a small `trace`
// start in the time node itself takes. Each command's module reads its
// description from here.
import type { Command } from 'commander';

export interface CommandEntry {
  description: string;
  load: () => Promise<{ register(program: Command): void }>;
}

export const COMMANDS = {
  render: { description: "print the iptables-restore payload kube-proxy would write on one node for these manifests", load: () => import('./render.js') },
  trace: { description: 'simulate a packet through an iptables-save dump or an `iptables -L` listing: every rule it meets, every outcome with its probability', load: () => import('./trace.js') },
  run: { description: 'the node agent: keep this node\'s rules in step with Services and EndpointSlices (kube-proxy flags)', load: () => import('./run.js') },
  dns: { description: 'serve cluster DNS (the Kubernetes DNS schema, as CoreDNS\'s kubernetes plugin) for Services, EndpointSlices and Pods from a manifests folder or the API server', load: () => import('./dns.js') },
  resolve: { description: "show what a pod's resolver does with NAME: the resolv.conf kubelet writes for its dnsPolicy, then every query it sends, in order", load: () => import('./resolve.js') },
  doctor: { description: "check this node's Service networking: kernel settings, rules, drift, reachability, DNS, the agent", load: () => import('./doctor.js') },
  lab: { description: 'a small cluster made of network namespaces on this machine, to watch Service traffic with real packets (needs root)', load: () => import('./lab.js') },
  demo: { description: "the seeds' hello-world Service for real: a node, three pods and a client in network namespaces, kproxy run in the node, requests to the ClusterIP and NodePort (what `npm start` runs)", load: () => import('./demo.js') },
} satisfies Record<string, CommandEntry>;
