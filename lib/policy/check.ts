// --check-config: every problem in a policy (not just the first), warnings
// about rules that cannot do what they seem to, and a one-line summary.

import type { Accounts } from './accounts.ts';
import { POLICY_PATH, readPolicy, type LoadOptions } from './load.ts';
import { formatProblem, formatWhere, type AccountRef, type Policy, type Rule } from './types.ts';

export interface CheckOptions extends LoadOptions {
  /** When given, every user and group name is looked up and unknown ones are warned about. */
  accounts?: Accounts;
}

export interface CheckReport {
  /** True when a helper would use this policy (no errors; warnings allowed). */
  ok: boolean;
  path: string;
  files: string[];
  /** "file:line: cause; fix", one per problem. */
  errors: string[];
  warnings: string[];
  /** One line: what the policy holds, or that it is refused. */
  summary: string;
  policy: Policy | undefined;
}

function lookupWarnings(policy: Policy, accounts: Accounts): string[] {
  const warnings: string[] = [];
  const check = (rule: Rule, kind: 'user' | 'group', ref: AccountRef): void => {
    if (ref.kind !== 'name') return;
    try {
      const id = kind === 'user' ? accounts.uidOf(ref.name) : accounts.gidOf(ref.name);
      if (id === undefined) warnings.push(`${formatWhere(rule.where)}: there is no ${kind} named ${ref.name}, so this part of the rule matches no one`);
    } catch (err) {
      warnings.push(`${formatWhere(rule.where)}: cannot look up ${kind} ${ref.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  for (const rule of policy.rules) {
    const s = rule.subject;
    if (s.kind !== 'everyone') for (const ref of s.refs) check(rule, s.kind, ref);
  }
  return warnings;
}

function ruleWarnings(policy: Policy): string[] {
  const warnings: string[] = [];
  const allows = policy.rules.filter((r) => r.action === 'allow');
  const denyAll = policy.rules.find((r) => r.action === 'deny' && r.subject.kind === 'everyone' && r.target.kind === 'all' && !r.modes && !r.netns);
  if (denyAll && allows.length > 0) {
    warnings.push(`${formatWhere(denyAll.where)}: this denies everything to everyone, and a deny always beats an allow, so none of the ${allows.length} allow rules can take effect`);
  }
  if (allows.length === 0) warnings.push('there are no allow rules, so only root may use the helpers');
  for (const r of allows) {
    const modes = r.modes ?? [];
    if (r.subject.kind === 'everyone' && modes.includes('passthru') && r.target.kind !== 'pool') {
      warnings.push(`${formatWhere(r.where)}: lets every user put a device in passthru mode, which gives a guest all of that device's traffic`);
    }
  }
  return warnings;
}

/** Reads and checks a policy; never throws for a bad policy. Ownership problems are errors but do not stop the grammar check. */
export function checkConfig(path: string = POLICY_PATH, options: CheckOptions = {}): CheckReport {
  const r = readPolicy(path, { ...options, ownership: options.ownership ?? 'report' });
  const errors = r.problems.map((p) => `${formatProblem(p)}; ${p.fix}`);
  const warnings: string[] = [];
  if (r.policy) {
    warnings.push(...ruleWarnings(r.policy));
    if (options.accounts) warnings.push(...lookupWarnings(r.policy, options.accounts));
  }
  let summary: string;
  if (r.policy) {
    const p = r.policy;
    const allow = p.rules.filter((x) => x.action === 'allow').length;
    const deny = p.rules.length - allow;
    summary = `${path}: ok: ${count(r.files.length, 'file')}, ${count(p.networks.size, 'network')}, ${count(p.pools.size, 'pool')}, ${count(allow, 'allow rule')}, ${count(deny, 'deny rule')}`;
  } else {
    summary = `${path}: refused: ${count(errors.length, 'error')}; while it is refused the helpers allow no one but root`;
  }
  return { ok: r.policy !== undefined, path, files: r.files, errors, warnings, summary, policy: r.policy };
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** The report as --check-config prints it: errors, warnings, then the summary. */
export function formatCheckReport(report: CheckReport): string {
  return [
    ...report.errors.map((e) => `error: ${e}`),
    ...report.warnings.map((w) => `warning: ${w}`),
    report.summary,
  ].map((l) => l.replace(/[\x00-\x1f\x7f]/g, '?') + '\n').join('');
}
