// The single executable that every privileged helper is, installed under each
// helper's name (qemu-net-helper-vepa, -bridge, -passthrough) as hard links;
// it runs the helper it was executed as (lib/executable.ts). Entry point only.
// From source, run the helpers' own entry points (helpers/qemu-net-helper-vepa.ts, ...).
import '../lib/harden.ts'; // first: see lib/harden.ts
import { programFromExecutable, unknownExecutableMessage } from '../lib/executable.ts';
import { runHelperAndExit } from '../lib/helper/main.ts';
import { HELPER_PROGRAMS } from '../lib/helper/programs.ts';
import { exitImmediately } from '../lib/libc.ts';
import { writeErr } from '../lib/output.ts';

const name = programFromExecutable(HELPER_PROGRAMS.map((p) => p.name));
const program = HELPER_PROGRAMS.find((p) => p.name === name);
if (program) {
  runHelperAndExit(program, process.argv.slice(2));
} else {
  writeErr(`qemu-net-helper: ${unknownExecutableMessage(HELPER_PROGRAMS.map((p) => p.name))}\n`);
  exitImmediately(1);
}
