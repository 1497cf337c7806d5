// One lock per user and network namespace, so that helpers of one user racing
// at their limit are counted one after the other: the limit then admits
// exactly as many links as it allows.
//
// The lock is an abstract unix socket name ("\0qemu-net-helper/limit/UID"):
// the holder binds and listens; a waiter connects, which queues it on the
// holder's backlog without being accepted, and is woken (POLLHUP) when the
// holder closes. Abstract names have no permissions and belong to the network
// namespace, so nothing is created on any file system and nothing outlives
// the holder (the kernel drops the name with the socket, however the holder
// ends). Anyone may bind any name: a name held by a process of another uid
// (SO_PEERCRED of the listener) is a squatter and is ignored, and a wait is
// bounded. Without the lock the limit still holds (execute.ts counts again
// after tagging, which alone never admits too many), only less exactly.

import { logger } from '../log.ts';
import { AF_UNIX, POLLERR, POLLHUP, POLLRDHUP, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM } from '../constants.ts';
import * as libc from '../libc.ts';
import { peerCredentials } from '../scm.ts';

const debug = logger('user-lock');

/** How long a helper waits for another run of the same user to finish counting and creating. */
const WAIT_MS = 3000;
const MAX_TRIES = 64;

function abstractAddress(name: string): Buffer {
  const path = Buffer.from(`\0${name}`, 'utf8');
  const addr = Buffer.alloc(2 + path.length);
  addr.writeUInt16LE(AF_UNIX, 0);
  path.copy(addr, 2);
  return addr;
}

/** Runs `fn` holding the lock of `uid` when it can be had within WAIT_MS; without it otherwise. */
export function withUserLock<T>(uid: number, fn: () => T): T {
  const addr = abstractAddress(`qemu-net-helper/limit/${uid}`);
  const deadline = Date.now() + WAIT_MS;
  let held = -1;
  for (let tries = 0; tries < MAX_TRIES && held < 0 && Date.now() < deadline; tries++) {
    const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    try {
      libc.bind(fd, addr);
      libc.listen(fd, 128);
      held = fd;
      break;
    } catch (err) {
      libc.closeQuietly(fd);
      if (!(err instanceof libc.SysError && err.code === 'EADDRINUSE')) throw err;
    }
    if (!waitForHolder(addr, uid, deadline)) break;
  }
  if (held < 0) debug('going on without the lock of uid %d', uid);
  try {
    return fn();
  } finally {
    libc.closeQuietly(held);
  }
}

/** Waits until the holder of `addr` lets go; false when it is not a process of `uid` (a squatter) or the wait is over. */
function waitForHolder(addr: Buffer, uid: number, deadline: number): boolean {
  // Non-blocking: a squatter's full backlog must not hold the connect up.
  const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  try {
    try {
      libc.connect(fd, addr);
    } catch (err) {
      // Released between our bind and our connect (or its backlog is full): try again.
      if (err instanceof libc.SysError && (err.code === 'ECONNREFUSED' || err.code === 'EAGAIN')) return true;
      throw err;
    }
    if (peerCredentials(fd).uid !== uid) {
      debug('the lock name of uid %d is held by uid %d: ignored', uid, peerCredentials(fd).uid);
      return false;
    }
    const revents = libc.pollOne(fd, POLLRDHUP, Math.max(0, deadline - Date.now()));
    return (revents & (POLLHUP | POLLERR | POLLRDHUP)) !== 0;
  } finally {
    libc.closeQuietly(fd);
  }
}
