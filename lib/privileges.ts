// Privileged-run facts and the privilege drop.
//
// A helper is installed setuid root or with file capabilities. Either way it
// acts with privileges only for the privileged steps (creating the link,
// opening its queues) and drops to the caller's real ids before it sends or
// prints anything. The drop uses glibc's setgroups/setresgid/setresuid,
// which apply to every thread of the process (Node runs several); capset()
// and most prctl()s act on the calling thread only, so they are used only
// where nothing else can do the job (see docs/security.md).

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { AT_SECURE, F_GETFD, O_RDWR, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_NO_NEW_PRIVS, SIGUSR1 } from './constants.ts';
import * as libc from './libc.ts';


/** Whether this run has privileges the caller does not: setuid/setgid or file capabilities (the kernel sets AT_SECURE for both). */
export function isPrivilegedRun(): boolean {
  return libc.getauxval(AT_SECURE) !== 0 || libc.getuid() !== libc.geteuid() || libc.getgid() !== libc.getegid();
}

/**
 * The rest of the hardened start, once the C library is at hand:
 * SIGUSR1 ignored (it would open Node's inspector, or kill us where that is
 * disabled), fds 0-2 open (on /dev/null if the caller closed them, so nothing
 * we open lands there), and no new privileges for anything we might exec.
 */
export function hardenWithLibc(): void {
  libc.ignoreSignal(SIGUSR1);
  for (const fd of [0, 1, 2]) {
    try {
      libc.fcntl(fd, F_GETFD);
    } catch {
      const opened = libc.open('/dev/null', O_RDWR);
      if (opened !== fd) throw new Error(`fd ${fd} was closed and could not be reopened on /dev/null`);
    }
  }
  // PR_SET_NO_NEW_PRIVS acts on the calling (main) thread, which is the only one that could exec.
  libc.prctl(PR_SET_NO_NEW_PRIVS, 1);
}

export interface Identity {
  uid: number;
  gid: number;
  groups: number[];
}

/** The caller, as the kernel knows it: real ids and supplementary groups, never the environment. */
export function callerIdentity(): Identity {
  return { uid: libc.getuid(), gid: libc.getgid(), groups: libc.getgroups() };
}

/** Effective and permitted capabilities of the calling thread, from /proc/thread-self/status (or an fd of it opened earlier). */
export function threadCapabilities(statusFd?: number): { effective: bigint; permitted: bigint } {
  let status: string;
  if (statusFd === undefined) status = readFileSync('/proc/thread-self/status', 'latin1');
  else {
    const buf = Buffer.alloc(8192);
    status = buf.toString('latin1', 0, readSync(statusFd, buf, 0, buf.length, 0));
  }
  const field = (name: string) => BigInt(`0x${/^(\w+):\s*([0-9a-f]+)$/m.exec(status.split('\n').find((l) => l.startsWith(name + ':')) ?? '')?.[2] ?? 'ffffffffffffffff'}`);
  return { effective: field('CapEff'), permitted: field('CapPrm') };
}

const capset = libc.capsetBinding;

/**
 * Drops to the caller's real ids and verifies it.
 * - Caller is root: nothing to drop.
 * - setuid root: setgroups, setresgid, setresuid to the caller's ids; the
 *   kernel then clears every thread's capabilities.
 * - file capabilities (ids already the caller's): clear the ambient set and
 *   the calling thread's capabilities with capset; the other threads keep
 *   theirs until exit (docs/security.md says why that is acceptable).
 * Throws if any step fails or the result is not what was asked.
 */
export function dropPrivileges(caller: Identity): void {
  if (caller.uid === 0) return;
  // Everything the drop and its check need is opened first: once the first
  // id changes there is no way back, so nothing after it may fail for want
  // of a resource (a caller can set `ulimit -n` as low as it likes).
  const statusFd = openSync('/proc/thread-self/status', 'r');
  try {
    const [, euid, suid] = libc.getresuid();
    const [, egid, sgid] = libc.getresgid();
    const idsChange = euid !== caller.uid || suid !== caller.uid || egid !== caller.gid || sgid !== caller.gid;
    if (idsChange) {
      libc.setgroups(caller.groups);
      libc.setresgid(caller.gid, caller.gid, caller.gid);
      libc.setresuid(caller.uid, caller.uid, caller.uid);
    }
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
    capset.clearCallingThread();
    verifyDropped(caller, statusFd);
  } finally {
    closeSync(statusFd);
  }
}

function verifyDropped(caller: Identity, statusFd: number): void {
  const uids = libc.getresuid();
  const gids = libc.getresgid();
  if (uids.some((u) => u !== caller.uid) || gids.some((g) => g !== caller.gid)) {
    throw new Error(`privilege drop failed: uids ${uids.join(',')} gids ${gids.join(',')}, wanted ${caller.uid}/${caller.gid}`);
  }
  const caps = threadCapabilities(statusFd);
  if (caps.effective !== 0n || caps.permitted !== 0n) {
    throw new Error(`privilege drop failed: capabilities remain (effective 0x${caps.effective.toString(16)}, permitted 0x${caps.permitted.toString(16)})`);
  }
  // Regaining root must be impossible now.
  try {
    libc.setresuid(0, 0, 0);
  } catch {
    return;
  }
  throw new Error('privilege drop failed: setresuid(0) still succeeds');
}
