// The rtnetlink transport: one NETLINK_ROUTE socket, synchronous
// request/response with sequence-number and port-id checks, and kernel
// errors (with their extended-ack text) surfaced as NetlinkError.
//
// Synchronous on purpose: a helper does a handful of requests in a fixed
// order, and the kernel answers each before the next one is sent. A receive
// timeout bounds every wait, so a kernel that never answers cannot hang us.

import { logger } from '../log.ts';
import {
  AF_NETLINK, NETLINK_ROUTE, SOCK_RAW, SOCK_CLOEXEC, SOL_NETLINK, NETLINK_EXT_ACK,
  SOL_SOCKET, SO_RCVTIMEO, NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_DUMP_INTR,
  MSG_TRUNC,
} from '../constants.ts';
import * as libc from '../libc.ts';
import { classifyMessage, decodeAck, decodeDone, decodeMessages, encodeMessage, type NetlinkMessage } from './wire.ts';

const debug = logger('netlink');

const SOCKADDR_NL_LEN = 12;
const RECEIVE_BUFFER = 64 * 1024;
const RECEIVE_TIMEOUT_SECONDS = 5;
const MAX_DATAGRAMS_PER_REQUEST = 10_000;

/** The kernel refused a request: `errno`/`code` say why, `extAck` is its own explanation when it gave one. */
export class NetlinkError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly extAck: string | undefined;
  readonly request: string;
  constructor(request: string, errno: number, extAck?: string) {
    const code = libc.errnoName(errno);
    super(`${request}: ${code} (${extAck ?? libc.describeErrno(errno)})`);
    this.name = 'NetlinkError';
    this.errno = errno;
    this.code = code;
    this.extAck = extAck;
    this.request = request;
  }
}

/** The transport saw something that breaks the protocol (wrong sender, port or sequence, truncation). */
export class NetlinkProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetlinkProtocolError';
  }
}

function sockaddrNl(pid: number): Buffer {
  const addr = Buffer.alloc(SOCKADDR_NL_LEN);
  addr.writeUInt16LE(AF_NETLINK, 0);
  addr.writeUInt32LE(pid, 4);
  return addr;
}

/**
 * Runs an operation with a capability raised (lib/privileges.ts
 * withCapabilities, bound to CAP_NET_ADMIN). The kernel checks rtnetlink
 * requests against the capabilities of the socket's opener and of the task
 * that sends, so a privileged socket raises it for both.
 */
export type PrivilegeBracket = <T>(fn: () => T) => T;
const unprivileged: PrivilegeBracket = (fn) => fn();

export class NetlinkSocket {
  readonly fd: number;
  /** The port id the kernel assigned to this socket at bind time. */
  readonly portId: number;
  private seq: number;
  private closed = false;
  private readonly privileged: PrivilegeBracket;

  private constructor(fd: number, portId: number, privileged: PrivilegeBracket) {
    this.fd = fd;
    this.portId = portId;
    this.privileged = privileged;
    // Start from a value unlikely to match a stale reply addressed to a
    // previous owner of this port id.
    this.seq = (Date.now() & 0x7fffffff) >>> 0;
  }

  /** A socket; with `privileged`, one that raises a capability to open and around every request it sends. */
  static open(privileged: PrivilegeBracket = unprivileged): NetlinkSocket {
    const fd = privileged(() => libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    try {
      libc.setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      const timeout = Buffer.alloc(16); // struct timeval { time_t tv_sec; suseconds_t tv_usec }
      timeout.writeBigInt64LE(BigInt(RECEIVE_TIMEOUT_SECONDS), 0);
      libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout);
      libc.bind(fd, sockaddrNl(0)); // port id 0: the kernel picks a unique one
      const addr = Buffer.alloc(SOCKADDR_NL_LEN);
      libc.getsockname(fd, addr);
      const portId = addr.readUInt32LE(4);
      debug('opened socket fd=%d port=%d', fd, portId);
      return new NetlinkSocket(fd, portId, privileged);
    } catch (err) {
      libc.closeQuietly(fd);
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.closeQuietly(this.fd);
  }

  /**
   * Sends one request and collects the replies that belong to it.
   * Non-dump requests carry NLM_F_ACK: replies are gathered until the
   * acknowledgement, which throws NetlinkError when it reports an error.
   * Dump requests are gathered until NLMSG_DONE.
   * `what` names the request in errors ("RTM_NEWLINK macvtap%d on eth0").
   */
  request(type: number, flags: number, payload: Buffer, what: string): NetlinkMessage[] {
    if (this.closed) throw new NetlinkProtocolError(`${what}: netlink socket is closed`);
    const seq = this.nextSeq();
    const isDump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    const reqFlags = NLM_F_REQUEST | flags | (isDump ? 0 : NLM_F_ACK);
    const packet = encodeMessage({ type, flags: reqFlags, seq, pid: this.portId, payload });
    debug('send %s type=%d flags=0x%s seq=%d len=%d', what, type, reqFlags.toString(16), seq, packet.length);
    // The kernel acts on the request inside sendto, as the sender: only that needs the capability.
    this.privileged(() => libc.sendto(this.fd, packet, 0, sockaddrNl(0)));

    const replies: NetlinkMessage[] = [];
    const buffer = Buffer.alloc(RECEIVE_BUFFER);
    const from = Buffer.alloc(SOCKADDR_NL_LEN);
    for (let datagrams = 0; datagrams < MAX_DATAGRAMS_PER_REQUEST; datagrams++) {
      const { length } = this.receive(buffer, from, what);
      const senderPort = from.readUInt32LE(4);
      if (senderPort !== 0) {
        // Only the kernel (port 0) may answer; anything else is spoofing or a bug.
        debug('dropping datagram from port %d', senderPort);
        continue;
      }
      for (const msg of decodeMessages(buffer.subarray(0, length))) {
        if (msg.seq !== seq || msg.pid !== this.portId) {
          // A late reply to an earlier request of ours (or not ours at all).
          debug('dropping reply seq=%d pid=%d (want seq=%d pid=%d)', msg.seq, msg.pid, seq, this.portId);
          continue;
        }
        const kind = classifyMessage(msg);
        if (kind === 'noop') continue;
        if (kind === 'overrun') throw new NetlinkProtocolError(`${what}: netlink overrun`);
        if (kind === 'ack') {
          const ack = decodeAck(msg);
          if (ack.error !== 0) {
            const err = new NetlinkError(what, -ack.error, ack.extAckMessage);
            debug('error %s', err.message);
            throw err;
          }
          if (!isDump) return replies;
          continue;
        }
        if (kind === 'done') {
          const done = decodeDone(msg);
          if (done.error < 0) throw new NetlinkError(what, -done.error, done.extAckMessage);
          if (msg.flags & NLM_F_DUMP_INTR) {
            throw new NetlinkProtocolError(`${what}: dump interrupted by a concurrent change; retry`);
          }
          if (isDump) return replies;
          continue;
        }
        replies.push(msg);
        if (isDump && (msg.flags & NLM_F_MULTI) === 0) return replies;
      }
    }
    throw new NetlinkProtocolError(`${what}: more than ${MAX_DATAGRAMS_PER_REQUEST} reply datagrams`);
  }

  private receive(buffer: Buffer, from: Buffer, what: string): { length: number } {
    let result;
    try {
      result = libc.recvfrom(this.fd, buffer, MSG_TRUNC, from);
    } catch (err) {
      if (err instanceof libc.SysError && (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK')) {
        throw new NetlinkProtocolError(`${what}: no answer from the kernel within ${RECEIVE_TIMEOUT_SECONDS} s`);
      }
      throw err;
    }
    if (result.length > buffer.length) {
      throw new NetlinkProtocolError(`${what}: reply of ${result.length} bytes truncated to ${buffer.length}`);
    }
    return result;
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }
}

/** Runs `fn` with a fresh socket that is closed afterwards, whatever happens. */
export function withNetlink<T>(fn: (nl: NetlinkSocket) => T, privileged?: PrivilegeBracket): T {
  const nl = NetlinkSocket.open(privileged);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}
