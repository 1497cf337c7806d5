// The C calls only the launcher needs, to become QEMU (lib/launch/exec.ts):
// execve, close_range and pthread_sigmask. Bound here, not in lib/libc.ts, so
// that the privileged helpers' bundle never contains an exec binding at all.

import { constants as osConstants } from 'node:os';
import { CLOSE_RANGE_CLOEXEC, SIGSET_BYTES, SIG_SETMASK } from '../constants.ts';
import { check, libc, SysError } from '../libc.ts';

const calls = {
  execve: libc.func('int execve(const char *path, const char **argv, const char **envp)'),
  closeRange: libc.func('int close_range(unsigned int first, unsigned int last, int flags)'),
  pthreadSigmask: libc.func('int pthread_sigmask(int how, void *set, void *oldset)'),
};

/**
 * execve(2). Returns only by throwing SysError. `argv` and `envp` become
 * NULL-terminated arrays of C strings (koffi converts a JS array of strings
 * ending in null for a `const char **` parameter).
 */
export function execve(path: string, argv: readonly string[], envp: readonly string[]): never {
  for (const s of [path, ...argv, ...envp]) {
    if (s.includes('\0')) throw new SysError('execve', osConstants.errno.EINVAL, 'an argument contains a NUL byte');
  }
  check('execve', calls.execve(path, [...argv, null], [...envp, null]), path);
  throw new SysError('execve', osConstants.errno.EINVAL, `${path} returned`); // execve returns only on failure
}

/** Marks every fd from `first` up close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC, Linux 5.11). */
export function closeRangeCloexec(first: number): void {
  check('close_range', calls.closeRange(first, 0xffffffff, CLOSE_RANGE_CLOEXEC));
}

/** Unblocks every signal in the calling thread (the signal mask survives execve). */
export function unblockAllSignals(): void {
  const rc = Number(calls.pthreadSigmask(SIG_SETMASK, Buffer.alloc(SIGSET_BYTES), null));
  if (rc !== 0) throw new SysError('pthread_sigmask', rc);
}
