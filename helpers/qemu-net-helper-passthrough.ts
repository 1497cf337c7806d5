// qemu-net-helper-passthrough: see lib/helper/programs.ts. Entry point only: everything lives in lib/.
// Where koffi cannot load, --help, --version and usage errors are still answered (lib/early.ts).
import '../lib/harden.ts'; // first: see lib/harden.ts
import { startFullRun } from '../lib/early.ts';
import { helperEarlyAnswer } from '../lib/helper/early.ts';
import { PASSTHROUGH_HELPER } from '../lib/helper/programs.ts';

const argv = process.argv.slice(2);
startFullRun(PASSTHROUGH_HELPER.name, () => import('../lib/helper/main.ts'), (main) => main.runHelperAndExit(PASSTHROUGH_HELPER, argv), () => helperEarlyAnswer(PASSTHROUGH_HELPER, argv));
