// The one main every helper executable runs, in the order doas does things:
// parse the command line, identify the caller, check the reply channel,
// act (collect stale links, create the macvtap, tag it, open its queues),
// hand the result over, exit. Whatever fails after the link exists deletes
// the link before exiting; a helper killed outright leaves a link that its
// group mark and owner tag let the next --gc (or the next helper run on the
// same device) recognise as stale.

import createDebug from 'debug';
import { readFileSync } from 'node:fs';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import * as libc from '../libc.ts';
import { deleteLink, getLinkByName, setLinkAlias, type Link } from '../netlink/link.ts';
import { NetlinkError, withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { encodeOwnerTag, markGroup } from '../owner.ts';
import { processStartTime } from '../proc.ts';
import { encodeErrorRecord, encodeHelperRecord, helperRecordFields, helperRecordJson, type FdKind, type HelperRecord } from '../record.ts';
import { checkUnixStreamSocket, peerCredentials, sendStreamWithFds, sendWithFds } from '../scm.ts';
import { SYS_CLASS_NET } from '../sriov.ts';
import { SYSTEM_VHOST, VhostUnavailableError, type VhostOpener } from '../vhost.ts';
import { VERSION } from '../version.ts';
import { allocateLink, candidateNames, deleteLinkQuietly } from './allocate.ts';
import { outputSocketFromArgv, parseHelperArgs, type CreateRequest, type HelperRequest } from './options.ts';
import { collectStale, formatTable, listHelperLinks, listRows, releaseLink } from './ownership.ts';
import type { HelperProgram } from './programs.ts';
import { openQueueSet, type QueueSet } from './queues.ts';
import { usage } from './usage.ts';

const debug = createDebug('qemu-net-helper:helper');

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
}

/** Termination signals wait until the run has finished or rolled back: a helper is never cut off between creating a link and handing it over. */
const DEFERRED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];

/** Set once the result has gone out: a failure after that must not send an error record behind it. */
let replySent = false;

/** Runs a helper to completion and returns its exit status. Never throws. */
export function runHelper(program: HelperProgram, argv: readonly string[], seams: HelperSeams = {}): number {
  for (const sig of DEFERRED_SIGNALS) process.on(sig, () => debug('%s received; finishing the run first', sig));
  debug('%s %s argv=%o', program.name, VERSION, argv);
  const replySocket = outputSocketFromArgv(argv);
  let request: HelperRequest;
  try {
    request = parseHelperArgs(program, argv);
  } catch (err) {
    return fail(program, err, replySocket, EXIT_USAGE);
  }
  try {
    switch (request.action) {
      case 'help':
        process.stdout.write(usage(program));
        return EXIT_OK;
      case 'version':
        process.stdout.write(`${program.name} ${VERSION}\n`);
        return EXIT_OK;
      case 'list':
      case 'release':
      case 'gc':
        requireRoot();
        withNetlink((nl) => maintain(nl, request as Exclude<HelperRequest, CreateRequest>));
        return EXIT_OK;
      case 'create': {
        checkpoint(seams, 'parsed');
        requireRoot();
        const owner = identifyOwner(request);
        const record = withNetlink((nl) => createAndHandOver(nl, program, request as CreateRequest, owner, seams));
        debug('done: %s', record.ifname);
        return EXIT_OK;
      }
    }
  } catch (err) {
    return fail(program, err, replySocket, EXIT_FAILURE);
  }
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

function requireRoot(): void {
  const uid = libc.getuid();
  if (uid !== 0) {
    throw new HelperError(`refusing to run for uid ${uid}: only root may use this helper until the policy file /etc/qemu/net-helper.conf is supported`,
      'run it as root');
  }
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
function identifyOwner(req: CreateRequest): Owner {
  const uid = libc.getuid();
  if (req.output.kind === 'probe') return { uid, pid: process.pid, start: processStartTime(process.pid) ?? '0' };
  checkReplySocket(req.output.kind, req.output.fd);
  const peer = peerCredentials(req.output.fd);
  const start = processStartTime(peer.pid);
  if (start === undefined) {
    throw new HelperError(`the process at the other end of --${req.output.kind}=${req.output.fd} (pid ${peer.pid}) has already exited`, 'keep it running until the helper exits');
  }
  return { uid, pid: peer.pid, start };
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

function maintain(nl: NetlinkSocket, req: Exclude<HelperRequest, CreateRequest>): void {
  const uid = libc.getuid();
  if (req.action === 'list') {
    const mine = listHelperLinks(nl).filter((hl) => uid === 0 || hl.tag?.uid === uid);
    const rows = listRows(mine, Math.floor(Date.now() / 1000), userName);
    process.stdout.write(req.json ? JSON.stringify(rows, null, 2) + '\n' : formatTable(rows));
  } else if (req.action === 'release') {
    const hl = releaseLink(nl, req.ifname, uid);
    process.stdout.write(`released ${hl.link.name}\n`);
  } else if (req.action === 'gc') {
    const removed = collectStale(nl, { uid: uid === 0 ? undefined : uid });
    for (const hl of removed) process.stdout.write(`removed stale ${hl.link.name} (owner pid ${hl.tag?.pid ?? `unknown, made by pid ${hl.creator}`})\n`);
  }
}

function userName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (id === String(uid) && name) return name;
    }
  } catch {
    // no passwd file: fall through to the number
  }
  return String(uid);
}

/** Before allocating, stale links of dead guests on the devices we may use are collected, so they never block a VF. */
function collectOnCandidates(nl: NetlinkSocket, req: CreateRequest, sysClassNet: string): void {
  const indexes = new Set<number>();
  for (const name of candidateNames(req.target, sysClassNet)) {
    const lower = getLinkByName(nl, name);
    if (lower) indexes.add(lower.index);
  }
  for (const hl of collectStale(nl, { uid: undefined, lowerIndexes: indexes })) debug('collected stale %s before allocating', hl.link.name);
}

function createAndHandOver(nl: NetlinkSocket, program: HelperProgram, req: CreateRequest, owner: Owner, seams: HelperSeams): HelperRecord {
  const sysClassNet = seams.sysClassNet ?? SYS_CLASS_NET;
  collectOnCandidates(nl, req, sysClassNet);
  const { lower, link, lowerMacBefore } = allocateLink(nl, req, markGroup(process.pid), sysClassNet, () => checkpoint(seams, 'before-create'));
  try {
    checkpoint(seams, 'created');
    tag(nl, link, program, owner, lowerMacBefore);
    checkpoint(seams, 'tagged');
    const queues = openQueues(link, req, seams);
    try {
      checkpoint(seams, 'opened');
      const fds: FdKind[] = [...queues.tapFds.map((): FdKind => 'tap'), ...queues.vhostFds.map((): FdKind => 'vhost')];
      const record: HelperRecord = {
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
      checkpoint(seams, 'sending');
      handOver(req, record, [...queues.tapFds, ...queues.vhostFds]);
      checkpoint(seams, 'sent');
      if (req.output.kind === 'probe') {
        deleteLink(nl, link.index);
        debug('probe: deleted %s', link.name);
      }
      return record;
    } finally {
      queues.close();
    }
  } catch (err) {
    deleteLinkQuietly(nl, link);
    throw explainVanished(err, nl, link);
  }
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
    exists = getLinkByName(nl, link.name)?.index === link.index;
  } catch {
    // keep the original error
  }
  return exists ? err : new HelperError(`${link.name} disappeared while it was being set up (was its lower device removed?)`, 'check the device and try again');
}

function handOver(req: CreateRequest, record: HelperRecord, fds: number[]): void {
  const out = req.output;
  try {
    if (out.kind === 'fd') {
      // Exactly what qemu-bridge-helper sends: one zero byte and one fd.
      sendWithFds(out.fd, Buffer.from([0]), fds);
    } else if (out.kind === 'socketpair') {
      sendStreamWithFds(out.fd, encodeHelperRecord(record), fds);
      replySent = true;
    } else if (out.json) {
      process.stdout.write(JSON.stringify(helperRecordJson(record), null, 2) + '\n');
    } else {
      process.stdout.write(['version=1', ...helperRecordFields(record).map(([k, v]) => `${k}=${v}`)].join('\n') + '\n');
    }
  } catch (err) {
    if (err instanceof libc.SysError && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) {
      throw new HelperError('the other end closed its socket before the fd could be sent, so the link was deleted', 'keep the socket open until the helper exits');
    }
    throw err;
  }
  debug('handed over %s via %s: %s', record.ifname, out.kind, record.fds.join(','));
}

/** Reports a failure: one line on stderr and, in --socketpair mode, an error record. */
function fail(program: HelperProgram, err: unknown, reply: { kind: 'fd' | 'socketpair'; fd: number } | undefined, status: number): number {
  const line = oneLine(program.name, err);
  process.stderr.write(line + '\n');
  if (!(err instanceof HelperError)) debug('unexpected error: %O', err);
  if (reply?.kind === 'socketpair' && !replySent && !(err instanceof UsageError && /--socketpair/.test(err.message))) {
    try {
      checkUnixStreamSocket(reply.fd);
      sendWithFds(reply.fd, encodeErrorRecord(line), []);
    } catch {
      // The channel itself is what failed; stderr has the message.
    }
  }
  return status;
}
