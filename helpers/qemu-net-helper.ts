// The single executable that every privileged helper is, installed under each
// helper's name (qemu-net-helper-vepa, -bridge, -passthrough) as hard links;
// it runs the helper it was executed as (lib/executable.ts). Entry point only.
// From source, run the helpers' own entry points (helpers/qemu-net-helper-vepa.ts, ...).
//
// It runs lib/helper/main.ts, whose modules load koffi; where koffi cannot
// load, --help, --version and usage errors are still answered (lib/early.ts).
import '../lib/harden.ts'; // first: see lib/harden.ts
import { answerEarly, startFullRun } from '../lib/early.ts';
import { programFromExecutable, unknownExecutableMessage } from '../lib/executable.ts';
import { EXIT_FAILURE } from '../lib/exit-status.ts';
import { helperEarlyAnswer } from '../lib/helper/early.ts';
import { HELPER_PROGRAMS } from '../lib/helper/programs.ts';

const names = HELPER_PROGRAMS.map((p) => p.name);
const program = HELPER_PROGRAMS.find((p) => p.name === programFromExecutable(names));
if (!program) answerEarly({ status: EXIT_FAILURE, stderr: `qemu-net-helper: ${unknownExecutableMessage(names)}\n` });
else {
  const argv = process.argv.slice(2);
  startFullRun(program.name, () => import('../lib/helper/main.ts'), (main) => main.runHelperAndExit(program, argv), () => helperEarlyAnswer(program, argv));
}
