// The decide step of a create request: everything that can be known before
// anything is made, without any privilege raised. Parse is done; here the
// caller is identified from the kernel's ids, the owner from the reply
// socket, the policy is read and every candidate device decided. The result
// is one frozen Plan, which main logs and the execute step carries out
// (lib/helper/execute.ts). Nothing here creates, deletes or changes anything.

import { HelperError } from '../errors.ts';
import * as libc from '../libc.ts';
import type { ModeName } from '../modes.ts';
import { withNetlink } from '../netlink/socket.ts';
import * as policy from '../policy/index.ts';
import { callerIdentity, DAC_OVERRIDE, isPrivilegedRun, withCapabilities, type Identity } from '../privileges.ts';
import { ownPidNamespace, processStartTime } from '../proc.ts';
import { checkUnixStreamSocket, peerCredentials } from '../scm.ts';
import { nssAccounts } from './accounts.ts';
import { authorize, type Candidate, type PoolSummary } from './authorize.ts';
import type { CreateRequest, Output } from './options.ts';
import type { HelperProgram } from './programs.ts';

/** The process that will own the link: the other end of the reply socket (QEMU, a launcher), not our parent. */
export interface Owner {
  uid: number;
  pid: number;
  start: string;
  /** The PID namespace `pid` is counted in (ours: SO_PEERCRED translates into the receiver's). */
  pidns: string | undefined;
}

export interface Plan {
  readonly program: HelperProgram;
  readonly caller: Identity;
  readonly owner: Owner;
  readonly output: Output;
  /** A persistent link (--persistent): tagged as the caller's, its /dev/tapN given to them, no fd handed over. */
  readonly persistent: boolean;
  readonly mode: ModeName;
  readonly ifname: string;
  readonly mac: Buffer | undefined;
  readonly queues: number;
  readonly vnetHdr: boolean;
  /** The 802.1Q VLAN of the lower device the macvtap goes on (lib/helper/vlan.ts). */
  readonly vlan: number | undefined;
  /** The allowed devices, in order; each with its decision's audit line and vhost grant. */
  readonly candidates: readonly Candidate[];
  readonly pool: PoolSummary;
  /** How many links the caller may hold at once; undefined for root. */
  readonly limit: policy.LinkLimit | undefined;
}

/** What tests may move (test entry points only, never argv or the environment). */
export interface PlanSeams {
  policyPath?: string;
  netnsProbe?: policy.NetnsProbe;
  sysClassNet: string;
}

/** The policy file: the fixed path, or --config=PATH outside a privileged run. */
export function policyPath(config: string | undefined): string {
  if (config === undefined) return policy.POLICY_PATH;
  if (isPrivilegedRun()) {
    throw new HelperError(`--config is refused when the helper runs with privileges (setuid or file capabilities)`,
      `the installed helper reads only ${policy.POLICY_PATH}; use --config with an unprivileged copy, or as root`);
  }
  return config;
}

/**
 * The policy files are root's and may be unreadable to the caller (mode
 * 0600, as doas.conf often is): CAP_DAC_OVERRIDE for each open, nothing else.
 * The loader has checked owner, mode and every parent before it reads.
 */
const policyFs: policy.PolicyFs = {
  ...policy.nodePolicyFs,
  readFile: (path, maxBytes) => withCapabilities(DAC_OVERRIDE, () => policy.nodePolicyFs.readFile(path, maxBytes)),
};

/** Decides a create request: the plan to carry out, or a refusal (PolicyDenial, HelperError). */
export function planCreate(program: HelperProgram, req: CreateRequest, seams: PlanSeams): Plan {
  const caller = callerIdentity();
  const owner = identifyOwner(req, caller);
  const needsPolicy = caller.uid !== 0 || req.target.kind === 'network' || req.target.kind === 'named-pool';
  const path = policyPath(req.config);
  const pol = needsPolicy ? policy.loadPolicy(seams.policyPath ?? path, { fs: policyFs }) : undefined;
  const netns = pol ? policy.identifyNetns(pol, seams.netnsProbe ?? policy.nodeNetnsProbe()) : { isInitial: false, names: [], notes: [] };
  const auth = withNetlink((nl) => authorize(nl, req, { program, caller, policy: pol, accounts: nssAccounts, netns, sysClassNet: seams.sysClassNet }));
  const limit = caller.uid === 0 ? undefined : policy.linkLimit(pol!, caller, nssAccounts);
  if (req.output.kind === 'fd' && req.mac === undefined && auth.mode !== 'passthru') refuseWithoutMac(program, auth.mode);
  return Object.freeze({
    program, caller, owner, output: req.output, persistent: req.output.kind === 'persistent', mode: auth.mode, ifname: req.ifname, mac: req.mac, queues: req.queues, vnetHdr: req.vnetHdr, vlan: auth.vlan,
    candidates: Object.freeze([...auth.candidates]), pool: auth.pool, limit,
  });
}

/**
 * QEMU's helper protocol (--fd), as QEMU and libvirt's bridge_helper use it,
 * never tells the helper the guest's MAC, and a vepa, private or bridge
 * macvtap delivers unicast only to its own MAC: a link with a random one
 * would be handed over and never work. Refused, saying what does.
 */
function refuseWithoutMac(program: HelperProgram, mode: string): never {
  throw new HelperError(`no --mac: a ${mode} macvtap delivers frames only to its own MAC, and QEMU's helper protocol (--fd), which QEMU and libvirt's bridge_helper use, does not tell the helper the guest's`,
    `add --mac=MAC (the guest NIC's) to the helper's command line, or use qemu-net-helper-passthrough (any MAC), or for libvirt a persistent link (docs/libvirt.md)`);
}

/**
 * The owner of the link about to be made: the process at the other end of
 * the reply socket. It must be the caller's own process (root's may be
 * anyone's): otherwise a caller could make a daemon of another user, one it
 * merely connected to, the owner of a link (never collected while it runs)
 * and the receiver of a tap fd. With --probe the helper owns the link itself
 * and deletes it before exiting.
 */
function identifyOwner(req: CreateRequest, caller: Identity): Owner {
  const pidns = ownPidNamespace();
  // --probe deletes the link before exiting; a --persistent link belongs to the caller, not to a process.
  if (req.output.kind === 'probe' || req.output.kind === 'persistent') return { uid: caller.uid, pid: process.pid, start: processStartTime(process.pid) ?? '0', pidns };
  checkReplySocket(req.output.kind, req.output.fd);
  const peer = peerCredentials(req.output.fd);
  const option = `--${req.output.kind}=${req.output.fd}`;
  if (caller.uid !== 0 && peer.uid !== caller.uid) {
    throw new HelperError(`the process at the other end of ${option} (pid ${peer.pid}) runs as uid ${peer.uid}, not as you (uid ${caller.uid})`,
      'pass a socket whose other end is your own QEMU or launcher (a socketpair made by your process)');
  }
  const start = processStartTime(peer.pid);
  if (start === undefined) {
    throw new HelperError(`the process at the other end of ${option} (pid ${peer.pid}) has already exited`, 'keep it running until the helper exits');
  }
  return { uid: caller.uid, pid: peer.pid, start, pidns };
}

function checkReplySocket(kind: 'fd' | 'socketpair', fd: number): void {
  try {
    checkUnixStreamSocket(fd);
  } catch (err) {
    const why = err instanceof libc.SysError && err.code === 'EBADF' ? `fd ${fd} is not open` : (err as Error).message;
    throw new HelperError(`--${kind}=${fd} is not usable: ${why}`,
      kind === 'fd' ? 'QEMU passes its own socket here; to try the helper by hand use --probe'
        : 'pass one end of a connected AF_UNIX SOCK_STREAM socketpair as that fd');
  }
}
