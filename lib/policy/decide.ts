// What the policy says about one request. Pure (names are resolved through
// the injected Accounts). Nothing is allowed by default; a matching deny rule
// beats every allow rule; the real uid 0 may do anything.
//
// Rules are about what would be created, not about how it was asked for: a
// network is a name for one device in one mode and a pool a name for a set of
// devices, so "deny dev eth0" also refuses --network=vepanet when vepanet is
// eth0, and "allow network vepanet" also allows --dev=eth0 --mode=vepa.
//
// Devices are matched by the canonical name of the device the caller
// resolved (an ifindex). Allow rules match that name only; deny rules also
// match the device's alternative names, so neither an alternative name nor a
// rename can slip past a rule.

import type { ModeName } from '../modes.ts';
import type { Accounts } from './accounts.ts';
import type { NetnsIdentity } from './netns.ts';
import { ALL_MODES, DEFAULT_LINK_LIMIT, MAX_QUEUES, MAX_VLAN_ID, MIN_VLAN_ID } from './syntax.ts';
import { formatWhere, type AccountRef, type LimitDef, type NetnsSpec, type NetworkDef, type Policy, type PoolDef, type Rule, type Subject, type Where } from './types.ts';
import { auditField } from '../audit.ts';
import { HelperError } from '../errors.ts';

/** The process asking: getuid(), getgid(), getgroups(). `name` is for messages only. */
export interface Caller {
  uid: number;
  gid: number;
  groups: readonly number[];
  name?: string;
}

/** A resolved device: its canonical name (IFLA_IFNAME) and its alternative names (IFLA_ALT_IFNAME). */
export interface DeviceNames {
  name: string;
  altNames: readonly string[];
}

/** How the caller asked for the device: directly, by network name or by pool name. */
export type Via = { kind: 'dev' } | { kind: 'network'; name: string } | { kind: 'pool'; name: string };

export type VhostRequest = 'on' | 'try' | 'off';

export interface PolicyRequest {
  caller: Caller;
  /** The helper's name, for messages and the audit line. */
  program: string;
  via: Via;
  /** The device the macvtap would sit on, as resolved by the caller. */
  dev: DeviceNames;
  /** The SR-IOV physical function of `dev` when it is a virtual function, else null. */
  pf: DeviceNames | null;
  mode: ModeName;
  queues: number;
  vhost: VhostRequest;
  /** A persistent link: kept until released, not tied to a process (false when absent). */
  persistent?: boolean;
  /** IFF_ALLMULTI on the macvtap: 'on' or 'off' as asked, absent for the default (on unless the rule says allmulti off). */
  allmulti?: 'on' | 'off';
  /** The 802.1Q VLAN the macvtap would sit on (the network's, via a network), absent for untagged use. */
  vlan?: number;
  netns: NetnsIdentity;
}

export type Decision =
  | { allow: true; rule: Rule | undefined; vhost: boolean; allmulti: boolean; reason: string }
  | { allow: false; rule: Rule | undefined; reason: string; fix: string };

/** Modes an allow rule permits when it gives none: a pool is for passthru; passthru on any other device must be named. */
export function defaultModes(rule: Rule): readonly ModeName[] {
  if (rule.action === 'deny') return ALL_MODES;
  return rule.target.kind === 'pool' ? ['passthru'] : ['vepa', 'private', 'bridge'];
}

/** Namespaces a rule covers when it gives none: allow, only the host's; deny, every one. */
function netnsCovers(rule: Rule, ns: NetnsIdentity): boolean {
  const spec: NetnsSpec | undefined = rule.netns ?? (rule.action === 'allow' ? { host: true, names: [] } : undefined);
  if (!spec) return true;
  return (spec.host && ns.isInitial) || spec.names.some((n) => ns.names.includes(n));
}

function namesOf(d: DeviceNames, action: Rule['action']): readonly string[] {
  return action === 'deny' ? [d.name, ...d.altNames] : [d.name];
}

function inPool(pool: PoolDef, req: PolicyRequest, action: Rule['action']): boolean {
  if (pool.members.kind === 'devs') {
    const devs = pool.members.devs;
    return namesOf(req.dev, action).some((n) => devs.includes(n));
  }
  const pf = pool.members.pf;
  return req.pf !== null && namesOf(req.pf, action).includes(pf);
}

/** Does the rule's target cover the request's device (and, for a network, its mode)? */
function targetCovers(policy: Policy, rule: Rule, req: PolicyRequest): boolean {
  const t = rule.target;
  switch (t.kind) {
    case 'all':
      return true;
    case 'dev': {
      const names = namesOf(req.dev, rule.action);
      return t.names.some((n) => names.includes(n));
    }
    case 'network': {
      const names = namesOf(req.dev, rule.action);
      return t.names.some((n) => {
        const net = policy.networks.get(n);
        if (net === undefined || net.mode !== req.mode || !names.includes(net.dev)) return false;
        // A VLAN network is that VLAN only; an untagged one allows untagged use, and denies the device whatever the VLAN.
        return net.vlan === undefined ? rule.action === 'deny' || req.vlan === undefined : net.vlan === req.vlan;
      });
    }
    case 'pool':
      return t.names.some((n) => {
        const pool = policy.pools.get(n);
        return pool !== undefined && inPool(pool, req, rule.action);
      });
  }
}

type SubjectMatch = { match: boolean } | { error: string };

function accountMatches(ref: AccountRef, kind: 'user' | 'group', ids: readonly number[], accounts: Accounts): SubjectMatch {
  if (ref.kind === 'id') return { match: ids.includes(ref.id) };
  let id: number | undefined;
  try {
    id = kind === 'user' ? accounts.uidOf(ref.name) : accounts.gidOf(ref.name);
  } catch (err) {
    return { error: `cannot look up ${kind} ${ref.name}: ${err instanceof Error ? err.message : String(err)}` };
  }
  return { match: id !== undefined && ids.includes(id) };
}

function subjectMatches(rule: { subject: Subject }, caller: Caller, accounts: Accounts): SubjectMatch {
  const s = rule.subject;
  if (s.kind === 'everyone') return { match: true };
  const ids = s.kind === 'user' ? [caller.uid] : [caller.gid, ...caller.groups];
  let error: string | undefined;
  for (const ref of s.refs) {
    const m = accountMatches(ref, s.kind, ids, accounts);
    if ('error' in m) error ??= m.error;
    else if (m.match) return m;
  }
  return error ? { error } : { match: false };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** 1,2,3,7 as "1-3,7". */
function describeIds(ids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j]! + 1) j++;
    parts.push(i === j ? String(ids[i]) : `${ids[i]}-${ids[j]}`);
    i = j;
  }
  return parts.join(',');
}

function describeNetnsSpec(rule: Rule): string {
  const spec = rule.netns ?? { host: true, names: [] };
  const parts = [...(spec.host ? ["the host's network namespace"] : []), ...spec.names.map((n) => `network namespace ${n}`)];
  return parts.join(' or ');
}

/** Why an allow rule whose subject and target match still does not allow the request, or undefined. */
function qualifierMismatch(rule: Rule, req: PolicyRequest): string | undefined {
  const at = `the rule at ${formatWhere(rule.where)}`;
  if (rule.target.kind !== 'network') {
    const modes = rule.modes ?? defaultModes(rule);
    if (!modes.includes(req.mode)) return `${at} allows it only in mode ${modes.join(', ')}`;
  }
  if (req.queues > rule.queues) return `${at} allows at most ${plural(rule.queues, 'queue')}`;
  if (req.vhost === 'on' && !rule.vhost) return `${at} does not allow vhost-net`;
  if (req.persistent && !rule.persistent) return `${at} does not allow persistent links`;
  if (req.allmulti === 'on' && !rule.allmulti) return `${at} turns allmulticast off`;
  // A rule about a network grants that network's VLAN; any other grants the ids it lists.
  // A rule with vlan IDS grants those VLANs only, not the untagged device: an
  // administrator who gives a user VLAN 100 has not given them the native LAN.
  if (rule.target.kind !== 'network') {
    if (req.vlan !== undefined && !rule.vlans.includes(req.vlan)) return rule.vlans.length ? `${at} allows only VLAN ${describeIds(rule.vlans)}` : `${at} allows no VLAN`;
    if (req.vlan === undefined && rule.vlans.length) return `${at} allows only VLAN ${describeIds(rule.vlans)}, not untagged use`;
  }
  if (!netnsCovers(rule, req.netns)) return `${at} allows it only in ${describeNetnsSpec(rule)}`;
  return undefined;
}

export function describeCaller(c: Caller): string {
  return c.name ? `${c.name} (uid ${c.uid})` : `uid ${c.uid}`;
}

export function describeNetns(ns: NetnsIdentity): string {
  if (ns.isInitial) return "the host's network namespace";
  const [first, ...rest] = ns.names;
  if (first !== undefined) return `network namespace ${first}${rest.length ? ` (also named ${rest.join(', ')})` : ''}`;
  return "a network namespace that is neither the host's nor named in /run/netns";
}

/** "eth0 in mode vepa with 4 queues and vhost-net in network namespace lab1". */
export function describeRequest(req: PolicyRequest): string {
  let what = `${req.dev.name}${req.vlan !== undefined ? ` VLAN ${req.vlan}` : ''} in mode ${req.mode}`;
  if (req.via.kind === 'network') what = `network ${req.via.name} (${what})`;
  else if (req.via.kind === 'pool') what = `${req.dev.name} from pool ${req.via.name} in mode ${req.mode}`;
  const extras = [...(req.queues > 1 ? [`${req.queues} queues`] : []), ...(req.vhost === 'on' ? ['vhost-net'] : []), ...(req.persistent ? ['a persistent link'] : [])];
  if (extras.length > 0) what += ` with ${extras.join(' and ')}`;
  if (!req.netns.isInitial) what += ` in ${describeNetns(req.netns)}`;
  return what;
}

const ASK_ADMIN = 'ask an administrator to allow it in the policy (see net-helper.conf(5))';

function deny(rule: Rule | undefined, reason: string, fix = ASK_ADMIN): Decision {
  return { allow: false, rule, reason, fix };
}

/** The request is internally consistent (a caller bug otherwise, refused all the same). */
function requestProblem(req: PolicyRequest): string | undefined {
  if (!Number.isInteger(req.queues) || req.queues < 1 || req.queues > MAX_QUEUES) return `${req.queues} queues is not from 1 to ${MAX_QUEUES}`;
  if (!ALL_MODES.includes(req.mode)) return `unknown mode ${JSON.stringify(req.mode)}`;
  if (!['on', 'try', 'off'].includes(req.vhost)) return `unknown vhost request ${JSON.stringify(req.vhost)}`;
  if (req.allmulti !== undefined && req.allmulti !== 'on' && req.allmulti !== 'off') return `unknown allmulti request ${JSON.stringify(req.allmulti)}`;
  if (req.vlan !== undefined && (!Number.isInteger(req.vlan) || req.vlan < MIN_VLAN_ID || req.vlan > MAX_VLAN_ID)) return `VLAN ${req.vlan} is not from ${MIN_VLAN_ID} to ${MAX_VLAN_ID}`;
  for (const id of [req.caller.uid, req.caller.gid, ...req.caller.groups]) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) return `invalid id ${id}`;
  }
  return undefined;
}

/** The network called `name`, or a HelperError saying there is none. For everyone, root included. */
export function resolveNetwork(policy: Policy, name: string): NetworkDef {
  const net = policy.networks.get(name);
  if (!net) throw new HelperError(`no network named ${name} is defined in the policy`, networkFix(policy));
  return net;
}

/** The pool called `name`, or a HelperError saying there is none. */
export function resolvePool(policy: Policy, name: string): PoolDef {
  const pool = policy.pools.get(name);
  if (!pool) throw new HelperError(`no pool named ${name} is defined in the policy`, poolFix(policy));
  return pool;
}

function networkFix(policy: Policy): string {
  const names = [...policy.networks.keys()];
  return names.length ? `the networks defined are: ${names.join(', ')}` : 'the policy defines no networks; name a device with --dev';
}

function poolFix(policy: Policy): string {
  const names = [...policy.pools.keys()];
  return names.length ? `the pools defined are: ${names.join(', ')}` : 'the policy defines no pools';
}

/** The network or pool the request names exists and is what the request says it is. */
function viaProblem(policy: Policy, req: PolicyRequest): { reason: string; fix: string } | undefined {
  if (req.via.kind === 'network') {
    const net = policy.networks.get(req.via.name);
    if (!net) return { reason: `no network named ${req.via.name} is defined in the policy`, fix: networkFix(policy) };
    if (net.dev !== req.dev.name) {
      const alt = req.dev.altNames.includes(net.dev);
      return {
        reason: `network ${net.name} (${formatWhere(net.where)}) is device ${net.dev}, but the device found is ${req.dev.name}${alt ? ` (${net.dev} is one of its alternative names)` : ''}`,
        fix: alt ? `define the network with the device's name, ${req.dev.name}` : 'check the network definition',
      };
    }
    if (net.mode !== req.mode) return { reason: `network ${net.name} (${formatWhere(net.where)}) is mode ${net.mode}, not ${req.mode}`, fix: `use the helper that makes ${net.mode} macvtaps` };
    if (net.vlan !== req.vlan) {
      return { reason: `network ${net.name} (${formatWhere(net.where)}) is ${net.vlan === undefined ? 'untagged' : `VLAN ${net.vlan}`}, but the request is ${req.vlan === undefined ? 'untagged' : `for VLAN ${req.vlan}`}`, fix: 'leave --vlan out with --network: the network fixes it' };
    }
  } else if (req.via.kind === 'pool') {
    const pool = policy.pools.get(req.via.name);
    if (!pool) return { reason: `no pool named ${req.via.name} is defined in the policy`, fix: poolFix(policy) };
    if (!inPool(pool, req, 'allow')) return { reason: `${req.dev.name} is not in pool ${pool.name} (${formatWhere(pool.where)})`, fix: 'choose a device from the pool' };
  }
  return undefined;
}

/** How many links a user may hold at once, and which statement says so (undefined: the built-in default). */
export interface LinkLimit {
  links: number;
  where: Where | undefined;
}

const SPECIFICITY: Record<Subject['kind'], number> = { user: 2, group: 1, everyone: 0 };

/**
 * The limit on links held at once that applies to `caller`; undefined for
 * root, who has none. The most specific statement that names the caller
 * wins (user, then group, then everyone); among equally specific ones, the
 * largest, so that a limit raised for one of a user's groups holds for them.
 * A statement whose names cannot be looked up does not apply. Without any,
 * DEFAULT_LINK_LIMIT.
 */
export function linkLimit(policy: Policy, caller: Caller, accounts: Accounts): LinkLimit | undefined {
  if (caller.uid === 0) return undefined;
  let best: LimitDef | undefined;
  for (const def of policy.limits) {
    const m = subjectMatches(def, caller, accounts);
    if ('error' in m || !m.match) continue;
    const rank = SPECIFICITY[def.subject.kind];
    const bestRank = best ? SPECIFICITY[best.subject.kind] : -1;
    if (rank > bestRank || (rank === bestRank && def.links > best!.links)) best = def;
  }
  return best ? { links: best.links, where: best.where } : { links: DEFAULT_LINK_LIMIT, where: undefined };
}

/** Where a limit comes from, for messages: "the limit at FILE:LINE" or "the built-in default". */
export function describeLimit(limit: LinkLimit): string {
  return limit.where ? `the limit at ${formatWhere(limit.where)}` : 'the built-in default (no limit statement in the policy covers you)';
}

/**
 * Decides a request. Deny rules are checked first and any match refuses;
 * then the first allow rule (in file order) that covers everything allows.
 * With vhost 'try', an allow rule that grants vhost is preferred, and
 * `vhost` in the decision says whether vhost-net fds may be handed over.
 */
export function decide(policy: Policy, req: PolicyRequest, accounts: Accounts): Decision {
  const bad = requestProblem(req);
  if (bad) return deny(undefined, `invalid request: ${bad}`, 'this is a bug in the program that asked');
  const via = viaProblem(policy, req);
  if (via) return deny(undefined, via.reason, via.fix);
  const who = describeCaller(req.caller);
  const what = describeRequest(req);

  if (req.caller.uid === 0) return { allow: true, rule: undefined, vhost: req.vhost !== 'off', allmulti: req.allmulti !== 'off', reason: 'uid 0 may do anything' };

  for (const rule of policy.rules) {
    if (rule.action !== 'deny') continue;
    if (!targetCovers(policy, rule, req)) continue;
    if (rule.modes && !rule.modes.includes(req.mode)) continue;
    if (!netnsCovers(rule, req.netns)) continue;
    const s = subjectMatches(rule, req.caller, accounts);
    if ('error' in s) {
      return deny(rule, `refusing ${who} the use of ${what}: the deny rule at ${formatWhere(rule.where)} may apply, but ${s.error}`,
        'retry when user and group lookups work');
    }
    if (s.match) return deny(rule, `the policy denies ${who} the use of ${what} (deny rule at ${formatWhere(rule.where)})`);
  }

  let withoutVhost: Rule | undefined;
  let near: string | undefined;
  let lookupError: string | undefined;
  for (const rule of policy.rules) {
    if (rule.action !== 'allow') continue;
    if (!targetCovers(policy, rule, req)) continue;
    const s = subjectMatches(rule, req.caller, accounts);
    if ('error' in s) {
      lookupError ??= `${s.error} (rule at ${formatWhere(rule.where)})`;
      continue;
    }
    if (!s.match) continue;
    const mismatch = qualifierMismatch(rule, req);
    if (mismatch) {
      near ??= mismatch;
      continue;
    }
    const allmulti = req.allmulti !== 'off' && rule.allmulti;
    if (req.vhost === 'off') return { allow: true, rule, vhost: false, allmulti, reason: `allowed by the rule at ${formatWhere(rule.where)}` };
    if (rule.vhost) return { allow: true, rule, vhost: true, allmulti, reason: `allowed by the rule at ${formatWhere(rule.where)}` };
    withoutVhost ??= rule;
  }
  if (withoutVhost) {
    return { allow: true, rule: withoutVhost, vhost: false, allmulti: req.allmulti !== 'off' && withoutVhost.allmulti, reason: `allowed without vhost-net by the rule at ${formatWhere(withoutVhost.where)}` };
  }

  let reason = `no rule in the policy allows ${who} the use of ${what}`;
  if (near) reason += `; ${near}`;
  if (lookupError) reason += `; ${lookupError}`;
  if (!req.netns.isInitial && req.netns.notes.length > 0) reason += `; ${req.netns.notes.join('; ')}`;
  return deny(undefined, reason);
}

/** The refusal as the one-line error a helper prints (program name added by oneLine). */
export function denialError(decision: Decision & { allow: false }): HelperError {
  return new HelperError(decision.reason, decision.fix);
}

/** One key=value line for syslog: caller, program, device, mode, queues, vhost, result, rule or reason (lib/audit.ts auditField). */
export function auditLine(req: PolicyRequest, decision: Decision): string {
  const fields: string[] = [
    auditField('uid', String(req.caller.uid)),
    auditField('gid', String(req.caller.gid)),
    auditField('program', req.program),
    auditField('dev', req.dev.name, true),
    req.via.kind === 'dev' ? auditField('via', 'dev') : auditField('via', `${req.via.kind}:${req.via.name}`, true),
    auditField('mode', req.mode),
    auditField('queues', String(req.queues)),
    auditField('vhost', req.vhost),
    ...(req.persistent ? [auditField('persistent', '1')] : []),
    ...(req.vlan !== undefined ? [auditField('vlan', String(req.vlan))] : []),
    auditField('netns', req.netns.isInitial ? 'host' : req.netns.names.length ? req.netns.names.join(',') : 'other'),
    auditField('result', decision.allow ? 'allow' : 'deny'),
  ];
  if (decision.allow) fields.push(auditField('vhost_granted', decision.vhost ? '1' : '0'), auditField('allmulti', decision.allmulti ? '1' : '0'));
  if (decision.rule) fields.push(auditField('rule', formatWhere(decision.rule.where)));
  else if (decision.allow && req.caller.uid === 0) fields.push(auditField('rule', 'root'));
  if (!decision.allow) fields.push(auditField('reason', decision.reason));
  return fields.join(' ');
}
