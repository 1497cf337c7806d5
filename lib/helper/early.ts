// A helper's answers that need no koffi, given when koffi cannot load
// (lib/early.ts says why and what they may do): --help, --version, and a
// usage error when no reply socket is named. With --fd or --socketpair the caller is a program waiting on
// that socket: the full run answers it (an error record through the checked
// socket), so a parse error there is left to it.

import { oneLine } from '../errors.ts';
import type { EarlyAnswer } from '../early.ts';
import { EXIT_OK, EXIT_USAGE } from '../exit-status.ts';
import { versionLine } from '../version.ts';
import { outputSocketFromArgv, parseHelperArgs } from './options.ts';
import type { HelperProgram } from './programs.ts';
import { usage } from './usage.ts';

export function helperEarlyAnswer(program: HelperProgram, argv: readonly string[]): EarlyAnswer | undefined {
  let action: string;
  try {
    action = parseHelperArgs(program, argv).action;
  } catch (err) {
    if (outputSocketFromArgv(argv) !== undefined) return undefined;
    return { status: EXIT_USAGE, stderr: oneLine(program.name, err) + '\n' };
  }
  if (action === 'help') return { status: EXIT_OK, stdout: usage(program) };
  if (action === 'version') return { status: EXIT_OK, stdout: versionLine(program.name) };
  return undefined;
}
