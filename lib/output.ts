// Writing to stdout and stderr synchronously, so that a closed or unwritable
// stream (a caller may close fds 0-2) is an ordinary error at the call, and
// not an 'error' event that crashes the process later.

import { writeSync } from 'node:fs';
import { HelperError } from './errors.ts';

export function writeOut(text: string): void {
  try {
    writeSync(1, text);
  } catch (err) {
    throw new HelperError(`cannot write to standard output: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'run the helper with a writable standard output');
  }
}

/** Never throws: when stderr is gone there is nowhere left to say it, and the exit status still does. */
export function writeErr(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // nothing more to do
  }
}
