// The one main every helper executable runs, in the order doas does things:
// parse the command line, identify the caller, check the reply channel,
// act (create the macvtap, open its queue), hand the result over, exit.
// Whatever fails after the link exists deletes the link before exiting.

import createDebug from 'debug';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import * as libc from '../libc.ts';
import { formatMac, generateMac } from '../mac.ts';
import { MODE_VALUES } from '../modes.ts';
import { addMacvtap, deleteLink, getLinkByName, type Link } from '../netlink/link.ts';
import { NetlinkError, withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { encodeErrorRecord, encodeHelperRecord, helperRecordFields, helperRecordJson, type HelperRecord } from '../record.ts';
import { checkUnixStreamSocket, sendWithFds } from '../scm.ts';
import { openTapQueue } from '../tap.ts';
import { VERSION } from '../version.ts';
import { outputSocketFromArgv, parseHelperArgs, type CreateRequest } from './options.ts';
import type { HelperProgram } from './programs.ts';
import { usage } from './usage.ts';

const debug = createDebug('qemu-net-helper:helper');

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Runs a helper to completion and returns its exit status. Never throws. */
export function runHelper(program: HelperProgram, argv: readonly string[]): number {
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
    const record = withNetlink((nl) => createAndHandOver(nl, request));
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

function createAndHandOver(nl: NetlinkSocket, req: CreateRequest): HelperRecord {
  const lower = getLinkByName(nl, req.lower);
  if (!lower) throw new HelperError(`there is no network device named ${req.lower} in this network namespace`, "check the name with 'ip link'");
  debug('lower device %s has ifindex %d', lower.name, lower.index);

  const mac = req.mac ?? generateMac();
  let link: Link | undefined;
  try {
    link = createMacvtap(nl, req, lower, mac);
    debug('created %s (ifindex %d) in mode %s on %s', link.name, link.index, req.mode, lower.name);
    const queue = openTapQueue(link, { vnetHdr: req.vnetHdr });
    try {
      const record: HelperRecord = {
        ifname: link.name,
        ifindex: link.index,
        lower: lower.name,
        mode: req.mode,
        mac: link.mac ?? formatMac(mac),
        queues: 1,
        vnetHdr: req.vnetHdr,
        vhost: false,
        fds: ['tap'],
      };
      handOver(req, record, queue.fd);
      if (req.output.kind === 'probe') {
        deleteLink(nl, link.index);
        debug('probe: deleted %s', link.name);
      }
      return record;
    } finally {
      libc.closeQuietly(queue.fd);
    }
  } catch (err) {
    if (link) rollback(nl, link);
    throw err;
  }
}

function createMacvtap(nl: NetlinkSocket, req: CreateRequest, lower: Link, mac: Buffer): Link {
  try {
    return addMacvtap(nl, { lowerIndex: lower.index, name: req.ifname, mode: MODE_VALUES[req.mode], mac, up: true });
  } catch (err) {
    throw explainCreateError(err, req, lower, mac);
  }
}

/** Turns the kernel's refusal into a cause and a fix a person can act on. */
function explainCreateError(err: unknown, req: CreateRequest, lower: Link, mac: Buffer): unknown {
  if (!(err instanceof NetlinkError)) return err;
  const kernel = err.extAck ? ` (kernel: ${err.extAck})` : '';
  switch (err.code) {
    case 'EEXIST':
    case 'ENFILE':
      return new HelperError(`cannot create ${req.ifname}: a link with that name already exists${kernel}`, 'choose another --ifname or leave it out');
    case 'EADDRINUSE':
      return new HelperError(`cannot create a macvtap with MAC ${formatMac(mac)} on ${lower.name}: the address is in use there${kernel}`, 'choose another --mac');
    case 'EBUSY':
      return new HelperError(`cannot create a macvtap on ${lower.name}: the device is busy (a bridge port or bond slave?)${kernel}`, 'use a device that is not enslaved');
    case 'EOPNOTSUPP':
      return new HelperError(`this kernel cannot create macvtap links${kernel}`, "load the module with 'modprobe macvtap'");
    case 'EINVAL':
      return new HelperError(`the kernel refused a ${req.mode} macvtap on ${lower.name}${kernel}`,
        `check that ${lower.name} is an Ethernet device without a passthru macvtap on it`);
    default:
      return new HelperError(`cannot create a macvtap on ${lower.name}: ${err.message}`, 'see the kernel message above, or rerun with DEBUG=qemu-net-helper:*');
  }
}

function handOver(req: CreateRequest, record: HelperRecord, tapFd: number): void {
  const out = req.output;
  try {
    if (out.kind === 'fd') {
      // Exactly what qemu-bridge-helper sends: one zero byte and one fd.
      sendWithFds(out.fd, Buffer.from([0]), [tapFd]);
    } else if (out.kind === 'socketpair') {
      sendWithFds(out.fd, encodeHelperRecord(record), [tapFd]);
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
  debug('handed over %s via %s', record.ifname, out.kind);
}

function rollback(nl: NetlinkSocket, link: Link): void {
  try {
    deleteLink(nl, link.index);
    debug('rolled back: deleted %s', link.name);
  } catch (err) {
    process.stderr.write(`cannot delete ${link.name} (ifindex ${link.index}) after a failure: ${(err as Error).message}; delete it with 'ip link del ${link.name}'\n`);
  }
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
