// The runtime floor for the helper benchmark, built into a single executable
// exactly as the helpers are (packaging/build.ts): start the same Node, run
// the same SEA prologue, load koffi from the same fixed path, and answer
// QEMU's helper protocol (--fd=N: one zero byte and one fd, here /dev/null).
// Everything a helper does beyond this is the helper's own cost.
import { openSync } from 'node:fs';
import { sendWithFds } from '../lib/scm.ts';

const fdArg = process.argv.slice(2).map((a) => /^--fd=([1-9][0-9]{0,8})$/.exec(a)?.[1]).find((v) => v !== undefined);
if (fdArg === undefined) {
  process.stderr.write('floor-send-fd: no --fd=N; run it as QEMU runs a helper\n');
  process.exitCode = 2;
} else {
  sendWithFds(Number(fdArg), Buffer.from([0]), [openSync('/dev/null', 'r')]);
}
