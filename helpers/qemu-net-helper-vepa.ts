// qemu-net-helper-vepa: see lib/helper/programs.ts. Entry point only: everything lives in lib/.
import '../lib/harden.ts'; // first: see lib/harden.ts
import { runHelperAndExit } from '../lib/helper/main.ts';
import { VEPA_HELPER } from '../lib/helper/programs.ts';

runHelperAndExit(VEPA_HELPER, process.argv.slice(2));
