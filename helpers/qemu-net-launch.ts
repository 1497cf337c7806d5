// qemu-net-launch: see lib/launch/main.ts. Entry point only.
// Not a privileged helper: it runs as the user, runs the helpers, and becomes
// QEMU. It must never be installed setuid or with file capabilities (it refuses to run).
// --help, --version and usage errors are answered before koffi is loaded (lib/early.ts).
import { answerEarly, startFullRun } from '../lib/early.ts';
import { launchEarlyAnswer } from '../lib/launch/early.ts';
import { PROGRAM } from '../lib/launch/options.ts';

const argv = process.argv.slice(2);
answerEarly(launchEarlyAnswer(argv));
startFullRun(PROGRAM, () => import('../lib/launch/main.ts'), (main) => {
  main.runLaunch(argv).then((status) => { process.exitCode = status; });
});
