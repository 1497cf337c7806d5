// qemu-net-helper-vepa: a macvtap in VEPA or private mode for a QEMU guest.
// Entry point only: everything lives in lib/.
import { runHelper } from '../lib/helper/main.ts';
import { VEPA_HELPER } from '../lib/helper/programs.ts';

process.exitCode = runHelper(VEPA_HELPER, process.argv.slice(2));
