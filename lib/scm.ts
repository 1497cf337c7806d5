// Passing file descriptors over a unix socket (SCM_RIGHTS), both directions.
//
// The receiving side is where the traps are: fds arrive already installed in
// our table, so every path that rejects a message must close them; and a
// control buffer that was too small (MSG_CTRUNC) means some fds were dropped
// by the kernel and the rest cannot be trusted to be what the sender meant.

import {
  SOL_SOCKET, SCM_RIGHTS, CMSG_HDR_LEN, MSG_CTRUNC, MSG_TRUNC, MSG_CMSG_CLOEXEC, MSG_NOSIGNAL, SCM_MAX_FD,
  AF_UNIX, POLLERR, POLLHUP, POLLRDHUP, SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN, SO_PEERCRED, S_IFMT, S_IFSOCK, SOCK_STREAM,
} from './constants.ts';
import * as libc from './libc.ts';

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** CMSG_SPACE for `count` fds. */
function controlSpace(count: number): number {
  return CMSG_HDR_LEN + align8(4 * count);
}

/** Sends `data` with `fds` attached, in one sendmsg. EPIPE (peer gone) is thrown, never a signal. */
export function sendWithFds(sock: number, data: Buffer, fds: readonly number[]): void {
  if (data.length === 0) throw new Error('SCM_RIGHTS needs at least one byte of data');
  if (fds.length > SCM_MAX_FD) throw new Error(`cannot pass ${fds.length} fds in one message (at most ${SCM_MAX_FD})`);
  let control: Buffer | null = null;
  if (fds.length > 0) {
    control = Buffer.alloc(controlSpace(fds.length));
    control.writeBigUInt64LE(BigInt(CMSG_HDR_LEN + 4 * fds.length), 0); // cmsg_len = CMSG_LEN
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((fd, i) => control!.writeInt32LE(fd, CMSG_HDR_LEN + 4 * i));
  }
  const sent = libc.sendmsg(sock, data, control, MSG_NOSIGNAL);
  if (sent !== data.length) throw new Error(`sendmsg sent ${sent} of ${data.length} bytes`);
}

/**
 * Sends `data` as a stream with `fds` attached along it, in as many sendmsg
 * calls as the kernel's limit of SCM_MAX_FD fds per message requires (the
 * data is split so that each call carries at least one byte). The reader
 * sees one byte stream and the fds in order: receiveStreamWithFds.
 */
export function sendStreamWithFds(sock: number, data: Buffer, fds: readonly number[]): void {
  const chunks = Math.max(1, Math.ceil(fds.length / SCM_MAX_FD));
  if (data.length < chunks) throw new Error(`cannot attach ${fds.length} fds to ${data.length} bytes`);
  const bytesPerChunk = Math.ceil(data.length / chunks);
  for (let i = 0; i < chunks; i++) {
    const part = data.subarray(i * bytesPerChunk, Math.min(data.length, (i + 1) * bytesPerChunk));
    sendWithFds(sock, part, fds.slice(i * SCM_MAX_FD, (i + 1) * SCM_MAX_FD));
  }
}

export interface Received {
  data: Buffer;
  fds: number[];
}

/**
 * Receives one message with up to `maxFds` fds (close-on-exec); `flags` may add MSG_DONTWAIT. Throws, with
 * every received fd closed, when the control data was truncated, carried
 * something other than SCM_RIGHTS, or held more fds than allowed.
 */
export function receiveWithFds(sock: number, maxData: number, maxFds: number, flags = 0): Received {
  const data = Buffer.alloc(maxData);
  const control = Buffer.alloc(controlSpace(Math.max(1, maxFds)));
  const { length, controlLength, msgFlags } = libc.recvmsg(sock, data, control, MSG_CMSG_CLOEXEC | flags);
  const fds: number[] = [];
  let problem: string | undefined;
  // Walk every cmsg, collecting fds even from ones we reject, so they can be closed.
  for (let off = 0; off + CMSG_HDR_LEN <= controlLength;) {
    const len = Number(control.readBigUInt64LE(off));
    const level = control.readInt32LE(off + 8);
    const type = control.readInt32LE(off + 12);
    if (len < CMSG_HDR_LEN || off + len > controlLength) {
      problem = 'malformed control message';
      break;
    }
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR_LEN; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    } else {
      problem = `unexpected control message level ${level} type ${type}`;
    }
    off += align8(len);
  }
  // msg_flags carries MSG_CMSG_CLOEXEC back; mask it before testing for truncation.
  const got = msgFlags & ~MSG_CMSG_CLOEXEC;
  if (got & MSG_CTRUNC) problem = `control data truncated: the sender passed more than ${maxFds} fds`;
  else if (got & MSG_TRUNC) problem = `message truncated: more than ${maxData} bytes`;
  else if (fds.length > maxFds) problem = `received ${fds.length} fds, more than ${maxFds}`;
  if (problem) {
    libc.closeQuietly(...fds);
    throw new Error(problem);
  }
  return { data: data.subarray(0, length), fds };
}

/**
 * Reads a stream to its end (or, with MSG_DONTWAIT, to what is queued),
 * collecting every fd attached along it. At most `maxData` bytes and
 * `maxFds` fds; beyond either, everything received is closed and it throws.
 */
export function receiveStreamWithFds(sock: number, maxData: number, maxFds: number, flags = 0): Received {
  const parts: Buffer[] = [];
  const fds: number[] = [];
  let total = 0;
  try {
    for (let calls = 0; calls <= maxData; calls++) {
      let got: Received;
      try {
        got = receiveWithFds(sock, maxData - total + 1, SCM_MAX_FD, flags);
      } catch (err) {
        if (total > 0 && err instanceof libc.SysError && err.code === 'EAGAIN') break;
        throw err;
      }
      fds.push(...got.fds);
      if (fds.length > maxFds) throw new Error(`received more than ${maxFds} fds`);
      if (got.data.length === 0) break; // end of stream
      total += got.data.length;
      if (total > maxData) throw new Error(`stream longer than ${maxData} bytes`);
      parts.push(Buffer.from(got.data));
    }
  } catch (err) {
    libc.closeQuietly(...fds);
    throw err;
  }
  return { data: Buffer.concat(parts), fds };
}

/** Throws unless `fd` is an open unix-domain stream socket (what QEMU and our clients hand a helper). */
export function checkUnixStreamSocket(fd: number): void {
  const st = libc.fstat(fd); // EBADF for a closed fd
  if ((st.mode & S_IFMT) !== S_IFSOCK) throw new Error(`fd ${fd} is not a socket`);
  const domain = libc.getsockoptInt(fd, SOL_SOCKET, SO_DOMAIN);
  const type = libc.getsockoptInt(fd, SOL_SOCKET, SO_TYPE);
  if (domain !== AF_UNIX) throw new Error(`fd ${fd} is a socket of family ${domain}, not a unix socket`);
  if (type !== SOCK_STREAM) throw new Error(`fd ${fd} is a unix socket of type ${type}, not a stream socket`);
  if (libc.getsockoptInt(fd, SOL_SOCKET, SO_ACCEPTCONN) !== 0) throw new Error(`fd ${fd} is a listening socket, not a connected one`);
  if (peerCredentials(fd).pid === 0) throw new Error(`fd ${fd} is not connected to a peer`);
}

/** Whether the other end of a stream socket has closed (POLLHUP/POLLRDHUP/POLLERR), checked without waiting. */
export function peerHasHungUp(fd: number): boolean {
  return (libc.pollOne(fd, POLLRDHUP, 0) & (POLLERR | POLLHUP | POLLRDHUP)) !== 0;
}

/** SO_PEERCRED: the process at the other end of a connected unix socket, as of connect()/socketpair(). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const cred = libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, 12); // struct ucred { pid_t; uid_t; gid_t }
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}
