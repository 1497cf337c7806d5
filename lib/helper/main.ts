// The one main every helper executable runs, in the order doas does things:
// parse the command line, identify the caller, check the reply channel,
// act (create the macvtap, open its queues), hand the result over, exit.
// Whatever fails after the link exists deletes the link before exiting.

import createDebug from 'debug';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import * as libc from '../libc.ts';
import { deleteLink } from '../netlink/link.ts';
import { withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { encodeErrorRecord, encodeHelperRecord, helperRecordFields, helperRecordJson, type FdKind, type HelperRecord } from '../record.ts';
import { checkUnixStreamSocket, sendStreamWithFds, sendWithFds } from '../scm.ts';
import { SYS_CLASS_NET } from '../sriov.ts';
import { SYSTEM_VHOST, VhostUnavailableError, type VhostOpener } from '../vhost.ts';
import { VERSION } from '../version.ts';
import { allocateLink, deleteLinkQuietly } from './allocate.ts';
import { outputSocketFromArgv, parseHelperArgs, type CreateRequest } from './options.ts';
import type { HelperProgram } from './programs.ts';
import { openQueueSet, type QueueSet } from './queues.ts';
import { usage } from './usage.ts';

const debug = createDebug('qemu-net-helper:helper');

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * What tests may replace. Only entry points under test/ pass these; the
 * installed helpers' entry points call runHelper without them, so nothing on
 * the command line or in the environment can reach them.
 */
export interface HelperSeams {
  sysClassNet?: string;
  vhostOpener?: VhostOpener;
}

/** Runs a helper to completion and returns its exit status. Never throws. */
export function runHelper(program: HelperProgram, argv: readonly string[], seams: HelperSeams = {}): number {
  debug('%s %s argv=%o', program.name, VERSION, argv);
  const replySocket = outputSocketFromArgv(argv);
  let request;
  try {
    request = parseHelperArgs(program, argv);
  } catch (err) {
    return fail(program, err, replySocket, EXIT_USAGE);
  }
  if (request.action === 'help') {
    process.stdout.write(usage(program));
    return EXIT_OK;
  }
  if (request.action === 'version') {
    process.stdout.write(`${program.name} ${VERSION}\n`);
    return EXIT_OK;
  }
  try {
    requireRoot();
    if (request.output.kind !== 'probe') checkReplySocket(request.output.kind, request.output.fd);
    const record = withNetlink((nl) => createAndHandOver(nl, request, seams));
    debug('done: %s', record.ifname);
    return EXIT_OK;
  } catch (err) {
    return fail(program, err, replySocket, EXIT_FAILURE);
  }
}

function requireRoot(): void {
  const uid = libc.getuid();
  if (uid !== 0) {
    throw new HelperError(`refusing to run for uid ${uid}: only root may use this helper until the policy file /etc/qemu/net-helper.conf is supported`,
      'run it as root');
  }
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

function createAndHandOver(nl: NetlinkSocket, req: CreateRequest, seams: HelperSeams): HelperRecord {
  const { lower, link } = allocateLink(nl, req, seams.sysClassNet ?? SYS_CLASS_NET);
  try {
    let queues: QueueSet;
    try {
      queues = openQueueSet(link, req, seams.vhostOpener ?? SYSTEM_VHOST);
    } catch (err) {
      if (err instanceof VhostUnavailableError) {
        throw new HelperError(`--vhost=on, but ${err.message}`, "load vhost_net ('modprobe vhost_net'), or use --vhost=try to go on without it");
      }
      throw err;
    }
    try {
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
      handOver(req, record, [...queues.tapFds, ...queues.vhostFds]);
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
    throw err;
  }
}

function handOver(req: CreateRequest, record: HelperRecord, fds: number[]): void {
  const out = req.output;
  try {
    if (out.kind === 'fd') {
      // Exactly what qemu-bridge-helper sends: one zero byte and one fd.
      sendWithFds(out.fd, Buffer.from([0]), fds);
    } else if (out.kind === 'socketpair') {
      sendStreamWithFds(out.fd, encodeHelperRecord(record), fds);
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
  if (reply?.kind === 'socketpair' && !(err instanceof UsageError && /--socketpair/.test(err.message))) {
    try {
      checkUnixStreamSocket(reply.fd);
      sendWithFds(reply.fd, encodeErrorRecord(line), []);
    } catch {
      // The channel itself is what failed; stderr has the message.
    }
  }
  return status;
}
