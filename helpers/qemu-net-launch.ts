// qemu-net-launch: see lib/launch/main.ts. Entry point only.
// Not a privileged helper: it runs as the user, runs the helpers, and becomes
// QEMU. It must never be installed setuid or with file capabilities (it refuses to run).
// Where koffi cannot load, --help, --version and usage errors are still answered,
// and privileges still refused (lib/early.ts).
import { startFullRun } from '../lib/early.ts';
import { launchEarlyAnswer } from '../lib/launch/early.ts';
import { PROGRAM } from '../lib/launch/options.ts';

const argv = process.argv.slice(2);
startFullRun(PROGRAM, () => import('../lib/launch/main.ts'), (main) => {
  main.runLaunch(argv).then((status) => { process.exitCode = status; });
}, () => launchEarlyAnswer(argv));
