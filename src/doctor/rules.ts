// Rule health: are kproxy's rules where the kernel will use them? Reads both
// iptables backends, because a node whose agent writes to one backend while
// the kubelet or CNI writes to the other is a classic silent failure.
import { exec } from '../util/exec.js';
import { parseSave } from '../netfilter/parse-save.js';
import type { Chain, Ruleset } from '../netfilter/ruleset.js';
import type { JumpRule } from '../dataplane/iptables/model.js';
import type { CheckResult } from './check.js';

export type Backend = 'nft' | 'legacy';

export interface LiveRules {
  backend: Backend;
  family: 4 | 6;
  ruleset: Ruleset;
}

/** The backend the plain `iptables` command uses here. */
export async function defaultBackend(): Promise<Backend> {
  const r = await exec('iptables', ['-V'], { allowFail: true });
  return /legacy/.test(r.stdout) ? 'legacy' : 'nft';
}

/** iptables-save of one backend and family; undefined when the tool is missing or fails. */
export async function readLive(backend: Backend, family: 4 | 6): Promise<LiveRules | undefined> {
  const cmd = `${family === 6 ? 'ip6tables' : 'iptables'}-${backend}-save`;
  const r = await exec(cmd, [], { allowFail: true }).catch(() => undefined);
  if (!r || r.code !== 0) return undefined;
  // A backend nobody has used prints nothing at all: no tables, no rules.
  if (!/^\*/m.test(r.stdout)) return { backend, family, ruleset: { family, format: 'save', tables: new Map(), warnings: [], lineCount: 0 } };
  return { backend, family, ruleset: parseSave(r.stdout, { source: cmd, family }) };
}

export function kubeChains(rs: Ruleset): string[] {
  const out: string[] = [];
  for (const t of rs.tables.values()) for (const c of t.chains.values()) if (c.name.startsWith('KUBE-')) out.push(`${t.name}/${c.name}`);
  return out;
}

function chain(rs: Ruleset, table: string, name: string): Chain | undefined {
  return rs.tables.get(table as never)?.chains.get(name);
}

/** The restore-file form of a jump rule's arguments, for matching iptables-save output. */
function jumpSpec(j: JumpRule): string {
  return j.args.map((a) => (/[\s"]/.test(a) ? `"${a.replaceAll('"', '\\"')}"` : a)).join(' ');
}

function cmdFor(family: 4 | 6, backend: Backend): string {
  return `${family === 6 ? 'ip6tables' : 'iptables'}-${backend}`;
}

function shellQuote(a: string): string {
  return /^[A-Za-z0-9_./:,=+-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}

export interface RuleFacts {
  live: LiveRules;
  /** The other backend's view of the same family, when it could be read. */
  other?: LiveRules;
  /** The jump rules kproxy keeps in the built-in chains (from the renderer). */
  jumps: JumpRule[];
}

export function ruleChecks(f: RuleFacts): CheckResult[] {
  const { live, other } = f;
  const fam = `IPv${live.family}`;
  const rs = live.ruleset;
  const cmd = cmdFor(live.family, live.backend);
  const results: CheckResult[] = [];

  // Base jumps: present and ahead of every foreign rule in their chain.
  const missing: string[] = [];
  const late: string[] = [];
  const fixes: string[] = [];
  for (const j of f.jumps) {
    const c = chain(rs, j.table, j.chain);
    const spec = jumpSpec(j);
    const idx = c ? c.rules.findIndex((r) => r.spec === `-A ${j.chain} ${spec}`) : -1;
    if (idx < 0) {
      missing.push(`${j.table} ${j.chain}: -A ${j.chain} ${spec}`);
      fixes.push(`${cmd} -t ${j.table} -I ${j.chain} ${j.args.map(shellQuote).join(' ')}`);
      continue;
    }
    const foreign = c!.rules.slice(0, idx).find((r) => !/-j KUBE-/.test(r.spec));
    if (foreign) late.push(`${j.table} ${j.chain}: "${foreign.spec}" (line ${foreign.line}) comes before the jump to ${j.args.at(-1)}`);
  }
  const jumpTitle = `${fam} jump rules from the built-in chains`;
  if (missing.length)
    results.push({
      id: `rules.jumps.ipv${live.family}`,
      title: jumpTitle,
      status: 'fail',
      evidence: [`backend ${live.backend}; missing:`, ...missing],
      fix: fixes.join(' && '),
    });
  else if (late.length)
    results.push({ id: `rules.jumps.ipv${live.family}`, title: jumpTitle, status: 'warn', evidence: ['foreign rules run first and may accept or drop Service traffic:', ...late] });
  else results.push({ id: `rules.jumps.ipv${live.family}`, title: jumpTitle, status: 'ok', evidence: [`${f.jumps.length} jump rules in place (${live.backend} backend)`] });

  // Canary chains: their absence means something flushed the tables behind the agent's back.
  const noCanary = ['mangle', 'nat', 'filter'].filter((t) => !chain(rs, t, 'KUBE-PROXY-CANARY'));
  results.push(
    noCanary.length
      ? {
          id: `rules.canary.ipv${live.family}`,
          title: `${fam} canary chains`,
          status: 'warn',
          evidence: [`KUBE-PROXY-CANARY missing from: ${noCanary.join(', ')}`, 'a table was flushed; a running agent re-programs it within one sync period'],
          fix: noCanary.map((t) => `${cmd} -t ${t} -N KUBE-PROXY-CANARY`).join(' && '),
        }
      : { id: `rules.canary.ipv${live.family}`, title: `${fam} canary chains`, status: 'ok', evidence: ['KUBE-PROXY-CANARY in mangle, nat and filter'] },
  );

  // Split brain: KUBE- chains in both backends.
  if (other) {
    const theirs = kubeChains(other.ruleset);
    if (theirs.length && kubeChains(rs).length) {
      results.push({
        id: `rules.backends.ipv${live.family}`,
        title: `${fam} rules in one iptables backend only`,
        status: 'fail',
        evidence: [
          `kproxy's rules are in the ${live.backend} backend, but the ${other.backend} backend also holds ${theirs.length} KUBE- chain(s): ${theirs.slice(0, 5).join(', ')}${theirs.length > 5 ? ', …' : ''}`,
          "both backends' rules run: stale Service rules in the other one still catch traffic",
        ],
        fix: `kproxy run --cleanup --iptables-backend ${other.backend}`,
      });
    } else {
      results.push({ id: `rules.backends.ipv${live.family}`, title: `${fam} rules in one iptables backend only`, status: 'ok', evidence: [`no KUBE- chains in the ${other.backend} backend`] });
    }
  }

  // FORWARD policy DROP is fine only while KUBE-FORWARD accepts Service traffic.
  const fwd = chain(rs, 'filter', 'FORWARD');
  if (fwd?.policy === 'DROP') {
    const hasJump = fwd.rules.some((r) => r.target?.kind === 'jump' && r.target.chain === 'KUBE-FORWARD');
    const kf = chain(rs, 'filter', 'KUBE-FORWARD');
    const accepts = kf?.rules.some((r) => r.target?.kind === 'ACCEPT') ?? false;
    if (!hasJump || !accepts)
      results.push({
        id: `rules.forward_policy.ipv${live.family}`,
        title: `${fam} FORWARD policy`,
        status: 'fail',
        evidence: [
          'filter FORWARD policy is DROP',
          !hasJump ? 'no jump to KUBE-FORWARD in FORWARD' : 'KUBE-FORWARD has no ACCEPT rules',
          'NodePort traffic DNATed to a pod or hostNetwork endpoint on another node is dropped (seed 001 §4)',
        ],
        fix: `${cmd} -P FORWARD ACCEPT`,
      });
    else
      results.push({ id: `rules.forward_policy.ipv${live.family}`, title: `${fam} FORWARD policy`, status: 'ok', evidence: ['FORWARD policy DROP, and KUBE-FORWARD accepts marked and established traffic'] });
  } else {
    results.push({ id: `rules.forward_policy.ipv${live.family}`, title: `${fam} FORWARD policy`, status: 'ok', evidence: [`filter FORWARD policy ${fwd?.policy ?? 'ACCEPT'}`] });
  }

  // Firewall daemons whose chains come before ours in INPUT/FORWARD.
  const daemon = /^(ufw-|ufw6-|INPUT_direct|FORWARD_direct|INPUT_ZONES|FORWARD_IN_ZONES|FWDI_|IN_)/;
  const ahead: string[] = [];
  for (const name of ['INPUT', 'FORWARD']) {
    const c = chain(rs, 'filter', name);
    if (!c) continue;
    for (const r of c.rules) {
      if (r.target?.kind === 'jump' && r.target.chain.startsWith('KUBE-')) break;
      if ((r.target?.kind === 'jump' || r.target?.kind === 'goto') && daemon.test(r.target.chain)) ahead.push(`filter ${name} line ${r.line}: ${r.spec}`);
    }
  }
  results.push(
    ahead.length
      ? {
          id: `rules.firewall_daemon.ipv${live.family}`,
          title: `${fam} firewall daemon rules`,
          status: 'warn',
          evidence: ['a firewall daemon (firewalld/ufw) filters before kproxy\'s rules:', ...ahead],
          fix: 'allow the pod and service CIDRs in the firewall (firewall-cmd --permanent --zone=trusted --add-source=<pod CIDR>; ufw allow from <pod CIDR>), or stop the daemon (systemctl disable --now firewalld)',
        }
      : { id: `rules.firewall_daemon.ipv${live.family}`, title: `${fam} firewall daemon rules`, status: 'ok', evidence: ['no firewalld/ufw chains ahead of kproxy\'s'] },
  );
  return results;
}
