// The launcher's answers that need no koffi (lib/early.ts): --help,
// --version and a command line of its own that does not parse. Errors in
// QEMU's arguments come later, from the plan, in the full run.

import { oneLine } from '../errors.ts';
import type { EarlyAnswer } from '../early.ts';
import { EXIT_OK, EXIT_USAGE } from '../exit-status.ts';
import { VERSION } from '../version.ts';
import { parseLaunchArgs, PROGRAM, usage } from './options.ts';

export function launchEarlyAnswer(argv: readonly string[]): EarlyAnswer | undefined {
  let action: string;
  try {
    action = parseLaunchArgs(argv).action;
  } catch (err) {
    return { status: EXIT_USAGE, stderr: oneLine(PROGRAM, err) + '\n' };
  }
  if (action === 'help') return { status: EXIT_OK, stdout: usage() };
  if (action === 'version') return { status: EXIT_OK, stdout: `${PROGRAM} ${VERSION}\n` };
  return undefined;
}
