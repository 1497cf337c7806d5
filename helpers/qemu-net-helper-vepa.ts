// qemu-net-helper-vepa: see lib/helper/programs.ts. Entry point only: everything lives in lib/.
// Where koffi cannot load, --help, --version and usage errors are still answered (lib/early.ts).
import '../lib/harden.ts'; // first: see lib/harden.ts
import { startFullRun } from '../lib/early.ts';
import { helperEarlyAnswer } from '../lib/helper/early.ts';
import { VEPA_HELPER } from '../lib/helper/programs.ts';

const argv = process.argv.slice(2);
startFullRun(VEPA_HELPER.name, () => import('../lib/helper/main.ts'), (main) => main.runHelperAndExit(VEPA_HELPER, argv), () => helperEarlyAnswer(VEPA_HELPER, argv));
