// Who may have what: from the request (a device, a pool, the VFs of a PF, a
// policy network or pool) to the lower devices the caller may use, each
// resolved once to an ifindex and decided on by its canonical name.
//
// Every device is decided by lib/policy/decide.ts, root included (real uid 0
// may do anything there; root needs no policy file unless it names a policy
// network or pool, and is then decided against an empty one). Devices the
// kernel would not really use are refused here, before the policy: a
// macvlan-type lower device, because the kernel silently re-parents a
// macvtap made on one to *its* lower device, which the policy never saw; and
// a wireless one, on which a macvtap cannot work.
//
// Pure but for lookups: netlink GETLINK and sysfs reads, with no privilege.

import { existsSync } from 'node:fs';
import { logger } from '../log.ts';
import { HelperError, UsageError } from '../errors.ts';
import type { ModeName } from '../modes.ts';
import { getLinkByName, type Link } from '../netlink/link.ts';
import type { NetlinkSocket } from '../netlink/socket.ts';
import * as policy from '../policy/index.ts';
import type { Accounts } from '../policy/index.ts';
import { ifnameProblem } from '../names.ts';
import type { Identity } from '../privileges.ts';
import { listVirtualFunctions } from '../sriov.ts';
import type { VhostMode } from '../vhost.ts';
import { VLAN_GROUP } from './vlan.ts';
import type { CreateRequest } from './options.ts';
import type { HelperProgram } from './programs.ts';

const debug = logger('authorize');

export interface AuthorizeContext {
  program: HelperProgram;
  caller: Identity;
  /** The loaded policy; undefined only for root runs that need none. */
  policy: policy.Policy | undefined;
  accounts: Accounts;
  netns: policy.NetnsIdentity;
  sysClassNet: string;
}

/** One lower device the caller may use, with everything the run needs to know about that choice. */
export interface Candidate {
  /** The device, as the kernel described it when it was decided on; used by ifindex from now on. */
  lower: Link;
  /** The decision's audit line (key=value). */
  auditLine: string;
  /** The vhost mode to carry out: 'try' without a vhost grant becomes 'off'. */
  vhost: VhostMode;
  /** Whether the link gets IFF_ALLMULTI (the request and the rule agree on it). */
  allmulti: boolean;
  /** The 802.1Q VLAN of `lower` the macvtap goes on (lib/helper/vlan.ts), or undefined for `lower` itself. */
  vlan: number | undefined;
}

/** What was asked for, in the words messages use about a pool. */
export interface PoolSummary {
  /** How the pool is called in messages, with its verb: "pool a,b is", "the virtual functions of pf0 are". */
  description: string;
  /** Whether more than one device was asked for (a pool): then busy members are skipped, not errors. */
  isPool: boolean;
  /** Members that do not exist, that are not bound to a network driver, that cannot carry a macvtap (re-parented, wireless), that the policy refused. */
  missing: number;
  unusable: number;
  refused: number;
  denied: number;
}

export interface Authorization {
  /** The mode to create: the request's, or its network's. */
  mode: ModeName;
  /** The 802.1Q VLAN asked for: the request's, or its network's. */
  vlan: number | undefined;
  /** The allowed devices, in the order to try them. */
  candidates: readonly Candidate[];
  pool: PoolSummary;
  /** Audit lines of the refusals (pool members the policy or the checks here refused). */
  denials: readonly string[];
}

/** Refused: the error the caller sees, and the audit lines of every refusal. */
export class PolicyDenial extends HelperError {
  readonly auditLines: string[];
  constructor(reason: string, fix: string, auditLines: string[]) {
    super(reason, fix);
    this.name = 'PolicyDenial';
    this.auditLines = auditLines;
  }
}

interface Asked {
  names: string[];
  description: string;
  isPool: boolean;
  unusable: number;
  mode: ModeName;
  via: policy.Via;
  /** The PF whose VFs these are, when asked for by PF. */
  pf: string | undefined;
  /** The 802.1Q VLAN asked for (--vlan, or the network's). */
  vlan: number | undefined;
}

/** What root is decided against when it names no policy network or pool: nothing but decide()'s own "uid 0 may do anything". */
const EMPTY_POLICY: policy.Policy = { files: [], networks: new Map(), pools: new Map(), rules: [], limits: [] };

function requirePolicy(ctx: AuthorizeContext, what: string): policy.Policy {
  if (!ctx.policy) throw new HelperError(`${what} is defined in the policy, which was not loaded`, 'this is a bug: please report it');
  return ctx.policy;
}

/** What the request names, before any device is looked up. */
function whatIsAsked(req: CreateRequest, ctx: AuthorizeContext): Asked {
  const t = req.target;
  const base = { isPool: false, unusable: 0, mode: req.mode, via: { kind: 'dev' } as policy.Via, pf: undefined, vlan: req.vlan };
  switch (t.kind) {
    case 'dev':
      return { ...base, names: [t.name], description: `${t.name} is` };
    case 'pool':
      return { ...base, names: t.members, description: `pool ${t.members.join(',')} is`, isPool: true };
    case 'pf':
      return { ...base, ...vfsOf(t.name, ctx), isPool: true, pf: t.name };
    case 'br':
      // A network the policy defines takes precedence: that is what an administrator named it for.
      if (ctx.policy?.networks.has(t.name)) return whatIsAsked({ ...req, target: { kind: 'network', name: t.name } }, ctx);
      if (ifnameProblem(t.name)) {
        throw new HelperError(`--br=${t.name} names no network of the policy, and is not a device name (${ifnameProblem(t.name)})`, 'define the network in the policy, or give a device');
      }
      return { ...base, names: [t.name], description: `${t.name} is` };
    case 'network': {
      const net = policy.resolveNetwork(requirePolicy(ctx, `network ${t.name}`), t.name);
      if (!ctx.program.modes.includes(net.mode)) {
        throw new UsageError(`network ${t.name} is a ${net.mode} network, which ${ctx.program.name} does not make`,
          `use the helper for ${net.mode} mode, or another network`);
      }
      if (req.modeGiven && req.mode !== net.mode) {
        throw new UsageError(`--mode=${req.mode} contradicts network ${t.name}, which is ${net.mode}`, 'leave --mode out: the network sets it');
      }
      if (req.vlan !== undefined && req.vlan !== net.vlan) {
        throw new UsageError(`--vlan=${req.vlan} contradicts network ${t.name}, which is ${net.vlan === undefined ? 'untagged' : `VLAN ${net.vlan}`}`, 'leave --vlan out: the network sets it');
      }
      return { ...base, names: [net.dev], description: `${net.dev} is`, mode: net.mode, via: { kind: 'network', name: t.name }, vlan: net.vlan };
    }
    case 'named-pool': {
      const pool = policy.resolvePool(requirePolicy(ctx, `pool ${t.name}`), t.name);
      const via = { kind: 'pool' as const, name: t.name };
      if (pool.members.kind === 'pf') return { ...base, ...vfsOf(pool.members.pf, ctx), isPool: true, via, pf: pool.members.pf };
      return { ...base, names: [...pool.members.devs], description: `pool ${t.name} is`, isPool: true, via };
    }
  }
}

function vfsOf(pf: string, ctx: AuthorizeContext): { names: string[]; description: string; unusable: number } {
  const vfs = listVirtualFunctions(pf, ctx.sysClassNet);
  const names = vfs.flatMap((vf) => (vf.ifname ? [vf.ifname] : []));
  return { names, description: `the virtual functions of ${pf} are`, unusable: vfs.length - names.length };
}

/** Kinds the kernel re-parents: a macvtap created on one of these ends up on the device below it (drivers/net/macvlan.c). */
export const REPARENTED_KINDS: ReadonlySet<string> = new Set(['macvlan', 'macvtap']);
/** Kinds that cannot carry a macvlan at all but that a rule might name by mistake; refused with the same clarity. */
const STACKED_KINDS: ReadonlySet<string> = new Set(['ipvlan', 'ipvtap']);

/** Why the kernel would not put the macvtap on `lower` itself, or why it cannot work there; undefined when it can. */
export function lowerDeviceProblem(lower: Link, sysClassNet: string): { reason: string; fix: string } | undefined {
  if (lower.kind === 'vlan' && lower.group === VLAN_GROUP) {
    // Decided as the device and VLAN it is, never by a name that appears and goes with use.
    return { reason: `${lower.name} is a VLAN link the helpers made`, fix: 'ask for the VLAN of the real device: --dev=IFNAME --vlan=ID' };
  }
  if (lower.kind && REPARENTED_KINDS.has(lower.kind)) {
    return {
      reason: `${lower.name} is a ${lower.kind} device: the kernel would put the macvtap on the device below it instead, which is not what the policy decided on`,
      fix: 'name the real lower device (ip -d link show shows it after "@")',
    };
  }
  if (lower.kind && STACKED_KINDS.has(lower.kind)) {
    return { reason: `${lower.name} is an ${lower.kind} device, which cannot carry a macvtap`, fix: 'name the real lower device' };
  }
  if (existsSync(`${sysClassNet}/${lower.name}/wireless`) || existsSync(`${sysClassNet}/${lower.name}/phy80211`)) {
    return {
      reason: `${lower.name} is a wireless device: a macvtap cannot work there, because the access point drops frames from MAC addresses that have not associated with it`,
      fix: 'use a wired device, or give the guest a routed or NATed network (a tap on a bridge with routing, or QEMU user networking)',
    };
  }
  return undefined;
}

/** Resolves and decides. Throws the refusal when nothing the caller asked for is allowed. */
export function authorize(nl: NetlinkSocket, req: CreateRequest, ctx: AuthorizeContext): Authorization {
  const asked = whatIsAsked(req, ctx);
  if (asked.vlan !== undefined && asked.mode === 'passthru') {
    throw new UsageError(`a VLAN cannot be used in passthru mode: the macvtap would take the whole VLAN link ${asked.vlan} from the host and every other user`,
      'use vepa, private or bridge mode for a VLAN');
  }
  const rules = ctx.policy ?? EMPTY_POLICY;
  const pfLink = asked.pf ? getLinkByName(nl, asked.pf) : undefined;
  const candidates: Candidate[] = [];
  const denials: string[] = [];
  let missing = 0;
  let refused = 0;
  let firstRefusal: { reason: string; fix: string } | undefined;

  for (const name of asked.names) {
    const lower = getLinkByName(nl, name);
    if (!lower) {
      missing++;
      continue;
    }
    const request: policy.PolicyRequest = {
      caller: { uid: ctx.caller.uid, gid: ctx.caller.gid, groups: ctx.caller.groups },
      program: ctx.program.name,
      via: asked.via,
      dev: { name: lower.name, altNames: lower.altNames },
      pf: pfLink ? { name: pfLink.name, altNames: pfLink.altNames } : null,
      mode: asked.mode,
      queues: req.queues,
      vhost: req.vhost,
      persistent: req.output.kind === 'persistent',
      ...(req.allmulti ? { allmulti: req.allmulti } : {}),
      ...(asked.vlan !== undefined ? { vlan: asked.vlan } : {}),
      netns: ctx.netns,
    };
    const problem = lowerDeviceProblem(lower, ctx.sysClassNet);
    if (problem) {
      refused++;
      firstRefusal ??= problem;
      denials.push(policy.auditLine(request, { allow: false, rule: undefined, reason: problem.reason, fix: problem.fix }));
      continue;
    }
    const d = policy.decide(rules, request, ctx.accounts);
    const line = policy.auditLine(request, d);
    debug('%s: %s', lower.name, line);
    if (!d.allow) {
      firstRefusal ??= d;
      denials.push(line);
      continue;
    }
    candidates.push({ lower, auditLine: line, vhost: req.vhost === 'try' && !d.vhost ? 'off' : req.vhost, allmulti: d.allmulti, vlan: asked.vlan });
  }

  if (candidates.length === 0) {
    if (firstRefusal) throw new PolicyDenial(firstRefusal.reason, firstRefusal.fix, denials);
    if (!asked.isPool) throw new HelperError(`there is no network device named ${asked.names[0]} in this network namespace`, "check the name with 'ip link'");
  }
  return {
    mode: asked.mode,
    vlan: asked.vlan,
    candidates,
    pool: { description: asked.description, isPool: asked.isPool, missing, unusable: asked.unusable, refused, denied: denials.length - refused },
    denials,
  };
}
