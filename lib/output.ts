// Writing to stdout and stderr synchronously, so that a closed or unwritable
// stream (a caller may close fds 0-2) is an ordinary error at the call, and
// not an 'error' event that crashes the process later.

import { writeSync } from 'node:fs';
import { HelperError } from './errors.ts';

/** Writes all of `text` to fd (writeSync may write less, e.g. to a non-blocking pipe). */
export function writeAll(fd: number, text: string): void {
  let buf = Buffer.from(text, 'utf8');
  for (let i = 0; buf.length > 0 && i < 10_000; i++) buf = buf.subarray(writeSync(fd, buf));
  if (buf.length > 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
}

export function writeOut(text: string): void {
  try {
    writeAll(1, text);
  } catch (err) {
    throw new HelperError(`cannot write to standard output: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'run the helper with a writable standard output');
  }
}

/** Never throws: when stderr is gone there is nowhere left to say it, and the exit status still does. */
export function writeErr(text: string): void {
  try {
    writeAll(2, text);
  } catch {
    // nothing more to do
  }
}
