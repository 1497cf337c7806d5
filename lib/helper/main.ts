// The one main every helper executable runs, in the order doas does things:
// harden, parse the command line, identify the caller from the kernel's ids,
// read the root-owned policy, decide, log the decision to syslog, act
// (collect stale links, create the macvtap, tag it, open its queues), drop
// to the caller's ids, hand the result over, exit.
//
// Whatever fails while the helper still holds its privileges deletes the
// link it made. A helper killed outright leaves a link that its group mark
// and owner tag let the next --gc (or the next helper run on the same
// device) recognise as stale.

import { logger } from '../log.ts';
import { audit, type Severity } from '../audit.ts';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import * as libc from '../libc.ts';
import { deleteLink, getLinkByIndex, setLinkAlias, type Link } from '../netlink/link.ts';
import { NetlinkError, withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { writeErr, writeOut } from '../output.ts';
import { encodeOwnerTag, markGroup } from '../owner.ts';
import * as policy from '../policy/index.ts';
import { callerIdentity, dropPrivileges, hardenWithLibc, isPrivilegedRun, type Identity } from '../privileges.ts';
import { processStartTime } from '../proc.ts';
import { encodeErrorRecord, encodeHelperRecord, helperRecordFields, helperRecordJson, type FdKind, type HelperRecord } from '../record.ts';
import { checkUnixStreamSocket, peerCredentials, peerHasHungUp, sendStreamWithFds, sendWithFds } from '../scm.ts';
import { SYS_CLASS_NET } from '../sriov.ts';
import { SYSTEM_VHOST, VhostUnavailableError, type VhostOpener } from '../vhost.ts';
import { VERSION } from '../version.ts';
import { allocateLink, deleteLinkQuietly } from './allocate.ts';
import { authorize, PolicyDenial, vhostAsGranted, type Authorization } from './authorize.ts';
import { nssAccounts } from './accounts.ts';
import { outputSocketFromArgv, parseHelperArgs, type CreateRequest, type HelperRequest } from './options.ts';
import { collectStale, formatTable, listHelperLinks, listRows, releaseLink, withLowerNames } from './ownership.ts';
import type { HelperProgram } from './programs.ts';
import { openQueueSet, type QueueSet } from './queues.ts';
import { usage } from './usage.ts';

const debug = logger('helper');

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The points of a run where a test may inject a fault, in order. */
export const STEPS = ['parsed', 'before-create', 'created', 'tagged', 'opened', 'sending', 'sent'] as const;
export type Step = (typeof STEPS)[number];
export type FaultAction = 'fail' | 'kill' | 'stop';

/**
 * What tests may replace. Only entry points under test/ pass these; the
 * installed helpers' entry points call runHelper without them, so nothing on
 * the command line or in the environment can reach them.
 */
export interface HelperSeams {
  sysClassNet?: string;
  vhostOpener?: VhostOpener;
  fault?: { step: Step; action: FaultAction };
  netnsProbe?: policy.NetnsProbe;
  /** The policy file in place of the fixed path (test entry points only; --config is the option for people). */
  policyPath?: string;
}

/** Termination signals wait until the run has finished or rolled back: a helper is never cut off between creating a link and handing it over. */
const DEFERRED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];

/** What the run has done so far that a failure report must take into account. */
interface RunState {
  program: HelperProgram;
  /** The result went out: a failure after that must not send an error record behind it. */
  replySent: boolean;
  /** The decision's audit line, once there is one; the outcome is appended when the run ends. */
  auditLine: string | undefined;
}

/** Runs a helper to completion and returns its exit status. Never throws. */
export function runHelper(program: HelperProgram, argv: readonly string[], seams: HelperSeams = {}): number {
  const state: RunState = { program, replySent: false, auditLine: undefined };
  try {
    hardenWithLibc();
    for (const sig of DEFERRED_SIGNALS) process.on(sig, () => debug('%s received; finishing the run first', sig));
  } catch (err) {
    return fail(state, new HelperError(`cannot set up a safe process state: ${(err as Error).message}`, 'report this as a bug'), undefined, EXIT_FAILURE);
  }
  debug('%s %s argv=%o', program.name, VERSION, argv);
  const replySocket = outputSocketFromArgv(argv);
  let request: HelperRequest;
  try {
    request = parseHelperArgs(program, argv);
  } catch (err) {
    return fail(state, err, replySocket, EXIT_USAGE);
  }
  try {
    switch (request.action) {
      case 'help':
        writeOut(usage(program));
        return EXIT_OK;
      case 'version':
        writeOut(`${program.name} ${VERSION}\n`);
        return EXIT_OK;
      case 'check-config':
        return checkConfig(request.config);
      case 'list':
      case 'release':
      case 'gc':
        withNetlink((nl) => maintain(nl, request as Exclude<HelperRequest, CreateRequest>));
        return EXIT_OK;
      case 'create':
        checkpoint(seams, 'parsed');
        create(state, request, seams);
        return EXIT_OK;
    }
  } catch (err) {
    return fail(state, err, replySocket, EXIT_FAILURE);
  }
}

/**
 * What a helper's entry point calls: runs it, then ends the process with
 * _exit(2). QEMU waits for the helper to exit before it goes on, and Node's
 * own exit (emptying the event loop, exit handlers, tearing down the heap and
 * joining its threads) took 2-3 ms of a 40 ms run while doing nothing a
 * helper needs: everything it writes is written synchronously, and the kernel
 * closes its fds. (npm run bench measures it against a floor that exits
 * either way.)
 */
export function runHelperAndExit(program: HelperProgram, argv: readonly string[], seams: HelperSeams = {}): never {
  libc.exitImmediately(runHelper(program, argv, seams));
}

/** Fires the test-injected fault (once) when the run reaches its step. */
function checkpoint(seams: HelperSeams, step: Step): void {
  const fault = seams.fault;
  if (fault?.step !== step) return;
  delete seams.fault;
  debug('injected fault at %s: %s', step, fault.action);
  if (fault.action === 'fail') throw new Error(`injected failure at step ${step}`);
  process.kill(process.pid, fault.action === 'kill' ? 'SIGKILL' : 'SIGSTOP');
}

/** The policy file: the fixed path, or --config=PATH outside a privileged run. */
function policyPath(config: string | undefined): string {
  if (config === undefined) return policy.POLICY_PATH;
  if (isPrivilegedRun()) {
    throw new HelperError(`--config is refused when the helper runs with privileges (setuid or file capabilities)`,
      `the installed helper reads only ${policy.POLICY_PATH}; use --config with an unprivileged copy, or as root`);
  }
  return config;
}

function checkConfig(config: string | undefined): number {
  if (isPrivilegedRun() && libc.getuid() !== 0) {
    throw new HelperError('--check-config shows how the policy is built, so a privileged helper does it for root only', `run it as root, or read ${policy.POLICY_PATH} yourself`);
  }
  const report = policy.checkConfig(policyPath(config), { accounts: nssAccounts });
  dropPrivileges(callerIdentity());
  writeOut(policy.formatCheckReport(report));
  return report.ok ? EXIT_OK : EXIT_FAILURE;
}

interface Owner {
  uid: number;
  pid: number;
  start: string;
}

/**
 * The owner of the link about to be made: the process at the other end of
 * the reply socket (QEMU, a launcher), not our parent, which may be a shell.
 * With --probe the helper owns it itself: it deletes it before exiting.
 */
function identifyOwner(req: CreateRequest, caller: Identity): Owner {
  if (req.output.kind === 'probe') return { uid: caller.uid, pid: process.pid, start: processStartTime(process.pid) ?? '0' };
  checkReplySocket(req.output.kind, req.output.fd);
  const peer = peerCredentials(req.output.fd);
  const start = processStartTime(peer.pid);
  if (start === undefined) {
    throw new HelperError(`the process at the other end of --${req.output.kind}=${req.output.fd} (pid ${peer.pid}) has already exited`, 'keep it running until the helper exits');
  }
  return { uid: caller.uid, pid: peer.pid, start };
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

/** --list, --release, --gc: any caller, on their own links (root: all). Acts, drops privileges, then prints. */
function maintain(nl: NetlinkSocket, req: Exclude<HelperRequest, CreateRequest>): void {
  const caller = callerIdentity();
  let output = '';
  if (req.action === 'list') {
    const mine = withLowerNames(nl, listHelperLinks(nl).filter((hl) => caller.uid === 0 || hl.tag?.uid === caller.uid));
    const rows = listRows(mine, Math.floor(Date.now() / 1000), (uid) => libc.userNameOf(uid) ?? String(uid));
    output = req.json ? JSON.stringify(rows, null, 2) + '\n' : formatTable(rows);
  } else if (req.action === 'release') {
    const hl = releaseLink(nl, req.ifname, caller.uid);
    output = `released ${hl.link.name}\n`;
  } else if (req.action === 'gc') {
    const removed = collectStale(nl, { uid: caller.uid === 0 ? undefined : caller.uid });
    output = removed.map((hl) => `removed stale ${hl.link.name} (owner pid ${hl.tag?.pid ?? `unknown, made by pid ${hl.creator}`})\n`).join('');
  }
  dropPrivileges(caller);
  writeOut(output);
}

function create(state: RunState, req: CreateRequest, seams: HelperSeams): void {
  const caller = callerIdentity();
  const owner = identifyOwner(req, caller);
  const needsPolicy = caller.uid !== 0 || req.target.kind === 'network' || req.target.kind === 'named-pool';
  const path = policyPath(req.config); // refuses --config in a privileged run, whatever else applies
  const pol = needsPolicy ? policy.loadPolicy(seams.policyPath ?? path) : undefined;
  const netns = pol ? policy.identifyNetns(pol, seams.netnsProbe ?? policy.nodeNetnsProbe()) : { isInitial: false, names: [], notes: [] };
  const sysClassNet = seams.sysClassNet ?? SYS_CLASS_NET;
  const record = withNetlink((nl) => {
    let auth: Authorization;
    try {
      auth = authorize(nl, req, { program: state.program, caller, policy: pol, accounts: nssAccounts, netns, sysClassNet });
    } catch (err) {
      if (err instanceof PolicyDenial) for (const line of err.auditLines) audit(state.program.name, 'warning', line);
      throw err;
    }
    return createAndHandOver(nl, state, auth, caller, owner, seams);
  });
  debug('done: %s', record.ifname);
}

function createAndHandOver(nl: NetlinkSocket, state: RunState, auth: Authorization, caller: Identity, owner: Owner, seams: HelperSeams): HelperRecord {
  // Stale links of dead guests on the devices we may use are collected first, so they never block a VF.
  const indexes = new Set(auth.candidates.lowers.map((l) => l.index));
  for (const hl of collectStale(nl, { uid: undefined, lowerIndexes: indexes })) debug('collected stale %s before allocating', hl.link.name);

  const { lower, link, lowerMacBefore } = allocateLink(nl, auth.request, auth.candidates, markGroup(process.pid), () => checkpoint(seams, 'before-create'));
  const req: CreateRequest = { ...auth.request, vhost: vhostAsGranted(auth.request.vhost, auth.vhostGranted.get(lower.index) ?? false) };
  state.auditLine = auth.allowed.get(lower.index);
  let privileged = true;
  try {
    checkpoint(seams, 'created');
    tag(nl, link, state.program, owner, lowerMacBefore);
    checkpoint(seams, 'tagged');
    const queues = openQueues(link, req, seams);
    try {
      checkpoint(seams, 'opened');
      const record = buildRecord(link, lower, req, queues);
      if (req.output.kind === 'probe') {
        deleteLink(nl, link.index);
        debug('probe: deleted %s', link.name);
      } else if (peerHasHungUp(req.output.fd)) {
        throw peerGone();
      }
      dropPrivileges(caller);
      privileged = false;
      checkpoint(seams, 'sending');
      handOver(state, req, record, [...queues.tapFds, ...queues.vhostFds]);
      checkpoint(seams, 'sent');
      auditOutcome(state, 'info', `ifname=${link.name} lower=${lower.name}`);
      return record;
    } finally {
      queues.close();
    }
  } catch (err) {
    // Explained before the rollback, which would make any link look vanished.
    const explained = explainVanished(err, nl, link);
    if (privileged || caller.uid === 0) deleteLinkQuietly(nl, link);
    auditOutcome(state, 'warning', `ifname=${link.name} outcome=failed error=${JSON.stringify((explained as Error).message ?? String(explained))}`);
    if (!privileged && caller.uid !== 0) {
      // Without privileges the link cannot be deleted here; its owner tag makes it stale for --gc.
      throw new HelperError(`${(explained as Error).message}; ${link.name} is left to the next --gc (its owner is gone or will be)`,
        explained instanceof HelperError ? explained.fix : 'run --gc, or retry');
    }
    throw explained;
  }
}

function buildRecord(link: Link, lower: Link, req: CreateRequest, queues: QueueSet): HelperRecord {
  const fds: FdKind[] = [...queues.tapFds.map((): FdKind => 'tap'), ...queues.vhostFds.map((): FdKind => 'vhost')];
  return {
    ifname: link.name,
    ifindex: link.index,
    lower: lower.name,
    mode: req.mode,
    mac: link.mac ?? '',
    queues: req.queues,
    multiQueue: queues.multiQueue,
    vnetHdr: req.vnetHdr,
    vnetHdrSize: queues.vnetHdrSize,
    offloads: queues.offloads,
    vhost: queues.vhostFds.length > 0,
    vhostFeatures: queues.vhostFeatures,
    vhostError: queues.vhostError,
    fds,
  };
}

function auditOutcome(state: RunState, severity: Severity, outcome: string): void {
  if (state.auditLine) audit(state.program.name, severity, `${state.auditLine} ${outcome}`);
}

function tag(nl: NetlinkSocket, link: Link, program: HelperProgram, owner: Owner, lowerMac: string | undefined): void {
  const text = encodeOwnerTag({ helper: program.name, uid: owner.uid, pid: owner.pid, start: owner.start, created: Math.floor(Date.now() / 1000), lowerMac });
  setLinkAlias(nl, link.index, text);
  debug('tagged %s: %s', link.name, text);
}

function openQueues(link: Link, req: CreateRequest, seams: HelperSeams): QueueSet {
  try {
    return openQueueSet(link, req, seams.vhostOpener ?? SYSTEM_VHOST);
  } catch (err) {
    if (err instanceof VhostUnavailableError) {
      throw new HelperError(`--vhost=on, but ${err.message}`, "load vhost_net ('modprobe vhost_net'), or use --vhost=try to go on without it");
    }
    throw err;
  }
}

/** A link that disappeared under us (its lower device was removed) gets a message that says so. */
function explainVanished(err: unknown, nl: NetlinkSocket, link: Link): unknown {
  if (err instanceof HelperError) return err;
  const gone = (err instanceof NetlinkError && err.code === 'ENODEV') || (err instanceof libc.SysError && (err.code === 'ENOENT' || err.code === 'ENODEV'));
  if (!gone) return err;
  let exists = true;
  try {
    exists = getLinkByIndex(nl, link.index)?.name === link.name;
  } catch {
    // keep the original error
  }
  return exists ? err : new HelperError(`${link.name} disappeared while it was being set up (was its lower device removed?)`, 'check the device and try again');
}

function peerGone(): HelperError {
  return new HelperError('the other end closed its socket before the fd could be sent, so the link was deleted', 'keep the socket open until the helper exits');
}

function handOver(state: RunState, req: CreateRequest, record: HelperRecord, fds: number[]): void {
  const out = req.output;
  try {
    if (out.kind === 'fd') {
      // Exactly what qemu-bridge-helper sends: one zero byte and one fd.
      sendWithFds(out.fd, Buffer.from([0]), fds);
    } else if (out.kind === 'socketpair') {
      sendStreamWithFds(out.fd, encodeHelperRecord(record), fds);
    } else if (out.json) {
      writeOut(JSON.stringify(helperRecordJson(record), null, 2) + '\n');
    } else {
      writeOut(['version=1', ...helperRecordFields(record).map(([k, v]) => `${k}=${v}`)].join('\n') + '\n');
    }
    state.replySent = true;
  } catch (err) {
    if (err instanceof libc.SysError && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) throw peerGone();
    throw err;
  }
  debug('handed over %s via %s: %s', record.ifname, out.kind, record.fds.join(','));
}

/** Reports a failure: one line on stderr and, in --socketpair mode, an error record. */
function fail(state: RunState, err: unknown, reply: { kind: 'fd' | 'socketpair'; fd: number } | undefined, status: number): number {
  const line = oneLine(state.program.name, err);
  writeErr(line + '\n');
  if (!(err instanceof HelperError)) debug('unexpected error: %O', err);
  if (reply?.kind === 'socketpair' && !state.replySent && !(err instanceof UsageError && /--socketpair/.test(err.message))) {
    try {
      checkUnixStreamSocket(reply.fd);
      sendWithFds(reply.fd, encodeErrorRecord(line), []);
    } catch {
      // The channel itself is what failed; stderr has the message.
    }
  }
  return status;
}
