// Answers a program gives before koffi (lib/koffi-loader.ts) is loaded:
// --help, --version and a command line that does not parse. They need
// nothing from the C library, so they work where koffi.node is missing or
// refused, which is exactly when a person types --help or --version to find
// out what is wrong.
//
// In a privileged helper this runs before confinePrivileges(), so it must
// stay this small: a pure parse of argv, then a write of fixed text (and
// the caller's own argument, made printable by oneLine) to fds 1 and 2,
// which the caller opened and Node made sure are open, and an exit. Nothing
// is opened, read or decided. Everything else goes on to the full run.

import { writeSync } from 'node:fs';
import { oneLine } from './errors.ts';
import { EXIT_FAILURE } from './exit-status.ts';

/** What to print and the exit status; undefined when the full run must answer. */
export interface EarlyAnswer {
  status: number;
  stdout?: string;
  stderr?: string;
}

/** Writes all of `text` to fd, ignoring a closed or full stream: the exit status still tells. */
function writeAll(fd: number, text: string): void {
  let buf = Buffer.from(text, 'utf8');
  try {
    for (let i = 0; buf.length > 0 && i < 10_000; i++) buf = buf.subarray(writeSync(fd, buf));
  } catch {
    // nowhere to say it
  }
}

/** Prints the answer and ends the process; returns when there is none. */
export function answerEarly(answer: EarlyAnswer | undefined): void {
  if (answer === undefined) return;
  if (answer.stdout !== undefined) writeAll(1, answer.stdout);
  if (answer.stderr !== undefined) writeAll(2, answer.stderr);
  process.exit(answer.status);
}

/**
 * Loads the modules of the full run and runs it. They load koffi as they are
 * evaluated (lib/libc.ts), so a koffi.node that is missing or refused
 * rejects `load`: that is one line on stderr and exit status 1, like any
 * other failure.
 */
export function startFullRun<M>(program: string, load: () => Promise<M>, run: (modules: M) => void): void {
  load().then(run, (err: unknown) => {
    writeAll(2, oneLine(program, err) + '\n');
    process.exit(EXIT_FAILURE);
  });
}
