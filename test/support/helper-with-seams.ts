// A helper entry point for tests only: the same runHelperAndExit as helpers/*.ts,
// with test seams set from this script's own leading arguments. It lives in
// test/ and is never built or installed, which is what keeps the seams out
// of reach of an installed helper's command line and environment.
//   node helper-with-seams.ts PROGRAM [--seam-sysfs=DIR] [--seam-fake-vhost] [--seam-fault=STEP:fail|kill|stop] [--seam-policy=PATH] -- HELPER ARGS...
import '../../lib/harden.ts';
import { runHelperAndExit, STEPS, type FaultAction, type HelperSeams, type Step } from '../../lib/helper/main.ts';
import { HELPER_PROGRAMS } from '../../lib/helper/programs.ts';
import { FAKE_VHOST } from './fake-vhost.ts';

const args = process.argv.slice(2);
const sep = args.indexOf('--');
const [programName, ...seamArgs] = args.slice(0, sep);
const program = HELPER_PROGRAMS.find((p) => p.name === programName);
if (!program || sep < 0) throw new Error('usage: helper-with-seams.ts PROGRAM [--seam-...] -- ARGS');
const seams: HelperSeams = {};
for (const a of seamArgs) {
  if (a.startsWith('--seam-sysfs=')) seams.sysClassNet = a.slice('--seam-sysfs='.length);
  else if (a === '--seam-fake-vhost') seams.vhostOpener = FAKE_VHOST;
  else if (a.startsWith('--seam-policy=')) seams.policyPath = a.slice('--seam-policy='.length);
  else if (a.startsWith('--seam-fault=')) {
    const [step, action] = a.slice('--seam-fault='.length).split(':');
    if (!STEPS.includes(step as Step) || !['fail', 'kill', 'stop'].includes(action!)) throw new Error(`bad fault ${a}`);
    seams.fault = { step: step as Step, action: action as FaultAction };
  }
  else throw new Error(`unknown seam ${a}`);
}
runHelperAndExit(program, args.slice(sep + 1), seams);
