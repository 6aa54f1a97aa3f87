// Drift: the node's live nat rules against what `render` gives for the
// current cluster state, named service by service. Rule text is compared
// with the same loose key the agent uses to read the kernel back, so
// iptables-save's re-printing (/32 masks, "-m tcp", 11-decimal
// probabilities) is not mistaken for drift.
import type { IptablesRuleset } from '../dataplane/iptables/model.js';
import { isServiceChainName } from '../dataplane/iptables/chain-names.js';
import { looseKey } from '../dataplane/iptables/sync-save.js';
import type { CheckResult } from './check.js';

/** Live chains of one table: name → rule lines ("-A CHAIN …"). */
export type LiveChains = Map<string, string[]>;

function serviceOfChain(rules: string[]): string | undefined {
  for (const r of rules) {
    const m = /--comment (?:"([^"]+)"|(\S+))/.exec(r);
    if (m) return (m[1] ?? m[2])!.split(' ')[0];
  }
  return undefined;
}

function jumpTargets(chains: LiveChains): Set<string> {
  const out = new Set<string>();
  for (const rules of chains.values())
    for (const r of rules) {
      const m = / -[jg] (\S+)/.exec(r);
      if (m) out.add(m[1]!);
    }
  return out;
}

export function driftChecks(rs: IptablesRuleset, liveNat: LiveChains, table = 'nat'): CheckResult[] {
  const fam = rs.family;
  const id = `drift.${fam.toLowerCase()}`;
  const problems: string[] = [];
  const fixes: string[] = [];
  const cmd = fam === 'IPv6' ? 'ip6tables' : 'iptables';
  const expected = new Set<string>();
  const liveServicesKeys = new Set((liveNat.get('KUBE-SERVICES') ?? []).concat(liveNat.get('KUBE-NODEPORTS') ?? []).map(looseKey));
  let resync = false;

  for (const sp of rs.services) {
    const issues: string[] = [];
    for (const [name, rules] of sp.chains) {
      expected.add(name);
      const live = liveNat.get(name);
      if (!live) {
        issues.push(`chain ${name} is missing`);
        continue;
      }
      const want = rules.map(looseKey);
      const have = live.map(looseKey);
      if (want.length !== have.length || want.some((k, i) => k !== have[i])) {
        const gone = rules.filter((r) => !have.includes(looseKey(r)));
        const extra = live.filter((r) => !want.includes(looseKey(r)));
        issues.push(
          `chain ${name} differs: ${gone.length} rule(s) missing${gone[0] ? ` (e.g. ${gone[0]})` : ''}, ${extra.length} unexpected${extra[0] ? ` (e.g. ${extra[0]})` : ''}`,
        );
      }
    }
    for (const chain of ['KUBE-SERVICES', 'KUBE-NODEPORTS'])
      for (const r of sp.shared.nat.get(chain) ?? []) if (!liveServicesKeys.has(looseKey(r))) issues.push(`missing in ${chain}: ${r}`);
    if (issues.length) {
      resync = true;
      problems.push(`service ${sp.key}:`, ...issues.map((i) => `  ${i}`));
    }
  }

  // Per-service chains the current state does not produce: endpoints or services that are gone.
  const referenced = jumpTargets(liveNat);
  for (const [name, rules] of liveNat) {
    if (!isServiceChainName(name) || expected.has(name)) continue;
    const svc = serviceOfChain(rules) ?? 'unknown service';
    const refs = referenced.has(name) ? 'still referenced' : 'referenced by no rule';
    problems.push(`stale chain ${name} (${svc}), ${refs}: its endpoint or service no longer exists`);
    fixes.push(`${cmd} -t ${table} -F ${name} && ${cmd} -t ${table} -X ${name}`);
  }
  if (!problems.length)
    return [{ id, title: `${fam} rules match the cluster state`, status: 'ok', evidence: [`${rs.services.length} service port(s) programmed as rendered`] }];
  const fix = [
    ...(resync ? ['restart the agent so it runs a full sync (kubectl -n kube-system delete pod -l k8s-app=kproxy --field-selector spec.nodeName=<node>)'] : []),
    ...fixes,
  ].join(' && ');
  return [{ id, title: `${fam} rules match the cluster state`, status: 'fail', evidence: problems, fix }];
}
