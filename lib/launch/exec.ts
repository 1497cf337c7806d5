// Becoming QEMU: find the program as execvp(3) would, then replace this
// process with it through execve(2), so that QEMU keeps our pid (the owner the
// helpers recorded on each link) and inherits exactly the fds it is told about.
//
// Node leaves traces that execve would otherwise carry into QEMU:
//  - it marks fds 0-2 close-on-exec at start-up and may make them non-blocking
//    (it restores their flags only at exit): both are cleared again here, as
//    libuv does for the stdio of every child it spawns;
//  - its own fds (epoll, eventfds, io_uring, the koffi library, pipes of
//    finished children) are marked close-on-exec all at once with close_range;
//  - it ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored across
//    execve: both go back to their defaults; the signal mask is emptied.
// Caught signals (our own SIGINT handler) revert to their defaults by themselves.

import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { HelperError } from '../errors.ts';
import { F_GETFL, F_SETFL, O_NONBLOCK, SIGPIPE, SIGXFSZ } from '../constants.ts';
import * as libc from '../libc.ts';
import { closeRangeCloexec, execve, unblockAllSignals } from './libc-exec.ts';

const STDIO = [0, 1, 2] as const;

/** The default search path of execvp(3) when PATH is unset. */
const DEFAULT_PATH = '/bin:/usr/bin';

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The file execvp(3) would run for `name`: itself when it contains a '/', else the first executable match in PATH. */
export function resolveProgram(name: string, pathEnv: string | undefined, isExecutable: (p: string) => boolean = isExecutableFile): string {
  if (name.includes('/')) {
    if (isExecutable(name)) return name;
    throw new HelperError(`${name} is not an executable file`, 'give the path of QEMU, e.g. /usr/bin/qemu-system-x86_64');
  }
  for (const dir of (pathEnv ?? DEFAULT_PATH).split(':')) {
    const candidate = `${dir === '' ? '.' : dir}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  throw new HelperError(`${name} is not found in PATH (${pathEnv ?? DEFAULT_PATH})`, 'install QEMU (Debian: apt-get install qemu-system-x86) or give its absolute path');
}

/**
 * Replaces this process with `path`, passing exactly fds 0-2 and `keep` (at
 * their current numbers). Returns only by throwing; the process is then in an
 * unspecified state as far as fd flags go, and should release what it made
 * and exit.
 */
export function execWithFds(path: string, argv: readonly string[], env: NodeJS.ProcessEnv, keep: readonly number[]): never {
  for (const fd of keep) if (!Number.isInteger(fd) || fd <= 2) throw new Error(`execWithFds: fd ${fd} cannot be passed on`);
  const envp = Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => `${k}=${v}`);
  closeRangeCloexec(3);
  for (const fd of keep) libc.setCloexec(fd, false);
  for (const fd of STDIO) {
    if (!libc.isOpenFd(fd)) continue;
    libc.setCloexec(fd, false);
    const flags = libc.fcntl(fd, F_GETFL);
    if (flags & O_NONBLOCK) libc.fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  libc.setSignalDefault(SIGPIPE);
  libc.setSignalDefault(SIGXFSZ);
  unblockAllSignals();
  try {
    return execve(path, argv, envp);
  } catch (err) {
    libc.ignoreSignal(SIGPIPE); // back to Node's way, for whatever runs before exit
    libc.ignoreSignal(SIGXFSZ);
    for (const fd of keep) libc.setCloexec(fd, true);
    throw err;
  }
}
