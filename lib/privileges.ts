// Privileged-run facts, the confinement at start, the brackets that raise a
// capability around one operation, and the final drop.
//
// A helper is installed setuid root or with file capabilities. Both modes are
// brought to one state on the first line of the run (confinePrivileges): the
// caller's own uids, and on the main thread a permitted set of exactly
// CAP_NET_ADMIN and CAP_DAC_OVERRIDE with nothing effective. Every other thread
// of the process (Node runs several) has no capability at all. From then on a
// capability is effective only inside withCapabilities(), around the
// operation that needs it (docs/security.md maps each one), and the final
// drop (dropPrivileges) empties the permitted set before anything is sent.
//
// glibc's setgroups/setresgid/setresuid apply to every thread; capset() and
// most prctl()s act on the calling thread only. The uid change therefore
// comes first, while every thread can still make it, and capset after it:
// the other order makes glibc abort (a thread without CAP_SETUID fails).

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { AT_SECURE, CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_NET_ADMIN, F_GETFD, O_RDWR, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, SIGUSR1 } from './constants.ts';
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

/** A capability as a bit mask, as capset(2) takes it. */
export const capBit = (cap: number): bigint => 1n << BigInt(cap);
export const NET_ADMIN = capBit(CAP_NET_ADMIN);
export const DAC_OVERRIDE = capBit(CAP_DAC_OVERRIDE);
export const CHOWN = capBit(CAP_CHOWN);
/**
 * Every capability a helper run uses: creating and deleting links, opening
 * /dev/tapN and /dev/vhost-net (root's, mode 0600), and giving a persistent
 * link's /dev/tapN to its user.
 */
export const HELPER_CAPABILITIES = NET_ADMIN | DAC_OVERRIDE | CHOWN;

/**
 * The main thread's permitted set after confinePrivileges(), or undefined
 * when the run was not confined (root, or nothing to confine): then
 * withCapabilities() changes nothing.
 */
let confinedPermitted: bigint | undefined;

/**
 * The first privileged act of a run: makes setuid-root and file-capability
 * installs the same. In setuid mode the uids become the caller's (with
 * PR_SET_KEEPCAPS on the main thread only, so that it alone keeps its
 * permitted set; every other thread loses everything); then the main thread
 * keeps only HELPER_CAPABILITIES, none of them effective. Verified; throws if
 * the result is not exactly that. Root callers are left as they are.
 */
export function confinePrivileges(): void {
  const ruid = libc.getuid();
  if (ruid === 0) return;
  const [, euid, suid] = libc.getresuid();
  if (euid !== ruid || suid !== ruid) {
    libc.prctl(PR_SET_KEEPCAPS, 1);
    libc.setresuid(ruid, ruid, ruid);
    libc.prctl(PR_SET_KEEPCAPS, 0);
  }
  const keep = threadCapabilities().permitted & HELPER_CAPABILITIES;
  capset.setCallingThread(0n, keep);
  const uids = libc.getresuid();
  const caps = threadCapabilities();
  if (uids.some((u) => u !== ruid) || caps.effective !== 0n || caps.permitted !== keep) {
    throw new Error(`confining privileges failed: uids ${uids.join(',')}, capabilities effective 0x${caps.effective.toString(16)} permitted 0x${caps.permitted.toString(16)}`);
  }
  confinedPermitted = keep;
}

/**
 * Runs `fn` with `caps` effective on the calling (main) thread, and makes
 * them ineffective again however `fn` ends. Capabilities the run does not
 * hold are simply not raised: the operation then fails as it would for the
 * caller. A no-op outside a confined run.
 */
export function withCapabilities<T>(caps: bigint, fn: () => T): T {
  const permitted = confinedPermitted;
  if (permitted === undefined || (caps & permitted) === 0n) return fn();
  capset.setCallingThread(caps & permitted, permitted);
  try {
    return fn();
  } finally {
    capset.setCallingThread(0n, permitted);
  }
}

/**
 * Drops to the caller's real ids and verifies it.
 * - Caller is root: nothing to drop.
 * - After confinePrivileges() (every helper run): the ids are already the
 *   caller's, so only the main thread's capabilities are left to clear.
 * - Otherwise (a run that was not confined), setuid root: setgroups,
 *   setresgid, setresuid to the caller's ids; the kernel then clears every
 *   thread's capabilities. File capabilities: clear the ambient set and the
 *   calling thread's capabilities with capset.
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
    confinedPermitted = undefined;
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
