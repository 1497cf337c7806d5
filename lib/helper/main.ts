// The one main every helper executable runs, in the order doas does things:
// confine privileges, parse the command line, decide (identify the caller
// from the kernel's ids, read the root-owned policy, decide on each device:
// lib/helper/plan.ts), log the decision to syslog, act (lib/helper/execute.ts:
// collect what stands in the way, create the macvtap, tag it, open its
// queues), drop privileges, hand the result over, log the outcome, exit.
//
// From its first line a run holds no effective capability: the execute step
// raises each one around the operation that needs it. Whatever fails while
// the helper still holds its privileges deletes the link it made. A helper
// killed outright leaves a link that its group mark and owner tag let the
// next --gc (or the root timer) recognise as stale.

import { logger } from '../log.ts';
import { audit, auditField } from '../audit.ts';
import { HelperError, oneLine } from '../errors.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../exit-status.ts';
import * as libc from '../libc.ts';
import { withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { pruneVlans } from './vlan.ts';
import { writeErr, writeOut } from '../output.ts';
import * as policy from '../policy/index.ts';
import { callerIdentity, confinePrivileges, dropPrivileges, hardenWithLibc, isPrivilegedRun, NET_ADMIN, withCapabilities } from '../privileges.ts';
import { encodeErrorRecord, encodeHelperRecord, helperRecordFields, helperRecordJson, type HelperRecord } from '../record.ts';
import { checkUnixStreamSocket, sendStreamWithFds, sendWithFds } from '../scm.ts';
import { SYS_CLASS_NET } from '../sriov.ts';
import type { VhostOpener } from '../vhost.ts';
import { tapNodePath } from '../tap.ts';
import { VERSION, versionLine } from '../version.ts';
import { nssAccounts } from './accounts.ts';
import { PolicyDenial, type Candidate } from './authorize.ts';
import { execute, peerGone, STEPS, type Step } from './execute.ts';
import { outputSocketFromArgv, parseHelperArgs, type CreateRequest, type HelperRequest, type Output } from './options.ts';
import { collectStale, formatTable, listHelperLinks, listRows, releaseLink, withLowerNames, type HelperLink } from './ownership.ts';
import { planCreate, policyPath, type Plan } from './plan.ts';
import type { HelperProgram } from './programs.ts';
import { usage } from './usage.ts';

export { STEPS, type Step };

const debug = logger('helper');

export { EXIT_OK, EXIT_FAILURE, EXIT_USAGE };

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
  /** Whether an audit line already tells how this create request ended (so a failure is logged exactly once). */
  outcomeLogged: boolean;
}

/** Runs a helper to completion and returns its exit status. Never throws. */
export function runHelper(program: HelperProgram, argv: readonly string[], seams: HelperSeams = {}): number {
  const state: RunState = { program, replySent: false, outcomeLogged: false };
  try {
    confinePrivileges();
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
        writeOut(versionLine(program.name));
        return EXIT_OK;
      case 'check-config':
        return checkConfig(request.config);
      case 'list':
      case 'release':
      case 'gc':
        withNetlink((nl) => maintain(program, nl, request as Exclude<HelperRequest, CreateRequest>), request.action === 'list' ? undefined : (fn) => withCapabilities(NET_ADMIN, fn));
        return EXIT_OK;
      case 'create':
        checkpoint(seams, 'parsed');
        create(state, request, seams);
        return EXIT_OK;
    }
  } catch (err) {
    if (request.action === 'create' && !state.outcomeLogged) {
      audit(program.name, 'warning', `${callerFields(program)} ${auditField('result', 'error')} ${auditField('error', errorText(err), true)}`);
    }
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

function checkConfig(config: string | undefined): number {
  if (isPrivilegedRun() && libc.getuid() !== 0) {
    throw new HelperError('--check-config shows how the policy is built, so a privileged helper does it for root only', `run it as root, or read ${policy.POLICY_PATH} yourself`);
  }
  const report = policy.checkConfig(policyPath(config), { accounts: nssAccounts });
  dropPrivileges(callerIdentity());
  writeOut(policy.formatCheckReport(report));
  return report.ok ? EXIT_OK : EXIT_FAILURE;
}

/** --list, --release, --gc: any caller, on their own links (root: all). Acts, drops privileges, then prints. */
function maintain(program: HelperProgram, nl: NetlinkSocket, req: Exclude<HelperRequest, CreateRequest>): void {
  const caller = callerIdentity();
  let output = '';
  if (req.action === 'list') {
    const mine = withLowerNames(nl, listHelperLinks(nl).filter((hl) => caller.uid === 0 || hl.tag?.uid === caller.uid));
    const rows = listRows(mine, Math.floor(Date.now() / 1000), (uid) => libc.userNameOf(uid) ?? String(uid));
    output = req.json ? JSON.stringify(rows, null, 2) + '\n' : formatTable(rows);
  } else if (req.action === 'release') {
    const hl = releaseLink(nl, req.ifname, caller.uid);
    auditRemoval(program, caller.uid, hl, `released by uid ${caller.uid}`);
    output = `released ${hl.link.name}\n`;
    if (caller.uid === 0) for (const name of pruneVlans(nl)) output += `removed ${name}: the VLAN link it was on, now unused\n`;
  } else if (req.action === 'gc') {
    const removed = collectStale(nl, { uid: caller.uid === 0 ? undefined : caller.uid, viewer: caller.uid });
    for (const hl of removed) auditRemoval(program, caller.uid, hl, hl.reason);
    output = removed.map((hl) => `removed ${hl.link.name}: ${hl.reason}\n`).join('');
    if (caller.uid === 0) for (const name of pruneVlans(nl)) output += `removed ${name}: a VLAN link of the helpers with nothing on it\n`;
  }
  dropPrivileges(caller);
  writeOut(output);
}

/** Every deletion of a link says in the audit log what was deleted, for whom, and why. */
export function auditRemoval(program: HelperProgram, by: number, hl: HelperLink, reason: string): void {
  audit(program.name, 'notice', [auditField('uid', String(by)), auditField('program', program.name), auditField('action', 'delete'),
    auditField('ifname', hl.link.name, true), auditField('ifindex', String(hl.link.index)), auditField('owner_uid', hl.tag ? String(hl.tag.uid) : 'none'),
    auditField('reason', reason, true)].join(' '));
}

function create(state: RunState, req: CreateRequest, seams: HelperSeams): void {
  const name = state.program.name;
  let plan: Plan;
  try {
    plan = planCreate(state.program, req, { policyPath: seams.policyPath, netnsProbe: seams.netnsProbe, sysClassNet: seams.sysClassNet ?? SYS_CLASS_NET });
  } catch (err) {
    if (err instanceof PolicyDenial) {
      for (const line of err.auditLines) audit(name, 'warning', line);
      state.outcomeLogged = true;
    }
    throw err;
  }
  // The decision, logged before anything is made: a caller who kills the helper afterwards cannot erase it.
  for (const c of plan.candidates) audit(name, 'notice', c.auditLine);
  let chosen: Candidate | undefined;
  try {
    const record = execute(plan, {
      checkpoint: (step) => checkpoint(seams, step),
      vhostOpener: seams.vhostOpener,
      allocated: (c) => { chosen = c; },
      removed: (hl) => auditRemoval(state.program, plan.caller.uid, hl, hl.reason),
      deliver: (rec, fds) => handOver(state, plan.output, rec, fds),
    });
    audit(name, 'info', `${chosen!.auditLine} ${outcomeFields(record)}`);
    state.outcomeLogged = true;
    debug('done: %s', record.ifname);
  } catch (err) {
    audit(name, 'warning', `${(chosen ?? plan.candidates[0])!.auditLine} ${auditField('outcome', 'failed')} ${auditField('error', errorText(err), true)}`);
    state.outcomeLogged = true;
    throw err;
  }
}

/** The fields an outcome line adds to its decision line: what was made, by the kernel's own names. */
function outcomeFields(record: HelperRecord): string {
  return [auditField('outcome', 'ok'), auditField('ifname', record.ifname, true), auditField('ifindex', String(record.ifindex)),
    auditField('lower', record.lower, true), auditField('mac', record.mac, true), auditField('fds', record.fds.join(','))].join(' ');
}

/** Who asked, for audit lines written before any decision (a policy that cannot be read, a bad reply socket). */
function callerFields(program: HelperProgram): string {
  const c = callerIdentity();
  return [auditField('uid', String(c.uid)), auditField('gid', String(c.gid)), auditField('program', program.name)].join(' ');
}

function errorText(err: unknown): string {
  return err instanceof HelperError ? `${err.message}; ${err.fix}` : err instanceof Error ? err.message : String(err);
}

function handOver(state: RunState, out: Output, record: HelperRecord, fds: number[]): void {
  try {
    if (out.kind === 'fd') {
      // Exactly what qemu-bridge-helper sends: one zero byte and one fd.
      sendWithFds(out.fd, Buffer.from([0]), fds);
    } else if (out.kind === 'socketpair') {
      sendStreamWithFds(out.fd, encodeHelperRecord(record), fds);
    } else {
      // --probe and --persistent print the record; a persistent link's also says where its queues are.
      const extra: Array<[string, string]> = out.kind === 'persistent' ? [['persistent', '1'], ['device', tapNodePath(record.ifindex)]] : [];
      if (out.json) writeOut(JSON.stringify({ ...helperRecordJson(record), ...Object.fromEntries(extra) }, null, 2) + '\n');
      else writeOut(['version=1', ...[...helperRecordFields(record), ...extra].map(([k, v]) => `${k}=${v}`)].join('\n') + '\n');
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
  // outputSocketFromArgv names a reply socket only for a well-formed --socketpair=N above fd 2, and it is checked to be a unix stream socket before anything is written to it.
  if (reply?.kind === 'socketpair' && !state.replySent) {
    try {
      checkUnixStreamSocket(reply.fd);
      sendWithFds(reply.fd, encodeErrorRecord(line), []);
    } catch {
      // The channel itself is what failed; stderr has the message.
    }
  }
  return status;
}
