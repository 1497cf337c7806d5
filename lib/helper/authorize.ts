// Who may have what: from the request (a device, a pool, the VFs of a PF, a
// policy network or pool) to the lower devices the caller may use, each
// resolved once to an ifindex and decided on by its canonical name.
//
// Root (real uid 0) may do anything and needs no policy, unless it names a
// policy network or pool. Everyone else needs an allow rule and no deny rule
// (lib/policy/decide.ts), in the network namespace the helper runs in.

import { logger } from '../log.ts';
import { HelperError, UsageError } from '../errors.ts';
import type { ModeName } from '../modes.ts';
import { getLinkByName, type Link } from '../netlink/link.ts';
import type { NetlinkSocket } from '../netlink/socket.ts';
import * as policy from '../policy/index.ts';
import type { Accounts } from '../policy/index.ts';
import type { Identity } from '../privileges.ts';
import { listVirtualFunctions } from '../sriov.ts';
import type { VhostMode } from '../vhost.ts';
import type { Candidates } from './allocate.ts';
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

export interface Authorization {
  /** The request as it will be carried out: with a network's mode. */
  request: CreateRequest;
  candidates: Candidates;
  /** The audit line (key=value) of the decision on each allowed lower device, by ifindex. */
  allowed: Map<number, string>;
  /** Whether vhost-net fds may be handed over, per allowed lower device. */
  vhostGranted: Map<number, boolean>;
  /** Audit lines of the denials (pool members the policy refused). */
  denials: string[];
}

/** Refused by the policy: the error the caller sees, and the audit lines of every refusal. */
export class PolicyDenial extends HelperError {
  readonly auditLines: string[];
  constructor(decision: policy.Decision & { allow: false }, auditLines: string[]) {
    super(decision.reason, decision.fix);
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
  via: { kind: 'dev' } | { kind: 'network'; name: string } | { kind: 'pool'; name: string };
  /** The PF whose VFs these are, when asked for by PF. */
  pf: string | undefined;
}

function requirePolicy(ctx: AuthorizeContext, what: string): policy.Policy {
  if (!ctx.policy) throw new HelperError(`${what} is defined in the policy, which was not loaded`, 'this is a bug: please report it');
  return ctx.policy;
}

/** What the request names, before any device is looked up. */
function whatIsAsked(req: CreateRequest, ctx: AuthorizeContext): Asked {
  const t = req.target;
  const base = { isPool: false, unusable: 0, mode: req.mode, via: { kind: 'dev' } as Asked['via'], pf: undefined };
  switch (t.kind) {
    case 'dev':
      return { ...base, names: [t.name], description: `${t.name} is` };
    case 'pool':
      return { ...base, names: t.members, description: `pool ${t.members.join(',')} is`, isPool: true };
    case 'pf':
      return { ...base, ...vfsOf(t.name, ctx), isPool: true, pf: t.name };
    case 'network': {
      const net = policy.resolveNetwork(requirePolicy(ctx, `network ${t.name}`), t.name);
      if (!ctx.program.modes.includes(net.mode)) {
        throw new UsageError(`network ${t.name} is a ${net.mode} network, which ${ctx.program.name} does not make`,
          `use the helper for ${net.mode} mode, or another network`);
      }
      if (req.modeGiven && req.mode !== net.mode) {
        throw new UsageError(`--mode=${req.mode} contradicts network ${t.name}, which is ${net.mode}`, 'leave --mode out: the network sets it');
      }
      return { ...base, names: [net.dev], description: `${net.dev} is`, mode: net.mode, via: { kind: 'network', name: t.name } };
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

/** decide() refuses 'on' without a vhost rule; 'try' without one quietly becomes 'off'. */
export function vhostAsGranted(asked: VhostMode, granted: boolean): VhostMode {
  return asked === 'try' && !granted ? 'off' : asked;
}

/** Resolves and decides. Throws the policy's own refusal when nothing the caller asked for is allowed. */
export function authorize(nl: NetlinkSocket, req: CreateRequest, ctx: AuthorizeContext): Authorization {
  const asked = whatIsAsked(req, ctx);
  const pfLink = asked.pf ? getLinkByName(nl, asked.pf) : undefined;
  const lowers: Link[] = [];
  const allowed = new Map<number, string>();
  const vhostGranted = new Map<number, boolean>();
  const denials: string[] = [];
  let missing = 0;
  let firstDenial: (policy.Decision & { allow: false }) | undefined;

  for (const name of asked.names) {
    const lower = getLinkByName(nl, name);
    if (!lower) {
      missing++;
      continue;
    }
    if (ctx.caller.uid === 0) {
      lowers.push(lower);
      allowed.set(lower.index, `uid=0 gid=${ctx.caller.gid} program=${ctx.program.name} dev=${lower.name} mode=${asked.mode} queues=${req.queues} vhost=${req.vhost} result=allow rule=root`);
      vhostGranted.set(lower.index, true);
      continue;
    }
    const p = requirePolicy(ctx, 'the rule for this caller');
    const request: policy.PolicyRequest = {
      caller: { uid: ctx.caller.uid, gid: ctx.caller.gid, groups: ctx.caller.groups },
      program: ctx.program.name,
      via: asked.via,
      dev: { name: lower.name, altNames: lower.altNames },
      pf: pfLink ? { name: pfLink.name, altNames: pfLink.altNames } : null,
      mode: asked.mode,
      queues: req.queues,
      vhost: req.vhost,
      netns: ctx.netns,
    };
    const d = policy.decide(p, request, ctx.accounts);
    debug('%s: %s', lower.name, policy.auditLine(request, d));
    if (!d.allow) {
      firstDenial ??= d;
      denials.push(policy.auditLine(request, d));
      continue;
    }
    lowers.push(lower);
    allowed.set(lower.index, policy.auditLine(request, d));
    vhostGranted.set(lower.index, d.vhost);
  }

  if (lowers.length === 0) {
    if (firstDenial) throw new PolicyDenial(firstDenial, denials);
    if (!asked.isPool) throw new HelperError(`there is no network device named ${asked.names[0]} in this network namespace`, "check the name with 'ip link'");
  }
  return {
    request: { ...req, mode: asked.mode },
    candidates: { lowers, description: asked.description, isPool: asked.isPool, missing, unusable: asked.unusable, denied: denials.length },
    allowed,
    vhostGranted,
    denials,
  };
}
