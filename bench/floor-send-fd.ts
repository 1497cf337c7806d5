// The runtime floor for the helper benchmark, built into a single executable
// exactly as the helpers are (packaging/build.ts): start the same Node, run
// the same SEA prologue, load koffi from the same fixed path, and answer
// QEMU's helper protocol (--fd=N: one zero byte and one fd, here /dev/null).
// Everything a helper does beyond this is the helper's own cost.
//
// With --fast-exit it then ends with _exit(2), as the helpers do
// (lib/helper/main.ts, runHelperAndExit); without it, it exits as any Node
// program does. The benchmark runs both, so that the helper's faster exit is
// not counted as less work of its own.
import { openSync } from 'node:fs';
import { exitImmediately } from '../lib/libc.ts';
import { sendWithFds } from '../lib/scm.ts';

const args = process.argv.slice(2);
const fdArg = args.map((a) => /^--fd=([1-9][0-9]{0,8})$/.exec(a)?.[1]).find((v) => v !== undefined);
if (fdArg === undefined) {
  process.stderr.write('floor-send-fd: no --fd=N; run it as QEMU runs a helper\n');
  process.exitCode = 2;
} else {
  sendWithFds(Number(fdArg), Buffer.from([0]), [openSync('/dev/null', 'r')]);
  if (args.includes('--fast-exit')) exitImmediately(0);
}
