// Answers a program can give without koffi (lib/koffi-loader.ts): --help,
// --version and a command line that does not parse. They need nothing from
// the C library, so they work where koffi.node is missing or refused, which
// is exactly when a person types --help or --version to find out what is
// wrong.
//
// A privileged helper gives them only when its full run cannot load (the
// fallback of startFullRun): where koffi loads, the full run answers them
// after confinePrivileges(), as before. The fallback runs before any
// confinement, so it stays this small: a pure parse of argv, then (setuid
// root dropped for good, file capabilities held but unused) a write of
// fixed text, and of the caller's own argument made printable by oneLine,
// to fds 1 and 2, which the caller opened and Node made sure are open, and
// an exit. Nothing is opened, read or decided. Every text starts with the
// program's name or "Usage:", so that a file which checks the writer's
// capabilities at write(2) (such as /proc/self/oom_score_adj) refuses all
// of it. The launcher takes the same fallback, and refuses privileges in it
// first (lib/launch/early.ts).

import { oneLine } from './errors.ts';
import { EXIT_FAILURE } from './exit-status.ts';
import { writeAll } from './output.ts';

/** What to print and the exit status; undefined when the full run must answer. */
export interface EarlyAnswer {
  status: number;
  stdout?: string;
  stderr?: string;
}

/** Writes all of `text` to fd, ignoring a closed stream: the exit status still tells. */
function writeQuietly(fd: number, text: string): void {
  try {
    writeAll(fd, text);
  } catch {
    // nowhere to say it
  }
}

/**
 * A helper installed setuid root becomes its caller for good before it
 * answers: gids, then uids (glibc applies both to every thread), which
 * also empties its capabilities. An early answer exits right after, so
 * nothing is lost. Installed with file capabilities it cannot drop them
 * without capset(2), which needs koffi: the answer is then written with
 * them held but none of them used. Throws when the drop did not hold.
 */
export function dropSetuidRoot(): void {
  const uid = process.getuid!();
  const gid = process.getgid!();
  if (process.geteuid!() !== 0 || uid === 0) return;
  process.setgid!(gid);
  process.setuid!(uid);
  if (process.geteuid!() !== uid || process.getegid!() !== gid) throw new Error('the setuid drop did not hold');
}

/** Prints the answer and ends the process; returns when there is none (or when it cannot answer unprivileged: the full run answers then). */
export function answerEarly(answer: EarlyAnswer | undefined): void {
  if (answer === undefined) return;
  try {
    dropSetuidRoot();
  } catch {
    return;
  }
  if (answer.stdout !== undefined) writeQuietly(1, answer.stdout);
  if (answer.stderr !== undefined) writeQuietly(2, answer.stderr);
  process.exit(answer.status);
}

/**
 * Loads the modules of the full run and runs it. They load koffi as they are
 * evaluated (lib/libc.ts), so a koffi.node that is missing or refused
 * rejects `load`: then `fallback`'s answer is given if it has one (--help,
 * --version, a usage error), and otherwise the reason, in one line with exit
 * status 1, like any other failure.
 */
export function startFullRun<M>(program: string, load: () => Promise<M>, run: (modules: M) => void, fallback?: () => EarlyAnswer | undefined): void {
  load().then(run, (err: unknown) => {
    if (fallback) answerEarly(fallback());
    writeQuietly(2, oneLine(program, err) + '\n');
    process.exit(EXIT_FAILURE);
  });
}
