// qemu-net-helper-passthrough: see lib/helper/programs.ts. Entry point only: everything lives in lib/.
import '../lib/harden.ts'; // first: see lib/harden.ts
import { runHelper } from '../lib/helper/main.ts';
import { PASSTHROUGH_HELPER } from '../lib/helper/programs.ts';

process.exitCode = runHelper(PASSTHROUGH_HELPER, process.argv.slice(2));
