// `kproxy lab`: a cluster of network namespaces on this machine (src/lab/cluster.ts).
import { COMMANDS } from './commands.js';
import { spawn } from 'node:child_process';
import { Command, Option } from 'commander';
import {
  DEFAULT_STATE_DIR,
  formatTopology,
  labDown,
  labUp,
  listLabs,
  probeFrom,
  probeScript,
  readLabState,
  resolveTarget,
  type LabState,
} from '../lab/cluster.js';

const DEFAULT_NAME = 'kproxy';

function mustState(name: string): LabState {
  const s = readLabState(name);
  if (!s) {
    const others = listLabs().map((l) => l.name);
    throw new Error(`no lab named "${name}" is up${others.length ? ` (up: ${others.join(', ')})` : ' (start one with `kproxy lab up --manifests DIR`)'}`);
  }
  return s;
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function register(program: Command): void {
  const lab = program
    .command('lab')
    .description(COMMANDS.lab.description);

  lab
    .command('up')
    .description('create the namespaces (nodes, pods with tiny servers, an external client) and start kproxy in each node')
    .requiredOption('--manifests <dir>', 'folder of Kubernetes manifests (Services, Pods, Nodes), e.g. examples/hello-world')
    .option('--nodes <n>', 'number of nodes (default: as many as the manifests name, at least 1)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 16) throw new Error(`--nodes must be an integer from 1 to 16, got "${v}"`);
      return n;
    })
    .option('--name <name>', 'lab name (prefix of every namespace)', DEFAULT_NAME)
    .addOption(
      new Option('--dataplane <mode>', 'how nodes are programmed: kproxy run, or kproxy render + iptables-restore, or not at all')
        .choices(['auto', 'run', 'render', 'none'])
        .default('auto'),
    )
    .action(async (o: { manifests: string; nodes?: number; name: string; dataplane: 'auto' | 'run' | 'render' | 'none' }) => {
      const state = await labUp({
        name: o.name,
        manifests: o.manifests,
        nodes: o.nodes,
        dataplane: o.dataplane,
        progress: (l) => process.stderr.write(`· ${l}\n`),
      });
      process.stdout.write(formatTopology(state) + '\n');
    });

  lab
    .command('down')
    .description('remove a lab: its processes, namespaces and state')
    .option('--name <name>', 'lab name', DEFAULT_NAME)
    .option('--all', 'remove every lab recorded in ' + DEFAULT_STATE_DIR)
    .action(async (o: { name: string; all?: boolean }) => {
      const names = o.all ? listLabs().map((l) => l.name) : [o.name];
      for (const name of names) {
        if (await labDown(name)) process.stdout.write(`lab "${name}" removed\n`);
        else if (!o.all) throw new Error(`no lab named "${name}" is up`);
      }
    });

  lab
    .command('status')
    .description('show the labs that are up, their topology and whether their processes run')
    .option('--name <name>', 'only this lab')
    .action(async (o: { name?: string }) => {
      const labs = o.name ? [mustState(o.name)] : listLabs();
      if (labs.length === 0) {
        process.stdout.write('no lab is up\n');
        return;
      }
      for (const s of labs) {
        process.stdout.write(formatTopology(s) + '\n\nprocesses:\n');
        for (const n of s.nodes) {
          if (!n.kproxyPid) continue;
          let health = '';
          if (alive(n.kproxyPid)) {
            // kproxy's own /healthz, asked from outside the node as a load balancer would.
            const [r] = await probeFrom(s, 'client', `http://${n.ip}:10256/healthz`, 1, 2000);
            health = r?.ok ? `, /healthz ${r.answer}` : `, /healthz: ${r?.error ?? 'no answer'}`;
          }
          process.stdout.write(`  kproxy on ${n.name}: pid ${n.kproxyPid} ${alive(n.kproxyPid) ? 'running' : 'NOT RUNNING'} (log ${n.kproxyLog})${health}\n`);
        }
        for (const p of s.pods) process.stdout.write(`  pod ${p.name}: pid ${p.pid} ${alive(p.pid) ? 'running' : 'NOT RUNNING'}\n`);
        process.stdout.write('\n');
      }
    });

  lab
    .command('exec')
    .description('run a command inside a lab node, pod or the client: kproxy lab exec node1 -- iptables-save -t nat')
    .argument('<target>', 'node name, pod name (or namespace/pod), "client" or "net"')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--name <name>', 'lab name', DEFAULT_NAME)
    .action(async (target: string, command: string[], o: { name: string }) => {
      const ns = resolveTarget(mustState(o.name), target);
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: 'inherit' });
        child.on('error', reject);
        child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
      });
      process.exitCode = code;
    });

  lab
    .command('curl')
    .description('send requests from a node, pod or the client to a URL (http://IP:PORT/ or udp://IP:PORT) and show which pod answered')
    .argument('<from>', 'node name, pod name or "client"')
    .argument('<url>', 'http://IP:PORT/path or udp://IP:PORT')
    .option('--name <name>', 'lab name', DEFAULT_NAME)
    .option('-n, --count <n>', 'number of requests, each on a new connection', (v) => Number(v), 1)
    .option('--timeout <ms>', 'per-request timeout', (v) => Number(v), 2000)
    .action(async (from: string, url: string, o: { name: string; count: number; timeout: number }) => {
      try {
        new URL(url);
      } catch {
        throw new Error(`invalid URL "${url}": want http://IP:PORT/ or udp://IP:PORT`);
      }
      const ns = resolveTarget(mustState(o.name), from);
      let failed = 0;
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', ns, process.execPath, probeScript, url, '--count', String(o.count), '--timeout', String(o.timeout)], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let buf = '';
        child.stdout.on('data', (d: Buffer) => (buf += d.toString()));
        child.on('error', reject);
        child.on('close', () => resolve(buf));
      });
      for (const line of out.split('\n').filter(Boolean)) {
        const r = JSON.parse(line) as { ok: boolean; answer?: string; error?: string; ms: number };
        if (r.ok) process.stdout.write(`${r.answer}  (${r.ms} ms)\n`);
        else {
          failed++;
          process.stdout.write(`error: ${r.error}\n`);
        }
      }
      if (failed > 0) process.exitCode = 1;
    });
}
