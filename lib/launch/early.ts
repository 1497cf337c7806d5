// The launcher's answers that need no koffi, given when koffi cannot load
// (lib/early.ts), as runLaunch gives them otherwise: --help, --version and a
// command line of its own that does not parse. First of all it refuses to
// run with privileges, as runLaunch does (isPrivilegedRun, which needs
// koffi): an administrator who checks a wrong install with --help is told so.

import { HelperError, oneLine } from '../errors.ts';
import type { EarlyAnswer } from '../early.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../exit-status.ts';
import { PRIVILEGED_REFUSAL, startedPrivileged } from '../secure-exec.ts';
import { versionLine } from '../version.ts';
import { parseLaunchArgs, PROGRAM, usage } from './options.ts';

export const PRIVILEGED_LAUNCHER = new HelperError(PRIVILEGED_REFUSAL.cause, PRIVILEGED_REFUSAL.fix);

export function launchEarlyAnswer(argv: readonly string[], privileged: () => boolean = startedPrivileged): EarlyAnswer | undefined {
  if (privileged()) return { status: EXIT_FAILURE, stderr: oneLine(PROGRAM, PRIVILEGED_LAUNCHER) + '\n' };
  let action: string;
  try {
    action = parseLaunchArgs(argv).action;
  } catch (err) {
    return { status: EXIT_USAGE, stderr: oneLine(PROGRAM, err) + '\n' };
  }
  if (action === 'help') return { status: EXIT_OK, stdout: usage() };
  if (action === 'version') return { status: EXIT_OK, stdout: versionLine(PROGRAM) };
  return undefined;
}
